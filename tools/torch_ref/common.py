"""Shared helpers: deterministic weight init, precision handling, config loading."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import torch
from torch import nn


def load_config(component, config: str) -> Dict[str, Any]:
    """Return the config dict for ``config`` (tiny|small|paper or a JSON path).

    A JSON file may hold a full config or a partial one with ``"base": "tiny"`` whose
    remaining keys override the named preset.
    """
    presets = component.CONFIGS
    if config in presets:
        return json.loads(json.dumps(presets[config]))
    if os.path.exists(config):
        with open(config) as f:
            data = json.load(f)
        base = data.pop("base", None)
        cfg = json.loads(json.dumps(presets[base])) if base else {}
        cfg.update(data)
        return cfg
    raise SystemExit(f"unknown config {config!r} for {component.NAME}: use {sorted(presets)} or a JSON path")


def _is_norm_module(mod: nn.Module) -> bool:
    n = type(mod).__name__.lower()
    return "norm" in n


@torch.no_grad()
def deterministic_init(model: nn.Module, seed: int, extra_buffers=(), gain: float = 1.0) -> None:
    """Overwrite every parameter (and the named buffers) with seeded random values.

    Library initialisers leave biases at zero and norms at one, which would hide
    bias/affine bugs, so everything gets a non-trivial value:
      * tensors with ndim >= 2: N(0, 1) * gain / sqrt(fan_in), fan_in = prod(shape[1:])
      * 1-D weights of normalisation modules: 1 + 0.1 * N(0, 1)
      * every other 1-D / 0-D tensor (biases, gates, layer scales, embeddings): 0.1 * N(0, 1)
    Values are drawn in float32 on CPU from one torch.Generator in state-dict order, so
    they depend only on (seed, config). Tied parameters are initialised once.
    """
    g = torch.Generator().manual_seed(seed)
    owners = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = mod
    seen = set()
    targets = list(model.named_parameters())
    bufs = dict(model.named_buffers())
    for b in extra_buffers:
        targets.append((b, bufs[b]))
    for name, p in targets:
        if id(p) in seen or not p.is_floating_point():
            continue
        seen.add(id(p))
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.ndim >= 2:
            fan_in = 1
            for s in p.shape[1:]:
                fan_in *= s
            r = r * (gain / fan_in ** 0.5)
        elif p.ndim == 1 and name.endswith("weight") and _is_norm_module(owners.get(name, nn.Identity())):
            r = 1.0 + 0.1 * r
        else:
            r = 0.1 * r
        p.copy_(r.to(p.dtype))


def randn(shape, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float32) * scale


def compute_dtype(precision: str) -> torch.dtype:
    return {"float64": torch.float64, "float32": torch.float32}[precision]


def cast_inputs(inputs: Dict[str, torch.Tensor], dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}


def set_deterministic() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
