"""ILLUME+ DualViTok pixel branch: MoVQGAN-style encoder/decoder with DC blocks and SpatialNorm
(spec §6.2). Written from the spec; module paths give the ILLUME+ checkpoint names."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def swish(x):
    return x * torch.sigmoid(x)


class SpatialNorm(nn.Module):
    """out = GroupNorm(f) * conv_y(zq') + conv_b(zq'), zq' = nearest-resize(zq, f's HxW)."""

    def __init__(self, c, zq_ch, groups):
        super().__init__()
        self.norm_layer = nn.GroupNorm(groups, c, eps=1e-6, affine=True)
        self.conv_y = nn.Conv2d(zq_ch, c, 1)
        self.conv_b = nn.Conv2d(zq_ch, c, 1)

    def forward(self, f, zq):
        zq = F.interpolate(zq, size=f.shape[-2:], mode="nearest")
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


def make_norm(c, zq_ch, groups):
    return SpatialNorm(c, zq_ch, groups) if zq_ch else nn.GroupNorm(groups, c, eps=1e-6, affine=True)


def apply_norm(norm, x, zq):
    return norm(x, zq) if isinstance(norm, SpatialNorm) else norm(x)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, groups, zq_ch=0):
        super().__init__()
        self.norm1 = make_norm(cin, zq_ch, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = make_norm(cout, zq_ch, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, zq=None):
        h = self.conv1(swish(apply_norm(self.norm1, x, zq)))
        h = self.conv2(swish(apply_norm(self.norm2, h, zq)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention, scale 1/sqrt(C), 1x1-conv q/k/v/proj_out."""

    def __init__(self, c, groups, zq_ch=0):
        super().__init__()
        self.norm = make_norm(c, zq_ch, groups)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, zq=None):
        b, c, hh, ww = x.shape
        n = apply_norm(self.norm, x, zq)
        q = self.q(n).flatten(2).transpose(1, 2)  # [B,HW,C]
        k = self.k(n).flatten(2)  # [B,C,HW]
        v = self.v(n).flatten(2).transpose(1, 2)
        a = torch.softmax(q @ k / math.sqrt(c), -1)
        o = (a @ v).transpose(1, 2).reshape(b, c, hh, ww)
        return x + self.proj_out(o)


class DCDownBlock2d(nn.Module):
    """pixel_unshuffle2(conv3x3(C->C/4)(x)) + avgpool2(x)."""

    def __init__(self, c):
        super().__init__()
        assert c % 4 == 0
        self.conv = nn.Conv2d(c, c // 4, 3, padding=1)

    def forward(self, x):
        return F.pixel_unshuffle(self.conv(x), 2) + F.avg_pool2d(x, 2)


class DCUpBlock2d(nn.Module):
    """pixel_shuffle2(conv3x3(C->4C)(x)) + nearest_up2(x)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, 4 * c, 3, padding=1)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2) + F.interpolate(x, scale_factor=2, mode="nearest")


class _Level(nn.Module):
    pass


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_levels, z_channels, in_channels=3, groups=32):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i, m in enumerate(ch_mult):
            lvl = _Level()
            block_in = ch * in_mult[i]
            block_out = ch * m
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                lvl.block.append(ResBlock(block_in, block_out, groups))
                block_in = block_out
                if i in attn_levels:
                    lvl.attn.append(AttnBlock(block_in, groups))
            if i != len(ch_mult) - 1:
                lvl.downsample = DCDownBlock2d(block_in)
            self.down.append(lvl)
        self.mid = _Level()
        self.mid.block_1 = ResBlock(block_in, block_in, groups)
        self.mid.attn_1 = AttnBlock(block_in, groups)
        self.mid.block_2 = ResBlock(block_in, block_in, groups)
        self.norm_out = nn.GroupNorm(groups, block_in, eps=1e-6, affine=True)
        assert block_in % z_channels == 0
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)
        self.z_channels = z_channels

    def forward(self, x, inter=None):
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for j, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
            if inter is not None:
                inter[f"down.{i}"] = h
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        if inter is not None:
            inter["mid"] = h
        h = swish(self.norm_out(h))
        b, c, hh, ww = h.shape
        short = h.view(b, self.z_channels, c // self.z_channels, hh, ww).mean(2)
        return self.conv_out(h) + short


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_levels, z_channels, zq_channels, out_channels=3, groups=32):
        super().__init__()
        block_in = ch * ch_mult[-1]
        assert block_in % z_channels == 0
        self.rep = block_in // z_channels
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        zc = zq_channels
        self.mid = _Level()
        self.mid.block_1 = ResBlock(block_in, block_in, groups, zc)
        self.mid.attn_1 = AttnBlock(block_in, groups, zc)
        self.mid.block_2 = ResBlock(block_in, block_in, groups, zc)
        up = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            lvl = _Level()
            block_out = ch * ch_mult[i]
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                lvl.block.append(ResBlock(block_in, block_out, groups, zc))
                block_in = block_out
                if i in attn_levels:
                    lvl.attn.append(AttnBlock(block_in, groups, zc))
            if i != 0:
                lvl.upsample = DCUpBlock2d(block_in)
            up[i] = lvl
        self.up = nn.ModuleList(up)
        self.norm_out = SpatialNorm(block_in, zc, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z, zq, inter=None):
        h = self.conv_in(z) + z.repeat_interleave(self.rep, dim=1)
        h = self.mid.block_1(h, zq)
        h = self.mid.attn_1(h, zq)
        h = self.mid.block_2(h, zq)
        if inter is not None:
            inter["mid"] = h
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for j, blk in enumerate(lvl.block):
                h = blk(h, zq)
                if len(lvl.attn):
                    h = lvl.attn[j](h, zq)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
            if inter is not None:
                inter[f"up.{i}"] = h
        return self.conv_out(swish(self.norm_out(h, zq)))
