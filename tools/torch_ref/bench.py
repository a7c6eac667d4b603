"""python -m torch_ref.bench --component NAME --config paper --device cuda|cpu [--compile] [--dtype ...]

Times the reference forward (eager; with --compile also torch.compile modes
max-autotune-no-cudagraphs and reduce-overhead) with warm-up; CUDA events on CUDA,
perf_counter on CPU; reports medians (ms) as JSON. Weights are random (seeded)."""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from . import common, components
from .make_fixture import build_model


def _to(x, device, dtype):
    return {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in x.items()}


def time_fn(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--component", required=True)
    ap.add_argument("--config", default="paper")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32|bfloat16|float16 (default: bfloat16 on cuda, float32 on cpu)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if dev.type == "cuda" else "float32"))
    comp = components.get(args.component)
    cfg = common.load_config(comp, args.config)
    if args.component == "qwen2":
        cfg = dict(cfg, gen_tokens=0)  # time the prefill forward only
    torch.manual_seed(args.seed)
    model = build_model(comp, cfg, args.seed)
    if model is not None:
        model = model.to(device=dev, dtype=dtype)
    inputs = _to(comp.make_inputs(cfg, torch.Generator().manual_seed(args.seed + 1)), dev, dtype)

    def eager():
        with torch.no_grad():
            return comp.run(model, inputs, cfg)

    result = {"component": args.component, "config": args.config, "device": str(dev),
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__, "iters": args.iters,
              "warmup": args.warmup, "median_ms": {}, "all_ms": {}}
    modes = [("eager", eager)]
    if args.compile and model is not None:
        for mode in ("max-autotune-no-cudagraphs", "reduce-overhead"):
            cm = torch.compile(model, mode=mode)

            def f(cm=cm):
                with torch.no_grad():
                    return comp.run(cm, inputs, cfg)

            modes.append((f"compile:{mode}", f))
    for name, fn in modes:
        try:
            ts = time_fn(fn, dev, args.warmup, args.iters)
            result["median_ms"][name] = statistics.median(ts)
            result["all_ms"][name] = ts
        except Exception as e:  # report and continue with the other modes
            result["median_ms"][name] = None
            result.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"[:500]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
