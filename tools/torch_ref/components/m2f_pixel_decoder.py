"""Mask2Former MSDeformAttn pixel decoder (spec §9.1), own code, detectron2 names under
`prefix` (default sem_seg_head.pixel_decoder.). Inputs res2..res5 NCHW (ConvNeXt stages).
Outputs: mask_features [B,mask_dim,H/4,W/4]; ms.0/ms.1/ms.2 = encoder maps at 1/32, 1/16, 1/8.
Note: follows the transformers implementation where it differs from the spec: adapter_1 has
no ReLU, FPN convs have no bias, sine positions are normalised without a -0.5 offset
(config field pe_offset)."""

import torch

from ..mask2former import PixelDecoder

NAME = "m2f_pixel_decoder"

CONFIGS = {
    "tiny": dict(in_channels=[8, 16, 24, 32], feat_hw=[[16, 24], [8, 12], [4, 6], [2, 3]], conv_dim=32, mask_dim=32,
                 heads=4, points=2, enc_layers=2, ffn_dim=64, groups=8, pe_offset=0.0,
                 prefix="sem_seg_head.pixel_decoder."),
    "small": dict(in_channels=[32, 64, 128, 256], feat_hw=[[32, 32], [16, 16], [8, 8], [4, 4]], conv_dim=128,
                  mask_dim=128, heads=8, points=4, enc_layers=2, ffn_dim=512, groups=32, pe_offset=0.0,
                  prefix="sem_seg_head.pixel_decoder."),
    "paper": dict(in_channels=[192, 384, 768, 1536], feat_hw=[[192, 192], [96, 96], [48, 48], [24, 24]],
                  conv_dim=256, mask_dim=256, heads=8, points=4, enc_layers=6, ffn_dim=1024, groups=32,
                  pe_offset=0.0, prefix="sem_seg_head.pixel_decoder."),
}


def build(cfg):
    return PixelDecoder(**cfg)


def checkpoint_state(model, cfg):
    return {cfg["prefix"] + k: v for k, v in model.state_dict().items()}


def make_inputs(cfg, g):
    return {f"res{i + 2}": torch.randn((1, c, h, w), generator=g)
            for i, (c, (h, w)) in enumerate(zip(cfg["in_channels"], cfg["feat_hw"]))}


def run(model, inputs, cfg):
    inter = {}
    mf, outs = model([inputs[f"res{i}"] for i in range(2, 6)], inter)
    out = {"mask_features": mf}
    for i, o in enumerate(outs):
        out[f"ms.{i}"] = o
    return out, inter
