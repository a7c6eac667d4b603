"""ConvNeXt hierarchical encoder (spec §4): timm ConvNeXt, timm state-dict names.
Input: image NCHW. Outputs: the four stage outputs res2..res5 (NCHW)."""

import torch

NAME = "convnext"

CONFIGS = {
    "tiny": dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32], ls_init_value=1e-6, num_classes=10, image_hw=[64, 96]),
    "small": dict(depths=[2, 2, 4, 2], dims=[32, 64, 128, 256], ls_init_value=1e-6, num_classes=10,
                  image_hw=[128, 128]),
    "paper": dict(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], ls_init_value=1e-6, num_classes=1000,
                  image_hw=[768, 768]),
}


def build(cfg):
    from timm.models.convnext import ConvNeXt

    return ConvNeXt(depths=tuple(cfg["depths"]), dims=tuple(cfg["dims"]), ls_init_value=cfg["ls_init_value"],
                    num_classes=cfg["num_classes"], drop_path_rate=0.0).eval()


def make_inputs(cfg, g):
    h, w = cfg["image_hw"]
    return {"image": torch.randn((1, 3, h, w), generator=g, dtype=torch.float32)}


def stage_outputs(model, x):
    x = model.stem(x)
    outs = {"stem": x}
    for s, stage in enumerate(model.stages):
        x = stage(x)
        outs[f"res{s + 2}"] = x
    return outs


def run(model, inputs, cfg):
    outs = stage_outputs(model, inputs["image"])
    stem = outs.pop("stem")
    return outs, {"stem": stem}


def timm_to_hf(sd):
    """Rename timm ConvNeXt tensors to transformers ConvNextModel names (spec §4.2)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            if k.startswith("head.norm."):
                out["convnext.layernorm." + k[len("head.norm."):]] = v
            continue
        n = k
        n = n.replace("stem.0.", "embeddings.patch_embeddings.").replace("stem.1.", "embeddings.layernorm.")
        n = n.replace(".downsample.0.", ".downsampling_layer.0.").replace(".downsample.1.", ".downsampling_layer.1.")
        n = n.replace(".blocks.", ".layers.").replace(".conv_dw.", ".dwconv.").replace(".norm.", ".layernorm.")
        n = n.replace(".mlp.fc1.", ".pwconv1.").replace(".mlp.fc2.", ".pwconv2.")
        if n.endswith(".gamma"):
            n = n[: -len("gamma")] + "layer_scale_parameter"
        if n.startswith("stages."):
            n = "encoder." + n
        out["convnext." + n] = v
    return out
