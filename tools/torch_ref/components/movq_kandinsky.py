"""Kandinsky-style MoVQ: diffusers `VQModel` with `norm_type="spatial"` (SpatialNorm decoder
conditioned on the quantised map), the library implementation the spec cross-checks our own
MoVQ blocks against (spec §6.2). Names are diffusers' (`encoder.*`, `quant_conv.*`,
`quantize.embedding.weight`, `post_quant_conv.*`, `decoder.*`).

Input: image [1,3,H,W]. Outputs: `h` = quant_conv(encoder(image)) [1,e,h,w] (pre-quantisation),
`indices` [1,h,w] (nearest codebook rows), `image` = decode(h) (quantise, post_quant_conv,
SpatialNorm decoder) [1,3,H,W]."""

import torch

NAME = "movq_kandinsky"

CONFIGS = {
    "tiny": dict(block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
                 up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], layers_per_block=1,
                 norm_num_groups=32, latent_channels=4, vq_embed_dim=4, num_vq_embeddings=32, image_hw=[16, 24]),
    # Kandinsky 2.2 MOVQ (third-party copy of the official config, spec §13).
    "paper": dict(block_out_channels=[128, 256, 256, 512],
                  down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
                  up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3, layers_per_block=2,
                  norm_num_groups=32, latent_channels=4, vq_embed_dim=4, num_vq_embeddings=16384,
                  image_hw=[256, 256]),
}
CONFIGS["small"] = dict(CONFIGS["tiny"], block_out_channels=[64, 128], image_hw=[64, 64])


def build(cfg):
    from diffusers import VQModel

    kw = {k: v for k, v in cfg.items() if k != "image_hw"}
    return VQModel(norm_type="spatial", **kw).eval()


def make_inputs(cfg, g):
    h, w = cfg["image_hw"]
    return {"image": torch.randn((1, 3, h, w), generator=g)}


@torch.no_grad()
def run(model, inputs, cfg):
    h = model.encode(inputs["image"]).latents
    q, _, (_, _, idx) = model.quantize(h)
    b, _, hh, ww = h.shape
    image = model.decode(h).sample
    return {"h": h, "indices": idx.view(b, hh, ww), "image": image}, {"quant": q}
