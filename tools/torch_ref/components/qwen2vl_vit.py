"""Qwen2-VL ViT (ILLUME+ 600M semantic encoder, spec §3.4): transformers
Qwen2VisionTransformerPretrainedModel. Input: normalised image NCHW (already at Hr x Wr);
the patchified sequence (2x2 merge-group order) is recorded as inter.patches.
Block outputs (inter.block.{i}) are in the same merge-group token order."""

import torch

from ._vit import VisualWrapper, checkpoint_state, hf_kwargs, make_image, run_tower  # noqa: F401

NAME = "qwen2vl_vit"

_COMMON = dict(hidden_act="quick_gelu", mlp_ratio=4, in_channels=3, spatial_merge_size=2, temporal_patch_size=2,
               prefix="visual.")
CONFIGS = {
    "tiny": dict(_COMMON, depth=2, embed_dim=32, num_heads=2, hidden_size=48, patch_size=4, image_hw=[16, 24]),
    "small": dict(_COMMON, depth=4, embed_dim=128, num_heads=4, hidden_size=256, patch_size=14, image_hw=[112, 84]),
    "paper": dict(_COMMON, depth=32, embed_dim=1280, num_heads=16, hidden_size=3584, patch_size=14,
                  image_hw=[252, 252]),
}


def build(cfg):
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    c = Qwen2VLVisionConfig(**hf_kwargs(cfg))
    c._attn_implementation = "eager"
    return VisualWrapper(Qwen2VisionTransformerPretrainedModel(c)).eval()


def make_inputs(cfg, g):
    return make_image(cfg, g)


def run(model, inputs, cfg):
    return run_tower(model, inputs, cfg)
