#!/usr/bin/env python3
"""Side-by-side table of a GPU session's results (stdlib only; runs on the GPU machine).

    python3 tools/gpu_report.py OUT_DIR

First the correctness summary of OUT_DIR/gpu-check.json (`focus gpu-check`: op cases, then
whole plans vs CPU plans, every failure listed). Then it reads OUT_DIR/focus-gpu-bench.json
(`focus gpu-bench`), OUT_DIR/torch-gpu-bench.json
(`torch_ref.gpu_bench`), OUT_DIR/focus-bench-*.json (`focus bench --json`) and
OUT_DIR/torch-bench-*.json (`torch_ref.bench`), and prints one row per measured case with
both times and the ratio torch_ms / focus_ms (above 1: the engine is faster). A case measured
on one side only is listed with a dash on the other; nothing is estimated."""

import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def matches(ours, theirs):
    """Same section and name, and every parameter we report has the same value there."""
    if ours["section"] != theirs.get("section") or ours["name"] != theirs.get("name"):
        return False
    tp = theirs.get("params", {})
    return all(tp.get(k) == v for k, v in ours.get("params", {}).items())


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def checks(out):
    doc = load(os.path.join(out, "gpu-check.json"))
    if not doc:
        print("no gpu-check.json")
        return
    rows = doc.get("checks", [])
    failed = [r for r in rows if not r.get("pass")]
    print(f"== gpu-check on {doc.get('device')} ({doc.get('arch')}): {len(rows)} checks, {len(failed)} failed")
    for r in failed:
        print(f"  FAIL {r['check']:<60} error {fmt(r.get('error'), '.3e')} (tol {fmt(r.get('tol'), '.0e')}) "
              f"{r.get('note', '')}")
    plans = [r for r in rows if r["check"].startswith("plan ")]
    if plans:
        print(f"{'whole plan vs CPU plan':<52} {'rel-L2':>10} {'tol':>8} {'gpu (us)':>10}")
        for r in plans:
            print(f"{r['check'][5:]:<52} {fmt(r.get('error'), '.3e'):>10} {fmt(r.get('tol'), '.0e'):>8} "
                  f"{fmt(r.get('gpu_us'), '.1f'):>10}  {'ok' if r['pass'] else 'FAIL'}")
    print()


def micro(out):
    ours, theirs = load(os.path.join(out, "focus-gpu-bench.json")), load(os.path.join(out, "torch-gpu-bench.json"))
    if not ours:
        print("no focus-gpu-bench.json")
        return
    copy = ours.get("copy_gbps")
    print(f"\n== ops on {ours.get('device')} ({ours.get('arch')}); copy ceiling {fmt(copy, '.0f')} GB/s")
    print(f"{'section':<10} {'name':<18} {'params':<52} {'focus ms':>9} {'torch ms':>9} {'torch/focus':>11} "
          f"{'TFLOP/s':>8} {'GB/s':>7} {'%copy':>6}")
    trs = (theirs or {}).get("results", [])
    for r in ours["results"]:
        if r["section"] == "copy":
            t = next((x for x in trs if x.get("section") == "copy"), None)
            print(f"{'copy':<10} {'d2d_copy':<18} {json.dumps(r['params']):<52} {'':>9} {'':>9} {'':>11} {'':>8} "
                  f"{fmt(r.get('gbps'), '.0f'):>7}  torch {fmt(t and t.get('gbps'), '.0f')} GB/s")
            continue
        t = next((x for x in trs if matches(r, x) and "error" not in x), None)
        ms, tms = r.get("median_ms"), t and t.get("median_ms")
        ratio = tms / ms if ms and tms else None
        pct = 100 * r["gbps"] / copy if r.get("gbps") and copy else None
        err = f"  ERROR {r['error']}" if r.get("error") else ""
        print(f"{r['section']:<10} {r['name']:<18} {json.dumps(r['params']):<52} {fmt(ms, '.4f'):>9} {fmt(tms, '.4f'):>9} "
              f"{fmt(ratio, '.2f'):>11} {fmt(r.get('tflops'), '.1f'):>8} {fmt(r.get('gbps'), '.0f'):>7} {fmt(pct, '.0f'):>6}{err}")


def models(out):
    rows = [load(p) for p in sorted(glob.glob(os.path.join(out, "focus-bench-*.json")))]
    torch = {}
    for p in glob.glob(os.path.join(out, "torch-bench-*.json")):
        d = load(p)
        if d:
            torch[d.get("component")] = d
    print("\n== models (random weights, batch 1)")
    print(f"{'model':<14} {'config':<7} {'size':>5} {'dtype':<5} {'graph':<5} {'focus ms':>9} {'no-graph ms':>11} "
          f"{'torch eager':>11} {'torch compile':>13} {'eager/focus':>11}")
    for r in filter(None, rows):
        t = torch.get(r["model"]) if r["size"] > 1 else None
        med = (t or {}).get("median_ms", {})
        eager = med.get("eager")
        comp = min([v for k, v in med.items() if k != "eager" and isinstance(v, (int, float))], default=None)
        ratio = eager / r["median_ms"] if eager and r.get("median_ms") else None
        print(f"{r['model']:<14} {r['config']:<7} {r['size']:>5} {r['dtype']:<5} {str(r['cuda_graph']):<5} "
              f"{fmt(r.get('median_ms'), '.3f'):>9} {fmt(r.get('plain_median_ms'), '.3f'):>11} {fmt(eager, '.3f'):>11} "
              f"{fmt(comp, '.3f'):>13} {fmt(ratio, '.2f'):>11}")


def llm(out):
    theirs = load(os.path.join(out, "torch-gpu-bench.json")) or {}
    rows = [r for r in theirs.get("results", []) if r.get("section") == "llm"]
    if rows:
        print("\n== PyTorch Qwen2.5-3B (compare with the qwen2 rows above: size 1024 = prefill, size 1 = one decode step)")
        for r in rows:
            keep = {k: v for k, v in r.items() if k not in ("section",)}
            print("  " + json.dumps(keep))


def pipelines(out):
    for name in ("generate", "edit"):
        p = os.path.join(out, f"{name}-cuda.txt")
        if os.path.exists(p):
            print(f"\n== focus {name} on the GPU")
            with open(p) as f:
                for line in f.read().splitlines()[-6:]:
                    print("  " + line)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "out"
    checks(out)
    micro(out)
    models(out)
    llm(out)
    pipelines(out)
