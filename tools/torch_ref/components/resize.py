"""torch.nn.functional.interpolate in every mode the engine implements (spec §11.3): the
reference for the engine's resize op, and the QwenViT pre-processing (spec §3.1: bicubic with
antialias to the ViT resolution, clamp to [0, 1], CLIP normalisation).

Input: image [1,C,H,W] in [0, 1]. Outputs `output.<mode>.<down|up>` NCHW for sizes `down_hw`
(both sides smaller) and `up_hw` (both larger), modes: nearest, bilinear, bilinear_ac
(align_corners), bilinear_aa (antialias), bicubic, bicubic_ac, bicubic_aa; and `output.vit` =
normalise(clamp(bicubic_aa(image, vit_hw), 0, 1))."""

import torch
import torch.nn.functional as F

from ._vit import CLIP_MEAN, CLIP_STD

NAME = "resize"

CONFIGS = {
    "tiny": dict(channels=3, image_hw=[37, 53], down_hw=[14, 20], up_hw=[61, 80], vit_hw=[28, 56]),
    "small": dict(channels=3, image_hw=[256, 256], down_hw=[252, 252], up_hw=[512, 512], vit_hw=[252, 252]),
    "paper": dict(channels=3, image_hw=[1024, 768], down_hw=[504, 392], up_hw=[1536, 1152], vit_hw=[504, 392]),
}

MODES = {
    "nearest": dict(mode="nearest"),
    "bilinear": dict(mode="bilinear", align_corners=False),
    "bilinear_ac": dict(mode="bilinear", align_corners=True),
    "bilinear_aa": dict(mode="bilinear", align_corners=False, antialias=True),
    "bicubic": dict(mode="bicubic", align_corners=False),
    "bicubic_ac": dict(mode="bicubic", align_corners=True),
    "bicubic_aa": dict(mode="bicubic", align_corners=False, antialias=True),
}


def build(cfg):
    return None


def make_inputs(cfg, g):
    h, w = cfg["image_hw"]
    return {"image": torch.rand((1, cfg["channels"], h, w), generator=g, dtype=torch.float32)}


def run(model, inputs, cfg):
    x = inputs["image"]
    out = {}
    for name, kw in MODES.items():
        for tag in ("down", "up"):
            out[f"{name}.{tag}"] = F.interpolate(x, size=tuple(cfg[f"{tag}_hw"]), **kw)
    v = F.interpolate(x, size=tuple(cfg["vit_hw"]), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype).view(1, 3, 1, 1)
    out["vit"] = (v.clamp(0, 1) - mean) / std
    return out, {}
