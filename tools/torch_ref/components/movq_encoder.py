"""ILLUME+ pixel encoder (MoVQ encoder with DC down blocks, spec §6.2) + pixel_quant_conv.
Input: image [B,3,H,W] in [-1,1]. Outputs: h = encoder output (continuous, the projector_2 input,
[B,z,H/2^(L-1),..]) and quant_in = pixel_quant_conv(h) (the SimVQ input)."""

import torch
from torch import nn

from ..movq import Encoder

NAME = "movq_encoder"

CONFIGS = {
    "tiny": dict(ch=16, ch_mult=[1, 1, 2], num_res_blocks=1, attn_levels=[2], z_channels=8, groups=8,
                 image_hw=[16, 24]),
    "small": dict(ch=64, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=1, attn_levels=[4], z_channels=32, groups=32,
                  image_hw=[64, 64]),
    "paper": dict(ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_levels=[4], z_channels=32, groups=32,
                  image_hw=[256, 256]),
}


class PixelEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pixel_encoder = Encoder(cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["attn_levels"],
                                     cfg["z_channels"], groups=cfg["groups"])
        self.pixel_quant_conv = nn.Conv2d(cfg["z_channels"], cfg["z_channels"], 1)


def build(cfg):
    return PixelEncoder(cfg)


def make_inputs(cfg, g):
    h, w = cfg["image_hw"]
    return {"image": torch.rand((1, 3, h, w), generator=g) * 2 - 1}


def run(model, inputs, cfg):
    inter = {}
    h = model.pixel_encoder(inputs["image"], inter)
    return {"h": h, "quant_in": model.pixel_quant_conv(h)}, inter
