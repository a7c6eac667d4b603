"""Fixture writer / reader (see README.md, "Fixture format")."""

from __future__ import annotations

import json
import platform
from typing import Any, Dict, Optional

import torch
from safetensors.torch import load_file, safe_open, save_file

from . import __version__

FORMAT_VERSION = "1"


def library_versions() -> Dict[str, str]:
    import importlib

    out = {"python": platform.python_version()}
    for mod in ("torch", "transformers", "timm", "diffusers", "safetensors", "numpy"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # pragma: no cover - optional library missing
            out[mod] = "missing"
    return out


def _prep(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.to(dtype)
    return t.contiguous().clone()


def write_fixture(
    path: str,
    *,
    component: str,
    config: Dict[str, Any],
    seed: int,
    weights: Dict[str, torch.Tensor],
    inputs: Dict[str, torch.Tensor],
    outputs: Dict[str, torch.Tensor],
    inter: Optional[Dict[str, torch.Tensor]] = None,
    reference_precision: str = "float64",
    dtype: torch.dtype = torch.float32,
    command: str = "",
) -> None:
    tensors: Dict[str, torch.Tensor] = {}
    for prefix, group in (("", weights), ("input.", inputs), ("output.", outputs), ("inter.", inter or {})):
        for k, v in group.items():
            key = prefix + k
            if key in tensors:
                raise ValueError(f"duplicate tensor name {key}")
            tensors[key] = _prep(v, dtype)
    meta = {
        "format_version": FORMAT_VERSION,
        "component": component,
        "config": json.dumps(config, sort_keys=True),
        "dtype": str(dtype).replace("torch.", ""),
        "seed": str(seed),
        "generator": f"torch_ref {__version__}",
        "libraries": json.dumps(library_versions(), sort_keys=True),
        "reference_precision": reference_precision,
        "weights": json.dumps(sorted(weights)),
        "command": command,
    }
    # sorted insertion keeps the header byte-identical across runs
    save_file({k: tensors[k] for k in sorted(tensors)}, path, metadata=meta)


def read_fixture(path: str):
    """Return (weights, inputs, outputs, inter, metadata)."""
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    t = load_file(path)
    groups = {"input.": {}, "output.": {}, "inter.": {}}
    weights = {}
    for k, v in t.items():
        for p, d in groups.items():
            if k.startswith(p):
                d[k[len(p):]] = v
                break
        else:
            weights[k] = v
    return weights, groups["input."], groups["output."], groups["inter."], meta
