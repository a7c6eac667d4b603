"""SDXL-layout UNet step with ILLUME+ VQ conditioning (spec §8.1-8.2): diffusers
UNet2DConditionModel, in_channels = 4 latent + vq channels (68 at paper size).

Inputs: latent [B,4,h,w] (already scheduler-scaled), vq [B,64,h2,w2] (merged codes; nearest-
upsampled to h x w when sizes differ), timestep [] (float), encoder_hidden_states [B,L,ctx],
text_embeds [B,T], time_ids [B,6]. The fixture uses random context/text_embeds (ILLUME+ feeds
zeros; random values exercise attn2 and the add-embedding path). inter.sample_in is the
68-channel UNet input. Output: noise_pred [B,4,h,w]."""

import torch
import torch.nn.functional as F

NAME = "unet"

_SDXL = dict(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             block_out_channels=[320, 640, 1280], layers_per_block=2, transformer_layers_per_block=[1, 2, 10],
             attention_head_dim=[5, 10, 20], cross_attention_dim=2048, use_linear_projection=True,
             norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
             addition_embed_type="text_time", addition_time_embed_dim=256,
             projection_class_embeddings_input_dim=2816, in_channels=68, out_channels=4, sample_size=128)
_RUN = dict(vq_channels=64, latent_channels=4, text_embeds_dim=1280, context_len=77)

CONFIGS = {
    "tiny": dict(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], block_out_channels=[16, 32],
                 layers_per_block=1, transformer_layers_per_block=[1, 2], attention_head_dim=[1, 2],
                 cross_attention_dim=16, use_linear_projection=True, norm_num_groups=8, norm_eps=1e-5,
                 act_fn="silu", flip_sin_to_cos=True, freq_shift=0, addition_embed_type="text_time",
                 addition_time_embed_dim=8, projection_class_embeddings_input_dim=16 + 6 * 8, in_channels=68,
                 out_channels=4, sample_size=8, vq_channels=64, latent_channels=4, text_embeds_dim=16,
                 context_len=5, latent_hw=[8, 8], vq_hw=[4, 4], timestep=501.0),
    "small": dict(_SDXL, block_out_channels=[64, 128, 256], transformer_layers_per_block=[1, 1, 2],
                  attention_head_dim=[1, 2, 4], cross_attention_dim=256, addition_time_embed_dim=32,
                  projection_class_embeddings_input_dim=128 + 6 * 32, **dict(_RUN, text_embeds_dim=128),
                  latent_hw=[32, 32], vq_hw=[16, 16], timestep=501.0),
    "paper": dict(_SDXL, **_RUN, latent_hw=[128, 128], vq_hw=[32, 32], timestep=981.0),
}
_RUN_KEYS = tuple(_RUN) + ("latent_hw", "vq_hw", "timestep", "mask")


def unet_kwargs(cfg):
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k not in _RUN_KEYS}
    return kw


def build(cfg):
    from diffusers import UNet2DConditionModel

    m = UNet2DConditionModel(**unet_kwargs(cfg))
    from diffusers.models.attention_processor import AttnProcessor

    m.set_attn_processor(AttnProcessor())
    return m.eval()


def make_inputs(cfg, g):
    h, w = cfg["latent_hw"]
    vh, vw = cfg["vq_hw"]
    res_index = 11.0
    return {
        "latent": torch.randn((1, cfg["latent_channels"], h, w), generator=g),
        "vq": torch.randn((1, cfg["vq_channels"], vh, vw), generator=g),
        "timestep": torch.tensor(cfg["timestep"], dtype=torch.float32),
        "encoder_hidden_states": torch.randn((1, cfg["context_len"], cfg["cross_attention_dim"]), generator=g),
        "text_embeds": torch.randn((1, cfg["text_embeds_dim"]), generator=g),
        "time_ids": torch.tensor([[0, 0, 0, 0, 0, res_index]], dtype=torch.float32),
    }


def unet_input(inputs):
    lat, vq = inputs["latent"], inputs["vq"]
    if vq.shape[-2:] != lat.shape[-2:]:
        vq = F.interpolate(vq, size=lat.shape[-2:], mode="nearest")
    return torch.cat([lat, vq], 1)


def run(model, inputs, cfg, ctx=None):
    x = unet_input(inputs)
    inter = {"sample_in": x}
    hooks = []
    for i, blk in enumerate(model.down_blocks):
        hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: inter.__setitem__(f"down.{i}", o[0])))
    hooks.append(model.mid_block.register_forward_hook(lambda m, a, o: inter.__setitem__("mid", o)))
    for i, blk in enumerate(model.up_blocks):
        hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: inter.__setitem__(f"up.{i}", o)))
    try:
        out = model(x, inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"],
                    added_cond_kwargs={"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]}).sample
    finally:
        for h in hooks:
            h.remove()
    return {"noise_pred": out}, inter
