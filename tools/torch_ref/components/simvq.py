"""SimVQ quantiser (spec §7), ILLUME+ form: C = frozen_codebook @ code_transform.weight^T.

Inputs: z [B,d,h,w] (channel-first continuous codes), ids [B,h,w] (for the decode path).
Outputs: indices [B,h,w] (argmin_k ||x - C_k||, lowest index on ties), quant [B,d,h,w] = C[idx],
decoded [B,d,h,w] = C[ids]. inter.codebook = C [K,d]."""

import torch
from torch import nn

NAME = "simvq"
INIT_BUFFERS = ("frozen_codebook",)

CONFIGS = {
    "tiny": dict(codebook_size=64, dim=8, grid_hw=[3, 4], block_size=32768, prefix="semantic_quantizer."),
    "small": dict(codebook_size=4096, dim=32, grid_hw=[9, 9], block_size=32768, prefix="semantic_quantizer."),
    "paper": dict(codebook_size=32768, dim=32, grid_hw=[18, 18], block_size=32768, prefix="semantic_quantizer."),
}


class SimVQ(nn.Module):
    def __init__(self, codebook_size, dim, block_size=32768):
        super().__init__()
        self.block_size = block_size
        self.register_buffer("frozen_codebook", torch.randn(codebook_size, dim) / dim ** 0.5)
        self.code_transform = nn.Linear(dim, dim, bias=False)

    def codebook(self):
        return self.code_transform(self.frozen_codebook)

    def lookup(self, x):
        """x [N,d] -> indices [N]; blockwise argmin, ties to the lowest index."""
        c = self.codebook()
        best_d = best_i = None
        for s in range(0, c.shape[0], self.block_size):
            cb = c[s:s + self.block_size]
            d = (cb * cb).sum(-1)[None, :] - 2 * x @ cb.T
            dmin, imin = d.min(-1)
            imin = imin + s
            if best_d is None:
                best_d, best_i = dmin, imin
            else:
                take = dmin < best_d
                best_d = torch.where(take, dmin, best_d)
                best_i = torch.where(take, imin, best_i)
        return best_i

    def forward(self, z):
        b, d, h, w = z.shape
        x = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx = self.lookup(x)
        quant = self.codebook()[idx].view(b, h, w, d).permute(0, 3, 1, 2)
        return quant, idx.view(b, h, w)

    def decode(self, ids):
        b, h, w = ids.shape
        q = self.code_transform(self.frozen_codebook[ids.reshape(-1)])
        return q.view(b, h, w, -1).permute(0, 3, 1, 2)


def build(cfg):
    return SimVQ(cfg["codebook_size"], cfg["dim"], cfg["block_size"])


def checkpoint_state(model, cfg):
    return {cfg["prefix"] + k: v for k, v in model.state_dict().items()}


def make_inputs(cfg, g):
    h, w = cfg["grid_hw"]
    return {"z": torch.randn((1, cfg["dim"], h, w), generator=g) * 0.5,
            "ids": torch.randint(0, cfg["codebook_size"], (1, h, w), generator=g)}


def run(model, inputs, cfg):
    quant, idx = model(inputs["z"])
    return {"indices": idx, "quant": quant, "decoded": model.decode(inputs["ids"])}, {"codebook": model.codebook()}
