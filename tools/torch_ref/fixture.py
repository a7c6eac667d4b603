"""Fixture writer / reader (see README.md, "Fixture format")."""

from __future__ import annotations

import json
import platform
from typing import Any, Dict, Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file

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
    save_deterministic(tensors, path, meta)


_DT = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
       torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def save_deterministic(tensors: Dict[str, torch.Tensor], path: str, meta: Dict[str, str]) -> None:
    """Write a safetensors file whose bytes depend only on the content.

    safetensors.torch.save_file keeps metadata in a hash map, so its header order varies between
    processes; here the JSON header has sorted keys, tensors are laid out in sorted-name order and
    the header is space-padded to a multiple of 8 bytes (as the format allows).
    """
    import json as _json
    import struct

    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs = []
    off = 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        if t.dtype == torch.bfloat16:
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()
        header[k] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = _json.dumps(header, separators=(",", ":"), sort_keys=False).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


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
