"""ILLUME+ pixel decoder (MoVQ decoder with SpatialNorm(zq) and DC up blocks, spec §6.2).
Input: quant [B,zq,h2,w2] (merged semantic+pixel codes). z = pixel_post_quant_conv(quant),
zq = quant. Output: image [B,3,16*h2..] (pre-uint8 mapping)."""

import torch
from torch import nn

from ..movq import Decoder

NAME = "movq_decoder"

CONFIGS = {
    "tiny": dict(ch=16, ch_mult=[1, 1, 2], num_res_blocks=2, attn_levels=[2], z_channels=16, zq_channels=16,
                 groups=8, grid_hw=[3, 4]),
    "small": dict(ch=64, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=1, attn_levels=[4], z_channels=64, zq_channels=64,
                  groups=32, grid_hw=[4, 4]),
    "paper": dict(ch=384, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=3, attn_levels=[4], z_channels=64,
                  zq_channels=64, groups=32, grid_hw=[16, 16]),
}


class PixelDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pixel_post_quant_conv = nn.Conv2d(cfg["zq_channels"], cfg["z_channels"], 1)
        self.pixel_decoder = Decoder(cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["attn_levels"],
                                     cfg["z_channels"], cfg["zq_channels"], groups=cfg["groups"])


def build(cfg):
    return PixelDecoder(cfg)


def make_inputs(cfg, g):
    h, w = cfg["grid_hw"]
    return {"quant": torch.randn((1, cfg["zq_channels"], h, w), generator=g)}


def run(model, inputs, cfg):
    inter = {}
    q = inputs["quant"]
    z = model.pixel_post_quant_conv(q)
    inter["z"] = z
    return {"image": model.pixel_decoder(z, q, inter)}, inter
