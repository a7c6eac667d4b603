"""Euler discrete scheduler (spec §8.5): diffusers EulerDiscreteScheduler with SDXL's config.
No weights. Runs `num_inference_steps` steps with random model outputs.
Inputs: sample [B,4,h,w] (initial noise, *not* yet multiplied by init_noise_sigma),
model_output.{i}. Outputs: timesteps, sigmas, init_noise_sigma, scaled_input.{i}
(scale_model_input at step i), sample.{i} (after step i)."""

import torch

NAME = "euler"
PRECISION = "float32"  # diffusers computes the sigma table in float32

_SCHED = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
              prediction_type="epsilon", timestep_spacing="leading", steps_offset=1, interpolation_type="linear",
              use_karras_sigmas=False)
CONFIGS = {
    "tiny": dict(_SCHED, num_inference_steps=4, latent_hw=[2, 3]),
    "small": dict(_SCHED, num_inference_steps=10, latent_hw=[8, 8]),
    "paper": dict(_SCHED, num_inference_steps=50, latent_hw=[128, 128]),
}


def build(cfg):
    return None


def scheduler(cfg):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**{k: v for k, v in cfg.items() if k in _SCHED})


def make_inputs(cfg, g):
    h, w = cfg["latent_hw"]
    inp = {"sample": torch.randn((1, 4, h, w), generator=g)}
    for i in range(cfg["num_inference_steps"]):
        inp[f"model_output.{i}"] = torch.randn((1, 4, h, w), generator=g)
    return inp


def run(model, inputs, cfg):
    s = scheduler(cfg)
    s.set_timesteps(cfg["num_inference_steps"])
    out = {"timesteps": s.timesteps.clone(), "sigmas": s.sigmas.clone(),
           "init_noise_sigma": torch.tensor(float(s.init_noise_sigma))}
    x = inputs["sample"] * s.init_noise_sigma
    for i, t in enumerate(s.timesteps):
        out[f"scaled_input.{i}"] = s.scale_model_input(x, t)
        x = s.step(inputs[f"model_output.{i}"], t, x).prev_sample
        out[f"sample.{i}"] = x
    return out, {}
