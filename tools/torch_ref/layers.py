"""Small building blocks shared by the FOCUS-own reference modules (written from the spec)."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def sdpa(q, k, v, mask=None):
    """Plain attention over [B, heads, L, dh]; mask: bool, True = blocked (broadcastable)."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, -1) @ v


class CrossAttention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections (names q_proj/k_proj/v_proj/o_proj)."""

    def __init__(self, d_q, d_kv, d, heads, bias=True, out_dim=None):
        super().__init__()
        assert d % heads == 0
        self.heads = heads
        self.q_proj = nn.Linear(d_q, d, bias=bias)
        self.k_proj = nn.Linear(d_kv, d, bias=bias)
        self.v_proj = nn.Linear(d_kv, d, bias=bias)
        self.o_proj = nn.Linear(d, out_dim or d, bias=bias)

    def forward(self, x, ctx, mask=None):
        b, n, _ = x.shape
        m = ctx.shape[1]
        h = self.heads
        q = self.q_proj(x).view(b, n, h, -1).transpose(1, 2)
        k = self.k_proj(ctx).view(b, m, h, -1).transpose(1, 2)
        v = self.v_proj(ctx).view(b, m, h, -1).transpose(1, 2)
        o = sdpa(q, k, v, mask).transpose(1, 2).reshape(b, n, -1)
        return self.o_proj(o)


def flatten_nchw(x):
    """[B,C,H,W] -> [B,H*W,C], row-major tokens."""
    return x.flatten(2).transpose(1, 2)
