"""ConvNeXt in the transformers ConvNextModel layout (spec §4.2 HF names): the same network as
`convnext`, run through transformers' ConvNextModel. Outputs res2..res5 (NCHW)."""

import torch

from . import convnext as _tm

NAME = "convnext_hf"
CONFIGS = _tm.CONFIGS
make_inputs = _tm.make_inputs


def hf_config(cfg):
    from transformers import ConvNextConfig

    return ConvNextConfig(num_channels=3, patch_size=4, num_stages=4, hidden_sizes=list(cfg["dims"]),
                          depths=list(cfg["depths"]), hidden_act="gelu", layer_scale_init_value=cfg["ls_init_value"],
                          drop_path_rate=0.0, layer_norm_eps=1e-12)


class _Wrap(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from transformers import ConvNextModel

        self.convnext = ConvNextModel(hf_config(cfg))


def build(cfg):
    return _Wrap(cfg).eval()


def init(model, seed):
    """Same values as the timm fixture for the same seed (weights are converted, not redrawn)."""
    from .. import common

    tm = _tm.build(_cfg_of(model))
    common.deterministic_init(tm, seed)
    sd = _tm.timm_to_hf(tm.state_dict())
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert not [m for m in missing if "pooler" not in m], missing


def _cfg_of(model):
    return model._torch_ref_cfg


_orig_build = build


def build(cfg):  # noqa: F811
    m = _orig_build(cfg)
    m._torch_ref_cfg = cfg
    return m


def run(model, inputs, cfg):
    out = model.convnext(pixel_values=inputs["image"], output_hidden_states=True)
    hs = out.hidden_states  # embeddings, stage0..stage3
    return {f"res{s + 2}": hs[s + 1] for s in range(4)}, {"stem": hs[0]}
