"""python -m torch_ref.make_fixture --component NAME --config tiny|small|paper|PATH.json --seed N --out F"""

from __future__ import annotations

import argparse
import os
import shlex

import torch

from . import common, components
from .fixture import write_fixture


def build_model(comp, cfg, seed):
    model = comp.build(cfg)
    if model is not None:
        if hasattr(comp, "init"):
            comp.init(model, seed)
        else:
            common.deterministic_init(model, seed, extra_buffers=getattr(comp, "INIT_BUFFERS", ()))
        model.eval()
    return model


def checkpoint_state(comp, model, cfg):
    if model is None:
        return {}
    if hasattr(comp, "checkpoint_state"):
        return comp.checkpoint_state(model, cfg)
    return dict(model.state_dict())


def generate(name: str, config: str, seed: int, precision: str | None = None):
    """Return (cfg, weights, inputs, outputs, inter, precision) for one case."""
    common.set_deterministic()
    comp = components.get(name)
    cfg = common.load_config(comp, config)
    precision = precision or getattr(comp, "PRECISION", "float64")
    model = build_model(comp, cfg, seed)
    weights = {k: v.detach().clone() for k, v in checkpoint_state(comp, model, cfg).items()}
    g = torch.Generator().manual_seed(seed + 1)
    inputs = comp.make_inputs(cfg, g)
    dt = common.compute_dtype(precision)
    if model is not None:
        model = model.to(dt)
    with torch.no_grad():
        outputs, inter = comp.run(model, common.cast_inputs(inputs, dt), cfg)
    return cfg, weights, inputs, outputs, inter, precision


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--component", required=True, help="one of: " + ", ".join(components.ORDER))
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=["float64", "float32"], default=None,
                    help="reference compute precision (default: component's, normally float64)")
    args = ap.parse_args(argv)
    cfg, weights, inputs, outputs, inter, precision = generate(args.component, args.config, args.seed, args.precision)
    # the recorded command names the output by its file name only, so the bytes do not depend on the folder
    cmd = (f"python -m torch_ref.make_fixture --component {shlex.quote(args.component)} --config "
           f"{shlex.quote(args.config)} --seed {args.seed} --out {shlex.quote(os.path.basename(args.out))}"
           + (f" --precision {args.precision}" if args.precision else ""))
    write_fixture(args.out, component=args.component, config=cfg, seed=args.seed, weights=weights, inputs=inputs,
                  outputs=outputs, inter=inter, reference_precision=precision, command=cmd)
    n = sum(v.numel() for v in weights.values())
    print(f"wrote {args.out}: {len(weights)} weights ({n} values), inputs {sorted(inputs)}, outputs {sorted(outputs)}, "
          f"{len(inter)} intermediates")


if __name__ == "__main__":
    main()
