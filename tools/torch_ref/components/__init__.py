"""Component registry.

Each component module defines:
  NAME, CONFIGS (tiny/small/paper dicts), build(cfg) -> nn.Module whose state_dict()
  uses the public checkpoint names, make_inputs(cfg, g) -> dict of float32/int64 CPU
  tensors, run(model, inputs, cfg) -> (outputs, inter).
Optional: checkpoint_state(model, cfg) (default: model.state_dict()),
  init(model, seed) (default: common.deterministic_init), PRECISION ("float64").
"""

import importlib

ORDER = [
    "qwen2",
    "convnext",
    "convnext_hf",
    "qwen2vl_vit",
    "qwen25vl_vit",
    "simvq",
    "fusion",
    "adapter",
    "movq_encoder",
    "movq_decoder",
    "semantic_decoder",
    "m2f_pixel_decoder",
    "m2f_transformer_decoder",
    "unet",
    "unet_mask",
    "vae_decoder",
    "euler",
    "resize",
    "movq_kandinsky",
    "perception",
    "generation",
]



def get(name: str):
    if name not in ORDER:
        raise SystemExit(f"unknown component {name!r}: one of {ORDER}")
    return importlib.import_module(f"{__name__}.{name}")


def available():
    out = []
    for n in ORDER:
        try:
            get(n)
            out.append(n)
        except ModuleNotFoundError:
            pass
    return out
