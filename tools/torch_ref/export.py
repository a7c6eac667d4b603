"""python -m torch_ref.export --config paper --seed N --out DIR [--components a,b] [--dtype bfloat16]

Writes full-size, randomly initialised checkpoints in the real layouts (one
<component>.safetensors per component, public checkpoint names, plus <component>.json with
the config). Never committed: paper size is many GB."""

from __future__ import annotations

import argparse
import json
import os

import torch
from safetensors.torch import save_file

from . import common, components
from .make_fixture import build_model, checkpoint_state

SKIP = {"euler"}  # no weights


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="paper")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--components", default=",".join(c for c in components.ORDER if c not in SKIP))
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    dtype = getattr(torch, args.dtype)
    for name in args.components.split(","):
        comp = components.get(name)
        cfg = common.load_config(comp, args.config)
        model = build_model(comp, cfg, args.seed)
        if model is None:
            continue
        sd = {k: v.detach().to(dtype).contiguous() for k, v in checkpoint_state(comp, model, cfg).items()}
        path = os.path.join(args.out, f"{name}.safetensors")
        save_file(sd, path, metadata={"component": name, "config": json.dumps(cfg, sort_keys=True),
                                      "seed": str(args.seed), "dtype": args.dtype})
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(cfg, f, indent=1, sort_keys=True)
        n = sum(v.numel() for v in sd.values())
        print(f"{path}: {len(sd)} tensors, {n / 1e6:.1f} M params")
        del model, sd


if __name__ == "__main__":
    main()
