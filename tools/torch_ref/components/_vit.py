"""Shared code for the Qwen2-VL / Qwen2.5-VL vision towers (spec §3)."""

import torch
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def patchify(image: torch.Tensor, patch: int, temporal: int, merge: int) -> torch.Tensor:
    """[1,C,H,W] normalised image -> [gh*gw, C*temporal*patch*patch] patch vectors.

    The frame is duplicated to `temporal` frames; patch vectors are ordered (c, t, py, px) and
    the sequence is in 2x2 merge-group order (row_block, col_block, r, c) (spec §3.1 steps 4-6),
    the same layout as transformers' Qwen2-VL image processor.
    """
    assert image.shape[0] == 1
    x = image[0].unsqueeze(0).repeat(temporal, 1, 1, 1)  # [T,C,H,W]
    t, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(1, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # gt, bh, bw, r, c, C, T, py, px
    return x.reshape(gh * gw, c * temporal * patch * patch)


def make_image(cfg, g):
    h, w = cfg["image_hw"]
    return {"image": torch.randn((1, cfg.get("in_channels", 3), h, w), generator=g, dtype=torch.float32),
            "grid_thw": torch.tensor([[1, h // cfg["patch_size"], w // cfg["patch_size"]]], dtype=torch.int64)}


class VisualWrapper(nn.Module):
    """Holds the tower under `visual` so state-dict names carry the checkpoint prefix."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual


def run_tower(model, inputs, cfg):
    vis = model.visual
    patches = patchify(inputs["image"], cfg["patch_size"], cfg["temporal_patch_size"], cfg["spatial_merge_size"])
    patches = patches.to(inputs["image"].dtype)
    block_out = {}
    hooks = [blk.register_forward_hook(lambda m, a, o, i=i: block_out.__setitem__(i, o if torch.is_tensor(o) else o[0]))
             for i, blk in enumerate(vis.blocks)]
    try:
        out = vis(patches, grid_thw=inputs["grid_thw"])
    finally:
        for h in hooks:
            h.remove()
    inter = {"patches": patches, "patch_embed": vis.patch_embed(patches)}
    for i, o in sorted(block_out.items()):
        inter[f"block.{i}"] = o
    return {"embeds": out.pooler_output}, inter


_RUN_KEYS = ("image_hw", "prefix")


def hf_kwargs(cfg):
    return {k: v for k, v in cfg.items() if k not in _RUN_KEYS}


def checkpoint_state(model, cfg):
    sd = model.state_dict()
    prefix = cfg.get("prefix", "visual.")
    return {prefix + k[len("visual."):]: v for k, v in sd.items()}
