"""DualViTok semantic decoder (spec §6.1 "Decoder"; own code): proj_in Linear(d_code -> E),
N x Qwen2-VL vision block (LayerNorm eps 1e-6, qkv/proj with bias, QuickGELU MLP) with 2-D RoPE
on the merged grid (row-major (h, w)), full attention, then proj_out = Linear(E -> out) +
LayerNorm(out, affine). Input: quant [B,d_code,h1,w1] (tokens row-major).
Output: features [B,h1*w1,out]."""

import math

import torch
import torch.nn.functional as F
from torch import nn

NAME = "semantic_decoder"

CONFIGS = {
    "tiny": dict(code_dim=8, embed_dim=32, num_heads=2, depth=2, mlp_ratio=4, out_dim=48, rope_theta=10000.0,
                 grid_hw=[3, 4], prefix="semantic_decoder."),
    "small": dict(code_dim=32, embed_dim=256, num_heads=4, depth=2, mlp_ratio=4, out_dim=512, rope_theta=10000.0,
                  grid_hw=[9, 9], prefix="semantic_decoder."),
    "paper": dict(code_dim=32, embed_dim=1280, num_heads=16, depth=4, mlp_ratio=4, out_dim=3584,
                  rope_theta=10000.0, grid_hw=[18, 18], prefix="semantic_decoder."),
}


def rope_2d(h, w, head_dim, theta=10000.0, dtype=torch.float64):
    """cos, sin [h*w, head_dim] for row-major (h, w) positions (spec §3.2)."""
    n = head_dim // 4
    f = theta ** (-torch.arange(n, dtype=torch.float64) / n)
    hh, ww = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    t = torch.cat([hh.reshape(-1, 1) * f, ww.reshape(-1, 1) * f], -1)  # [N, head_dim/2]
    emb = torch.cat([t, t], -1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cos, sin):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [B,H,N,hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # QuickGELU


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class SemanticDecoder(nn.Module):
    def __init__(self, code_dim, embed_dim, num_heads, depth, mlp_ratio, out_dim, rope_theta=10000.0, **_):
        super().__init__()
        self.heads = num_heads
        self.theta = rope_theta
        self.proj_in = nn.Linear(code_dim, embed_dim)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.proj_out = nn.Sequential(nn.Linear(embed_dim, out_dim), nn.LayerNorm(out_dim, eps=1e-6))

    def forward(self, quant, inter=None):
        b, c, h, w = quant.shape
        x = self.proj_in(quant.flatten(2).transpose(1, 2))
        cos, sin = rope_2d(h, w, x.shape[-1] // self.heads, self.theta, x.dtype)
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin)
            if inter is not None:
                inter[f"block.{i}"] = x
        return self.proj_out(x)


def build(cfg):
    return SemanticDecoder(**cfg)


def checkpoint_state(model, cfg):
    return {cfg["prefix"] + k: v for k, v in model.state_dict().items()}


def make_inputs(cfg, g):
    h, w = cfg["grid_hw"]
    return {"quant": torch.randn((1, cfg["code_dim"], h, w), generator=g)}


def run(model, inputs, cfg):
    inter = {}
    return {"features": model(inputs["quant"], inter)}, inter
