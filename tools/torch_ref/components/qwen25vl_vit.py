"""Qwen2.5-VL ViT (window attention, spec §3.3): transformers
Qwen2_5_VisionTransformerPretrainedModel. Input: normalised image NCHW; inter.patches is the
patch sequence in 2x2 merge-group order (before the window permutation). inter.block.{i} are
block outputs in the *window-permuted* order the library uses internally; inter.window_index
is the merge-unit permutation (output.embeds is already un-permuted)."""

import torch

from ._vit import VisualWrapper, checkpoint_state, hf_kwargs, make_image, run_tower  # noqa: F401

NAME = "qwen25vl_vit"

_COMMON = dict(hidden_act="silu", in_channels=3, spatial_merge_size=2, temporal_patch_size=2, prefix="visual.")
CONFIGS = {
    # 6x10 patches -> 3x5 merge units; window 16px = 4x4 patches = 2x2 units -> full, partial and 1-unit windows.
    "tiny": dict(_COMMON, depth=3, hidden_size=32, num_heads=2, intermediate_size=48, out_hidden_size=40,
                 patch_size=4, window_size=16, fullatt_block_indexes=[1], image_hw=[24, 40]),
    "small": dict(_COMMON, depth=4, hidden_size=128, num_heads=4, intermediate_size=342, out_hidden_size=256,
                  patch_size=14, window_size=112, fullatt_block_indexes=[1, 3], image_hw=[252, 252]),
    "paper": dict(_COMMON, depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048,
                  patch_size=14, window_size=112, fullatt_block_indexes=[7, 15, 23, 31], image_hw=[252, 252]),
}


def build(cfg):
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    c = Qwen2_5_VLVisionConfig(**hf_kwargs(cfg))
    c._attn_implementation = "eager"
    return VisualWrapper(Qwen2_5_VisionTransformerPretrainedModel(c)).eval()


def make_inputs(cfg, g):
    return make_image(cfg, g)


def run(model, inputs, cfg):
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m

    out, inter = run_tower(model, inputs, cfg)
    vis = model.visual
    try:
        wi, cu = m.get_vision_window_index(inputs["grid_thw"], spatial_merge_size=vis.spatial_merge_size,
                                           window_size=vis.window_size, patch_size=vis.patch_size, kwargs={})
        inter["window_index"] = torch.as_tensor(wi).to(torch.int64)
        inter["cu_window_seqlens"] = torch.as_tensor(cu).to(torch.int64)
    except Exception:  # pragma: no cover - helper signature changed
        pass
    return out, inter
