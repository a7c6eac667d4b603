"""FOCUS mask injection into the UNet (spec §8.3, FOCUS-only; own code around diffusers' UNet).

mask [B,1,Hm,Wm] in [0,1] -> adaptive avg-pool to the latent grid -> patchify p x p (row-major
patches, row-major pixels inside a patch) -> mask_embedder.proj Linear(p*p -> ctx)
+ mask_embedder.pos_embed [S_m, ctx] -> mask sequence. In the blocks listed in `inject`
(prefixes of diffusers module paths, default mid_block and up_blocks) attn2's context is
cat([encoder_hidden_states, mask_seq], 1); other blocks keep encoder_hidden_states.
Inputs: the `unet` inputs + mask. Outputs: noise_pred; inter.mask_seq."""

import torch
import torch.nn.functional as F
from torch import nn

from . import unet as _u

NAME = "unet_mask"

CONFIGS = {k: dict(v) for k, v in _u.CONFIGS.items()}
CONFIGS["tiny"]["mask"] = dict(patch=2, image_scale=2, inject=["mid_block", "up_blocks"])
CONFIGS["small"]["mask"] = dict(patch=2, image_scale=8, inject=["mid_block", "up_blocks"])
CONFIGS["paper"]["mask"] = dict(patch=8, image_scale=8, inject=["mid_block", "up_blocks"])


class MaskEmbedder(nn.Module):
    def __init__(self, patch, n_tokens, ctx):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(patch * patch, ctx)
        self.pos_embed = nn.Parameter(torch.zeros(n_tokens, ctx))

    def forward(self, mask, latent_hw):
        m = F.adaptive_avg_pool2d(mask, latent_hw)
        b, _, h, w = m.shape
        p = self.patch
        m = m.view(b, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(b, (h // p) * (w // p), p * p)
        return self.proj(m) + self.pos_embed


class _InjectProcessor:
    """Wraps a processor: appends the mask sequence to attn2's context."""

    def __init__(self, base, holder):
        self.base = base
        self.holder = holder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None and self.holder.get("seq") is not None:
            encoder_hidden_states = torch.cat([encoder_hidden_states, self.holder["seq"]], 1)
        return self.base(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class MaskUNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.unet = _u.build(cfg)
        mc = cfg["mask"]
        h, w = cfg["latent_hw"]
        self.mask_embedder = MaskEmbedder(mc["patch"], (h // mc["patch"]) * (w // mc["patch"]),
                                          cfg["cross_attention_dim"])
        self.holder = {}
        procs = {}
        for name, proc in self.unet.attn_processors.items():
            if name.endswith("attn2.processor") and any(name.startswith(p) for p in mc["inject"]):
                proc = _InjectProcessor(proc, self.holder)
            procs[name] = proc
        self.unet.set_attn_processor(procs)


def build(cfg):
    return MaskUNet(cfg).eval()


def checkpoint_state(model, cfg):
    sd = {k[len("unet."):]: v for k, v in model.state_dict().items() if k.startswith("unet.")}
    sd.update({k: v for k, v in model.state_dict().items() if k.startswith("mask_embedder.")})
    return sd


def make_inputs(cfg, g):
    inp = _u.make_inputs(cfg, g)
    h, w = cfg["latent_hw"]
    s = cfg["mask"]["image_scale"]
    inp["mask"] = torch.rand((1, 1, h * s, w * s), generator=g)
    return inp


def run(model, inputs, cfg):
    seq = model.mask_embedder(inputs["mask"], tuple(cfg["latent_hw"]))
    model.holder["seq"] = seq
    try:
        out, inter = _u.run(model.unet, inputs, cfg)
    finally:
        model.holder["seq"] = None
    inter["mask_seq"] = seq
    return out, inter
