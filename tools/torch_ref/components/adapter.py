"""Gated cross-attention adapter with learnable queries (spec §5.2, FOCUS-only; HyperSeg-FVP /
Flamingo form, all dims config fields).

G_p: per-scale 1x1 conv (C_j -> d) + level_embed[j], flattened row-major.
Layer j (attends to scale j):  h' = h + tanh(attn_gate) * Attn(LN_q(h), LN_m(media_j) [++ LN_q(h)])
                               h  = h' + tanh(ff_gate) * FFN(h'),  FFN = LN -> Linear -> GELU -> Linear
(attention and FFN linears without bias). Output = proj_out(norm_out(h)) [B,Nq,llm_hidden].
Inputs: feats.{0..S-1} NCHW (e.g. ConvNeXt res3..res5)."""

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CrossAttention, flatten_nchw

NAME = "adapter"

CONFIGS = {
    "tiny": dict(in_channels=[16, 24, 32], feat_hw=[[8, 12], [4, 6], [2, 3]], d=32, heads=4, n_queries=8,
                 ff_mult=4, llm_hidden=64, kv_include_latents=False, prefix="adapter."),
    "small": dict(in_channels=[64, 128, 256], feat_hw=[[16, 16], [8, 8], [4, 4]], d=128, heads=4, n_queries=32,
                  ff_mult=4, llm_hidden=256, kv_include_latents=False, prefix="adapter."),
    "paper": dict(in_channels=[384, 768, 1536], feat_hw=[[96, 96], [48, 48], [24, 24]], d=512, heads=8,
                  n_queries=128, ff_mult=4, llm_hidden=2048, kv_include_latents=False, prefix="adapter."),
}


class GatedLayer(nn.Module):
    def __init__(self, d, heads, ff_mult, kv_include_latents):
        super().__init__()
        self.kv_include_latents = kv_include_latents
        self.norm_media = nn.LayerNorm(d)
        self.norm_latents = nn.LayerNorm(d)
        self.attn = CrossAttention(d, d, d, heads, bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, ff_mult * d, bias=False), nn.GELU(),
                                nn.Linear(ff_mult * d, d, bias=False))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, h, media):
        q = self.norm_latents(h)
        kv = self.norm_media(media)
        if self.kv_include_latents:
            kv = torch.cat([kv, q], 1)
        h = h + torch.tanh(self.attn_gate) * self.attn(q, kv)
        return h + torch.tanh(self.ff_gate) * self.ff(h)


class Adapter(nn.Module):
    def __init__(self, in_channels, d, heads, n_queries, ff_mult, llm_hidden, kv_include_latents=False, **_):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(n_queries, d))
        self.level_proj = nn.ModuleList([nn.Conv2d(c, d, 1) for c in in_channels])
        self.level_embed = nn.Parameter(torch.zeros(len(in_channels), d))
        self.layers = nn.ModuleList([GatedLayer(d, heads, ff_mult, kv_include_latents) for _ in in_channels])
        self.norm_out = nn.LayerNorm(d)
        self.proj_out = nn.Linear(d, llm_hidden)

    def media(self, j, f):
        return flatten_nchw(self.level_proj[j](f)) + self.level_embed[j]

    def forward(self, feats, inter=None):
        h = self.latents[None].expand(feats[0].shape[0], -1, -1)
        for j, (layer, f) in enumerate(zip(self.layers, feats)):
            h = layer(h, self.media(j, f))
            if inter is not None:
                inter[f"layer.{j}"] = h
        return self.proj_out(self.norm_out(h))


def build(cfg):
    return Adapter(**cfg)


def checkpoint_state(model, cfg):
    return {cfg["prefix"] + k: v for k, v in model.state_dict().items()}


def make_inputs(cfg, g):
    return {f"feats.{j}": torch.randn((1, c, h, w), generator=g)
            for j, (c, (h, w)) in enumerate(zip(cfg["in_channels"], cfg["feat_hw"]))}


def run(model, inputs, cfg):
    inter = {}
    feats = [inputs[f"feats.{j}"] for j in range(len(cfg["in_channels"]))]
    return {"tokens": model(feats, inter)}, inter
