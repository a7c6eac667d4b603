"""SDXL VAE decoder (spec §8.4): diffusers AutoencoderKL.decode(latents / scaling_factor).
Weights: post_quant_conv.* and decoder.* (the encoder is dropped from the fixture).
Input: latents [B,4,h,w] (scaled latent space). Output: image [B,3,8h,8w] in ~[-1,1]."""

import torch

NAME = "vae_decoder"

CONFIGS = {
    "tiny": dict(block_out_channels=[16, 32], layers_per_block=2, latent_channels=4, norm_num_groups=8,
                 scaling_factor=0.13025, latent_hw=[4, 6]),
    "small": dict(block_out_channels=[32, 64, 128, 128], layers_per_block=2, latent_channels=4, norm_num_groups=32,
                  scaling_factor=0.13025, latent_hw=[16, 16]),
    "paper": dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
                  norm_num_groups=32, scaling_factor=0.13025, latent_hw=[128, 128]),
}


def build(cfg):
    from diffusers import AutoencoderKL
    from diffusers.models.attention_processor import AttnProcessor

    n = len(cfg["block_out_channels"])
    m = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                      up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg["block_out_channels"]),
                      layers_per_block=cfg["layers_per_block"], latent_channels=cfg["latent_channels"],
                      norm_num_groups=cfg["norm_num_groups"], scaling_factor=cfg["scaling_factor"], force_upcast=True)
    m.set_attn_processor(AttnProcessor())
    return m.eval()


def checkpoint_state(model, cfg):
    return {k: v for k, v in model.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}


def make_inputs(cfg, g):
    h, w = cfg["latent_hw"]
    return {"latents": torch.randn((1, cfg["latent_channels"], h, w), generator=g)}


def run(model, inputs, cfg):
    z = inputs["latents"] / cfg["scaling_factor"]
    inter = {"post_quant": model.post_quant_conv(z)}
    return {"image": model.decode(z).sample}, inter
