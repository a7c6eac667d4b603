"""The chained generation path (spec §1, §8), composed of the single-component modules
(their code and checkpoint names unchanged): ILLUME+'s SDXL-decoder conditioning.

1. `input.sem_ids` [1,h1,w1] and `input.pix_ids` [1,h2,w2] (int64 code ids) -> SimVQ lookups
   (`semantic_quantizer.*`, `pixel_quantizer.*`, dim = vq_channels / 2 each) -> NCHW maps.
2. The semantic map is resized to the pixel grid (bicubic, align_corners=False, no antialias)
   and concatenated with it, semantic first: vq = cat[sem, pix] -> `inter.vq` [1,vq_channels,h2,w2].
3. One Euler step: the scheduler (euler.py config, `num_inference_steps`) gives t0 = timesteps[0];
   latents = `input.noise` * init_noise_sigma; the UNet (unet.py, diffusers names) sees
   cat[scale_model_input(latents, t0), nearest(vq -> latent grid)] with the recorded
   `input.encoder_hidden_states`, `input.text_embeds`, `input.time_ids` -> `inter.noise_pred`;
   scheduler.step -> `output.latents_next`.
4. VAE decode (vae_decoder.py, `post_quant_conv.*`, `decoder.*`) of latents_next / scaling_factor
   -> `output.image`."""

import torch
import torch.nn.functional as F
from torch import nn

from . import euler as euler_mod
from . import simvq as simvq_mod
from . import unet as unet_mod
from . import vae_decoder as vae_mod

NAME = "generation"


def _tiny():
    unet = dict(unet_mod.CONFIGS["tiny"])
    half = unet["vq_channels"] // 2
    return dict(
        semantic=dict(simvq_mod.CONFIGS["tiny"], codebook_size=64, dim=half, grid_hw=[2, 2],
                      prefix="semantic_quantizer."),
        pixel=dict(simvq_mod.CONFIGS["tiny"], codebook_size=96, dim=half, grid_hw=unet["vq_hw"],
                   prefix="pixel_quantizer."),
        unet=unet,
        euler=dict(euler_mod.CONFIGS["tiny"], latent_hw=unet["latent_hw"]),
        vae=dict(vae_mod.CONFIGS["tiny"], latent_hw=unet["latent_hw"]),
    )


CONFIGS = {"tiny": _tiny()}


class Generation(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.semantic = simvq_mod.build(cfg["semantic"])
        self.pixel = simvq_mod.build(cfg["pixel"])
        self.unet = unet_mod.build(cfg["unet"])
        self.vae = vae_mod.build(cfg["vae"])


def build(cfg):
    return Generation(cfg).eval()


INIT_BUFFERS = ("semantic.frozen_codebook", "pixel.frozen_codebook")


def checkpoint_state(model, cfg):
    sd = {}
    sd.update(simvq_mod.checkpoint_state(model.semantic, cfg["semantic"]))
    sd.update(simvq_mod.checkpoint_state(model.pixel, cfg["pixel"]))
    sd.update(model.unet.state_dict())
    sd.update(vae_mod.checkpoint_state(model.vae, cfg["vae"]))
    return sd


def make_inputs(cfg, g):
    u = unet_mod.make_inputs(cfg["unet"], g)
    s, p = cfg["semantic"], cfg["pixel"]
    return {
        "sem_ids": torch.randint(0, s["codebook_size"], (1, *s["grid_hw"]), generator=g),
        "pix_ids": torch.randint(0, p["codebook_size"], (1, *p["grid_hw"]), generator=g),
        "noise": u["latent"],
        "encoder_hidden_states": u["encoder_hidden_states"],
        "text_embeds": u["text_embeds"],
        "time_ids": u["time_ids"],
    }


@torch.no_grad()
def run(model, inputs, cfg):
    sem = model.semantic.decode(inputs["sem_ids"])
    pix = model.pixel.decode(inputs["pix_ids"])
    sem = F.interpolate(sem, size=pix.shape[-2:], mode="bicubic", align_corners=False)
    vq = torch.cat([sem, pix], 1)
    sched = euler_mod.scheduler(cfg["euler"])
    sched.set_timesteps(cfg["euler"]["num_inference_steps"])
    t0 = sched.timesteps[0]
    latents = inputs["noise"] * sched.init_noise_sigma
    scaled = sched.scale_model_input(latents, t0)
    u = {"latent": scaled, "vq": vq, "timestep": t0.to(scaled.dtype),
         "encoder_hidden_states": inputs["encoder_hidden_states"], "text_embeds": inputs["text_embeds"],
         "time_ids": inputs["time_ids"]}
    noise_pred = unet_mod.run(model.unet, u, cfg["unet"])[0]["noise_pred"]
    nxt = sched.step(noise_pred, t0, latents).prev_sample
    image = model.vae.decode(nxt / cfg["vae"]["scaling_factor"]).sample
    inter = {"vq": vq, "noise_pred": noise_pred, "scaled_input": scaled, "t0": t0.reshape(1).to(scaled.dtype)}
    return {"latents_next": nxt, "image": image}, inter
