"""Dual-branch fusion cross-attention (spec §5.1, FOCUS-only, dims are config fields).

E' = o_proj(MHA(q_proj(LN_q(X_L)), k/v_proj(LN_kv(X_H))))   (+ X_L if query_residual)
E  = E' + fc2(GELU(fc1(LN_mlp(E'))))
Inputs: x_low [B,Nq,d_q] (vanilla-ViT tokens), x_high [B,C,h,w] (ConvNeXt map, NCHW; flattened
row-major inside). Output: fused [B,Nq,d]. Names under `prefix` (default "fusion.")."""

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CrossAttention, flatten_nchw

NAME = "fusion"

CONFIGS = {
    "tiny": dict(d_q=48, d_kv=32, d=48, heads=4, mlp_ratio=4, n_q=6, kv_hw=[2, 3], query_residual=False,
                 prefix="fusion."),
    "small": dict(d_q=256, d_kv=256, d=256, heads=4, mlp_ratio=4, n_q=16, kv_hw=[8, 8], query_residual=False,
                  prefix="fusion."),
    "paper": dict(d_q=2048, d_kv=1536, d=2048, heads=16, mlp_ratio=4, n_q=81, kv_hw=[24, 24],
                  query_residual=False, prefix="fusion."),
}


class Fusion(nn.Module):
    def __init__(self, d_q, d_kv, d, heads, mlp_ratio=4, query_residual=False, **_):
        super().__init__()
        assert not query_residual or d_q == d
        self.query_residual = query_residual
        self.norm_q = nn.LayerNorm(d_q, eps=1e-6)
        self.norm_kv = nn.LayerNorm(d_kv, eps=1e-6)
        self.attn = CrossAttention(d_q, d_kv, d, heads)
        self.norm_mlp = nn.LayerNorm(d, eps=1e-6)
        self.fc1 = nn.Linear(d, mlp_ratio * d)
        self.fc2 = nn.Linear(mlp_ratio * d, d)

    def forward(self, x_low, x_high, inter=None):
        kv = flatten_nchw(x_high)
        e = self.attn(self.norm_q(x_low), self.norm_kv(kv))
        if self.query_residual:
            e = e + x_low
        if inter is not None:
            inter["attn_out"] = e
        return e + self.fc2(F.gelu(self.fc1(self.norm_mlp(e))))


def build(cfg):
    return Fusion(**cfg)


def checkpoint_state(model, cfg):
    return {cfg["prefix"] + k: v for k, v in model.state_dict().items()}


def make_inputs(cfg, g):
    h, w = cfg["kv_hw"]
    return {"x_low": torch.randn((1, cfg["n_q"], cfg["d_q"]), generator=g),
            "x_high": torch.randn((1, cfg["d_kv"], h, w), generator=g)}


def run(model, inputs, cfg):
    inter = {}
    out = model(inputs["x_low"], inputs["x_high"], inter)
    return {"fused": out}, inter
