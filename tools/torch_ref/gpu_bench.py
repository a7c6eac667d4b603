"""python -m torch_ref.gpu_bench --device cuda --out FILE.json [--quick] [--skip-llm] [--llm-config tiny]

PyTorch baselines measured on the same card and in the same session as focus-engine's own CUDA
kernels (tools/gpu-check.sh), so the two can be compared as ratios. Sections:

  copy       1 GiB device-to-device copy, GB/s (read + write bytes): the memory-bound ceiling
  gemm       torch.matmul bf16/f16: 4096^3, LLM prefill (1024x2048x11008) and decode GEMV (m=1)
  attention  F.scaled_dot_product_attention bf16, [B,H,T,D] and the engine's [B,T,H,D] view; GQA decode
  conv       depthwise 7x7 (ConvNeXt-L stages) and dense 3x3 (UNet), channels_last bf16
  norm       GroupNorm(32)+SiLU, RMSNorm (hand-written and F.rms_norm), bf16
  vq         SimVQ nearest-code lookup, f32: cdist+argmin and the expanded-square form
  llm        Qwen2.5-3B (random weights, bf16): prefill 1024 tokens, batch-1 decode at 1024 context,
             eager and torch.compile, plus the HBM roofline for decode. Time-boxed (--llm-budget).

Timing: warm-up, then `reps` samples, each a pair of CUDA events around `inner` back-to-back calls
(inner grows until a sample lasts >= 1 ms, so launch gaps do not dominate tiny ops); median_ms is
the median sample / inner. Operands rotate through enough copies that one pass over them exceeds
the L2 cache (--l2 cold, the default: HBM numbers, as in a real model where every layer's
weights are new); --l2 warm reuses one set. perf_counter replaces the events on CPU.
--quick shrinks every size and iteration count (CPU smoke test).
Every case and section records {"error": ...} instead of raising.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import itertools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

SECTIONS = ("copy", "gemm", "attention", "conv", "norm", "sampling", "vq", "llm")
BF16 = torch.bfloat16
MAX_BUFFERS = 64  # cap on rotated operand copies (tiny ops would otherwise need thousands)
MAX_INNER = 256  # cap on calls per timed sample


# ---------------------------------------------------------------- FLOP / byte formulas

def tensor_bytes(*ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts if isinstance(t, torch.Tensor))


def gemm_flops(m: int, n: int, k: int) -> int:
    return 2 * m * n * k


def gemm_bytes(m: int, n: int, k: int, elt: int) -> int:
    return (m * k + k * n + m * n) * elt


def attn_flops(b: int, h: int, tq: int, tk: int, d: int, causal: bool) -> int:
    """QK^T and PV, 2*Tq*Tk*D each per head; a causal mask skips half the score matrix."""
    f = 4 * b * h * tq * tk * d
    return f // 2 if causal else f


def conv_flops(n, cin, cout, ho, wo, kh, kw, groups) -> int:
    return 2 * n * cout * ho * wo * (cin // groups) * kh * kw


def conv_bytes(n, cin, cout, h, w, ho, wo, kh, kw, groups, elt) -> int:
    """Input + weight + bias + output, each touched once."""
    return (n * cin * h * w + cout * (cin // groups) * kh * kw + cout + n * cout * ho * wo) * elt


def norm_bytes(numel: int, n_params: int, elt: int) -> int:
    """Read x, write y, read the affine parameters."""
    return (2 * numel + n_params) * elt


def llm_matmul_params(cfg) -> int:
    """Weights of the per-layer matmuls (q, k, v, o, gate, up, down), all layers."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    return cfg["num_hidden_layers"] * (2 * h * h + 2 * h * kv + 3 * h * i)


def llm_weight_bytes(cfg, elt: int = 2) -> int:
    """Bytes of weights read per decoded token: every parameter once (the tied embedding is read
    whole as lm_head; its one-row gather is negligible)."""
    h, v, layers = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    small = layers * (h + 2 * kv + 2 * h) + h  # q/k/v biases, two norms per layer; final norm
    head = v * h * (1 if cfg.get("tie_word_embeddings", True) else 2)
    return (llm_matmul_params(cfg) + small + head) * elt


def llm_kv_bytes(cfg, ctx: int, elt: int = 2) -> int:
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * hd * ctx * elt


def llm_prefill_flops(cfg, t: int) -> int:
    """Matmuls over t tokens + causal attention + the last-token LM head (spec §10 counting)."""
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    attn = cfg["num_hidden_layers"] * attn_flops(1, heads, t, t, h // heads, causal=True)
    return 2 * t * llm_matmul_params(cfg) + attn + 2 * cfg["vocab_size"] * h


# ---------------------------------------------------------------- VQ lookups (also used by tests)

def vq_cdist(x, cb):
    return torch.cdist(x, cb).argmin(-1)


def vq_expand(x, cb):
    """argmin_k |x|^2 - 2 x.c_k + |c_k|^2 (the matmul form the engine uses)."""
    return ((x * x).sum(-1, keepdim=True) - 2 * x @ cb.T + (cb * cb).sum(-1)).argmin(-1)


# ---------------------------------------------------------------- timing and recording

def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


class Timer:
    def __init__(self, device: torch.device, quick: bool):
        self.cuda = device.type == "cuda"
        self.warmup = 2 if quick else 5
        self.reps = 3 if quick else 15
        self.min_sample_ms = 0.0 if quick else 1.0

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def sample(self, fn, n: int) -> float:
        """Milliseconds for n back-to-back calls."""
        if self.cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(n):
                fn()
            e.record()
            e.synchronize()
            return s.elapsed_time(e)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) * 1e3

    def measure(self, fn, reps: int | None = None):
        """-> (median ms per call, inner, reps)."""
        for _ in range(self.warmup):
            fn()
        self.sync()
        one = self.sample(fn, 1)
        inner = max(1, min(MAX_INNER, math.ceil(self.min_sample_ms / max(one, 1e-4))))
        reps = reps or self.reps
        return statistics.median(self.sample(fn, inner) / inner for _ in range(reps)), inner, reps


class Bench:
    def __init__(self, device: torch.device, quick: bool, l2_cold: bool = True, seed: int = 0):
        self.dev, self.quick, self.seed = device, quick, seed
        self.timer = Timer(device, quick)
        # operand bytes one rotation must exceed: 4x the H100/H200 L2 (50/60 MB); small on CPU
        # so the rotation path still runs in the smoke test
        self.rotate_bytes = 0 if not l2_cold else (256 << 20 if device.type == "cuda" else 1 << 20)
        self.results: list[dict] = []
        self.section_s: dict[str, float] = {}
        self.copy_gbps: float | None = None

    def record(self, section: str, name: str, params: dict, measure) -> dict:
        """measure() -> dict of metrics; an exception becomes {"error": ...}."""
        rec = {"section": section, "name": name, "params": params}
        torch.manual_seed(self.seed + len(self.results))  # each case's inputs depend only on its position
        try:
            rec.update(measure())
        except Exception as e:  # record and go on with the next case
            rec["error"] = _err(e)
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
        self.add(rec)
        return rec

    def add(self, rec: dict):
        self.results.append(rec)
        print(format_row(rec), flush=True)

    def case(self, section, name, params, make, fn, flops=None, nbytes=None) -> dict:
        """make() -> operand tuple (fresh tensors); fn(*operands) runs the op once."""

        def measure():
            sets = [make()]
            ws = tensor_bytes(*sets[0])
            nbuf = min(MAX_BUFFERS, max(1, -(-self.rotate_bytes // ws))) if ws else 1
            sets += [make() for _ in range(nbuf - 1)]
            ring = itertools.cycle(sets)
            ms, inner, reps = self.timer.measure(lambda: fn(*next(ring)))
            out = {"median_ms": ms, "inner": inner, "reps": reps, "buffers": nbuf}
            if flops:
                out["tflops"] = flops / ms / 1e9
            if nbytes:
                out["gbps"] = nbytes / ms / 1e6
            return out

        return self.record(section, name, params, measure)

    def section(self, name: str, fn, *args):
        t0 = time.perf_counter()
        try:
            fn(self, *args)
        except Exception as e:  # a section that dies during setup still leaves a record
            self.add({"section": name, "name": "*", "params": {}, "error": _err(e)})
        self.section_s[name] = round(time.perf_counter() - t0, 2)


def format_row(r: dict) -> str:
    params = ",".join(f"{k}={v}" for k, v in r.get("params", {}).items())
    if "error" in r:
        return f"{r['section']:<9} {r['name']:<22} {params:<48} ERROR {r['error'][:160]}"
    metric = ""
    for key, unit in (("tflops", "TFLOP/s"), ("gbps", "GB/s"), ("tok_s", "tok/s"), ("ideal_tok_s", "tok/s ideal")):
        if r.get(key) is not None:
            metric += f"  {r[key]:10.2f} {unit}"
    ms = f"{r['median_ms']:11.4f} ms" if "median_ms" in r else " " * 14
    return f"{r['section']:<9} {r['name']:<22} {params:<48} {ms}{metric}"


# ---------------------------------------------------------------- micro sections

def sec_copy(b: Bench):
    n = (16 << 20) if b.quick else (1 << 30)
    r = b.case("copy", "d2d_copy", {"bytes": n},
               lambda: (torch.empty(n, dtype=torch.uint8, device=b.dev), torch.randint(0, 256, (n,), dtype=torch.uint8, device=b.dev)),
               lambda dst, src: dst.copy_(src), nbytes=2 * n)
    b.copy_gbps = r.get("gbps")


def sec_gemm(b: Bench):
    shapes = [(256, 256, 256), (64, 128, 512), (1, 128, 512)] if b.quick else \
        [(4096, 4096, 4096), (1024, 2048, 11008), (1, 2048, 11008)]
    for dt in (torch.bfloat16, torch.float16):
        for m, k, n in shapes:
            for layout in ("nn", "nt"):
                # nn: b is [k, n]; nt: b is a [n, k] weight used transposed, as F.linear does
                if layout == "nn":
                    make = lambda m=m, k=k, n=n, dt=dt: (torch.randn(m, k, device=b.dev, dtype=dt), torch.randn(k, n, device=b.dev, dtype=dt))
                    fn = torch.matmul
                else:
                    make = lambda m=m, k=k, n=n, dt=dt: (torch.randn(m, k, device=b.dev, dtype=dt), torch.randn(n, k, device=b.dev, dtype=dt))
                    fn = lambda a, w: torch.matmul(a, w.t())
                b.case("gemm", f"matmul_{str(dt)[6:]}_{layout}", {"m": m, "k": k, "n": n}, make, fn,
                       flops=gemm_flops(m, n, k), nbytes=gemm_bytes(m, n, k, 2))
    # The Qwen2.5-3B decode MLP's gated half: silu(x·Wgᵀ) · (x·Wuᵀ), both weights read once.
    m, k, n = (1, 128, 512) if b.quick else (1, 2048, 11008)
    b.case("gemm", "swiglu_decode", {"m": m, "k": k, "n": n},
           lambda: (torch.randn(m, k, device=b.dev, dtype=BF16), torch.randn(n, k, device=b.dev, dtype=BF16),
                    torch.randn(n, k, device=b.dev, dtype=BF16)),
           lambda x, wg, wu: F.silu(x @ wg.t()) * (x @ wu.t()), flops=2 * gemm_flops(m, n, k),
           nbytes=2 * (2 * n * k + m * k + m * n))
    # The Qwen2.5-3B decode step's q, k, v projections with biases, as transformers runs them.
    k, nq, nkv = (128, 128, 32) if b.quick else (2048, 2048, 256)
    n = nq + 2 * nkv
    b.case("gemm", "qkv_decode", {"k": k, "nq": nq, "nkv": nkv},
           lambda: tuple(torch.randn(*s, device=b.dev, dtype=BF16)
                         for s in ((1, k), (nq, k), (nkv, k), (nkv, k), (nq,), (nkv,), (nkv,))),
           lambda x, wq, wk, wv, bq, bk, bv: (F.linear(x, wq, bq), F.linear(x, wk, bk), F.linear(x, wv, bv)),
           flops=2 * n * k, nbytes=2 * (n * k + k + 2 * n))


def _sdpa_has_gqa(dev) -> bool:
    q = torch.zeros(1, 4, 1, 8, device=dev)
    kv = torch.zeros(1, 2, 2, 8, device=dev)
    try:
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
        return True
    except (TypeError, RuntimeError):
        return False


def sec_attention(b: Bench):
    seqs = (64, 128) if b.quick else (1024, 2048, 4096, 8192)
    heads = ((4, 64), (2, 128)) if b.quick else ((16, 128), (32, 64))  # H*D = hidden (2048 full)
    for h, d in heads:
        for t in seqs:
            for causal in (False, True):
                for layout in ("bhtd", "bthd"):
                    if layout == "bhtd":
                        make = lambda h=h, d=d, t=t: tuple(torch.randn(1, h, t, d, device=b.dev, dtype=BF16) for _ in range(3))
                    else:  # the engine's [B, T, H, D] buffers seen as [B, H, T, D] (strided, D contiguous)
                        make = lambda h=h, d=d, t=t: tuple(torch.randn(1, t, h, d, device=b.dev, dtype=BF16).transpose(1, 2) for _ in range(3))
                    b.case("attention", f"sdpa_{layout}", {"b": 1, "h": h, "t": t, "d": d, "causal": causal}, make,
                           lambda q, k, v, c=causal: F.scaled_dot_product_attention(q, k, v, is_causal=c),
                           flops=attn_flops(1, h, t, t, d, causal))
    # decode step of Qwen2.5-3B: one query token, GQA 16 q heads over 2 kv heads, hd 128
    gqa = _sdpa_has_gqa(b.dev)
    hq, hkv, d = 16, 2, 128
    for tk in ((64, 128) if b.quick else (1024, 4096)):
        def make(tk=tk):
            q = torch.randn(1, hq, 1, d, device=b.dev, dtype=BF16)
            k, v = (torch.randn(1, hkv, tk, d, device=b.dev, dtype=BF16) for _ in range(2))
            if not gqa:  # expand outside the timing
                k, v = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
            return q, k, v

        fn = (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)) if gqa else F.scaled_dot_product_attention
        kv_bytes = 2 * hkv * tk * d * 2
        b.case("attention", "sdpa_decode_gqa", {"hq": hq, "hkv": hkv, "tq": 1, "tk": tk, "d": d, "enable_gqa": gqa},
               make, fn, flops=attn_flops(1, hq, 1, tk, d, False), nbytes=kv_bytes + 2 * hq * d * 2)


def sec_conv(b: Bench):
    cl = torch.channels_last
    dw = [(16, 16), (32, 8)] if b.quick else [(192, 192), (384, 96), (768, 48), (1536, 24)]  # ConvNeXt-L stages
    dense = [(16, 16), (32, 8)] if b.quick else [(320, 128), (640, 64), (1280, 32)]  # SDXL UNet levels
    for name, cases, k, depthwise in (("conv_dw7x7", dw, 7, True), ("conv3x3", dense, 3, False)):
        for c, s in cases:
            groups = c if depthwise else 1
            pad = k // 2

            def make(c=c, s=s, groups=groups):
                x = torch.randn(1, c, s, s, device=b.dev, dtype=BF16).to(memory_format=cl)
                w = torch.randn(c, c // groups, k, k, device=b.dev, dtype=BF16).to(memory_format=cl)
                return x, w, torch.randn(c, device=b.dev, dtype=BF16)

            b.case("conv", name, {"c": c, "hw": s, "k": k, "groups": groups}, make,
                   lambda x, w, bias, pad=pad, groups=groups: F.conv2d(x, w, bias, padding=pad, groups=groups),
                   flops=conv_flops(1, c, c, s, s, k, k, groups), nbytes=conv_bytes(1, c, c, s, s, s, s, k, k, groups, 2))


def rms_norm_manual(x, w, eps: float = 1e-6):
    """Qwen2RMSNorm written out: statistics in f32, cast back, then scale."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def sec_norm(b: Bench):
    gn = [(64, 16), (128, 8)] if b.quick else [(320, 128), (1280, 32)]
    for c, s in gn:
        def make(c=c, s=s):
            x = torch.randn(1, c, s, s, device=b.dev, dtype=BF16).to(memory_format=torch.channels_last)
            return x, torch.randn(c, device=b.dev, dtype=BF16), torch.randn(c, device=b.dev, dtype=BF16)

        b.case("norm", "groupnorm32_silu", {"c": c, "hw": s}, make,
               lambda x, w, bias: F.silu(F.group_norm(x, 32, w, bias, 1e-5)), nbytes=norm_bytes(c * s * s, 2 * c, 2))
    rms = [(64, 256), (256, 256)] if b.quick else [(1024, 2048), (4096, 2048)]
    impls = [("rmsnorm_manual", rms_norm_manual)]
    if hasattr(F, "rms_norm"):
        impls.append(("rmsnorm_F", lambda x, w: F.rms_norm(x, (x.shape[-1],), w, 1e-6)))
    for name, fn in impls:
        for n, c in rms:
            b.case("norm", name, {"n": n, "c": c},
                   lambda n=n, c=c: (torch.randn(n, c, device=b.dev, dtype=BF16), torch.randn(c, device=b.dev, dtype=BF16)),
                   fn, nbytes=norm_bytes(n * c, c, 2))


def sec_sampling(b: Bench):
    # The decode token head: top-256 of one f32 logits row of the Qwen2.5 vocabulary.
    n, k = (4096, 64) if b.quick else (151936, 256)
    b.case("sampling", f"topk{k}_vocab", {"n": n, "k": k}, lambda: (torch.randn(1, n, device=b.dev),),
           lambda x: torch.topk(x, k, dim=-1), nbytes=4 * n)


def sec_vq(b: Bench):
    d = 32
    for n, k in ([(64, 1024), (256, 4096)] if b.quick else [(1024, 16384), (4096, 98304)]):
        for name, fn in (("vq_cdist_argmin", vq_cdist), ("vq_expand_argmin", vq_expand)):
            b.case("vq", name, {"n": n, "k": k, "d": d},
                   lambda n=n, k=k: (torch.randn(n, d, device=b.dev), torch.randn(k, d, device=b.dev)),
                   fn, flops=gemm_flops(n, k, d))


# ---------------------------------------------------------------- LLM section

LLM_DECODE_STEPS = 32
LLM_DECODE_WARMUP = 3


def build_llm(config: str, dev: torch.device, seed: int):
    """Qwen2ForCausalLM with random (seeded, library-init) bf16 weights, created on the device."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from . import common
    from .components import qwen2

    cfg = common.load_config(qwen2, config)
    hf = Qwen2Config(**{k: v for k, v in cfg.items() if k not in qwen2._RUN_KEYS}, attn_implementation="sdpa")
    torch.manual_seed(seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(BF16)  # initialise in bf16 directly: no 12 GB f32 copy of the 3B model
    try:
        with torch.device(dev):
            model = Qwen2ForCausalLM(hf)
    finally:
        torch.set_default_dtype(prev)
    return model.eval(), cfg


class LlmCall:
    """Keyword names differ across transformers versions (4.x past_key_values/cache_position,
    5.x cache); pick them from the forward signature."""

    def __init__(self, model):
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.cache_position = "cache_position" in params
        self.logits_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    def kwargs(self, pos: torch.Tensor, cache=None) -> dict:
        kw = {"position_ids": pos[None], "use_cache": cache is not None}
        if cache is not None:
            kw[self.cache_kw] = cache
        if self.cache_position:
            kw["cache_position"] = pos
        if self.logits_kw:
            kw[self.logits_kw] = 1
        return kw


def make_cache(model, max_len: int):
    try:
        from transformers import StaticCache
    except ImportError:
        from transformers import DynamicCache
        return DynamicCache(), "dynamic"
    params = inspect.signature(StaticCache.__init__).parameters
    kw = {"config": model.config, "max_cache_len": max_len}
    for k, v in (("max_batch_size", 1), ("batch_size", 1), ("device", model.device), ("dtype", model.dtype)):
        if k in params:  # older signatures
            kw[k] = v
    return StaticCache(**kw), "static"


def _first_call_s(timer: Timer, fn) -> float:
    """Wall time of the first call (includes torch.compile's compilation)."""
    t0 = time.perf_counter()
    fn()
    timer.sync()
    return time.perf_counter() - t0


def llm_prefill(b: Bench, model, fwd, cfg, ctx: int, mode: str) -> dict:
    call = LlmCall(model)
    ids = torch.randint(0, cfg["vocab_size"], (1, ctx), device=b.dev)
    kw = call.kwargs(torch.arange(ctx, device=b.dev))

    def measure():
        first = _first_call_s(b.timer, lambda: fwd(input_ids=ids, **kw))
        ms, inner, reps = b.timer.measure(lambda: fwd(input_ids=ids, **kw), reps=3 if b.quick else 10)
        return {"median_ms": ms, "tflops": llm_prefill_flops(cfg, ctx) / ms / 1e9, "first_call_s": round(first, 2),
                "reps": reps}

    with torch.no_grad():
        return b.record("llm", "prefill", {"mode": mode, "tokens": ctx, "logits": "last"}, measure)


def llm_decode(b: Bench, model, fwd, cfg, ctx: int, mode: str, ideal_tok_s: float | None) -> dict:
    """Greedy batch-1 decode after an (eager, untimed) ctx-token prefill into the cache; the
    median step time (CUDA events around each step, no host sync between steps) gives tok/s."""
    call = LlmCall(model)
    steps = 4 if b.quick else LLM_DECODE_STEPS
    total = LLM_DECODE_WARMUP + steps
    mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

    def measure():
        cache, kind = make_cache(model, ctx + total)
        ids = torch.randint(0, cfg["vocab_size"], (1, ctx), device=b.dev)
        tok = model(input_ids=ids, **call.kwargs(torch.arange(ctx, device=b.dev), cache)).logits[:, -1].argmax(-1, keepdim=True)
        pos = [torch.tensor([ctx + i], device=b.dev) for i in range(total)]  # H2D copies outside the timing
        times, first = [], None
        for i in range(total):
            if mark and mode != "eager":
                mark()  # new cudagraph step: the previous step's outputs may be overwritten
            t0 = time.perf_counter()
            if b.timer.cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
            tok = fwd(input_ids=tok, **call.kwargs(pos[i], cache)).logits[:, -1].argmax(-1, keepdim=True)
            if b.timer.cuda:
                e.record()
                times.append((s, e))
            else:
                times.append((time.perf_counter() - t0) * 1e3)
            if i == 0:
                b.timer.sync()
                first = time.perf_counter() - t0
        b.timer.sync()
        ms_all = [s.elapsed_time(e) for s, e in times] if b.timer.cuda else times
        ms = statistics.median(ms_all[LLM_DECODE_WARMUP:])
        out = {"median_ms": ms, "tok_s": 1e3 / ms, "first_call_s": round(first, 2), "cache": kind, "steps": steps}
        if ideal_tok_s:
            out["roofline_frac"] = out["tok_s"] / ideal_tok_s
        return out

    with torch.no_grad():
        return b.record("llm", "decode", {"mode": mode, "ctx": ctx, "batch": 1}, measure)


def sec_llm(b: Bench, args):
    deadline = time.monotonic() + args.llm_budget
    ctx = args.llm_ctx or (64 if b.quick else 1024)
    model, cfg = build_llm(args.llm_config, b.dev, args.seed)
    # HBM roofline for decode: all weights + the KV cache read once per token at the measured copy rate
    wbytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights counted once
    kv = llm_kv_bytes(cfg, ctx)
    roof = {"section": "llm", "name": "decode_roofline", "params": {"ctx": ctx, "config": args.llm_config},
            "weight_bytes": wbytes, "kv_bytes": kv, "copy_gbps": b.copy_gbps}
    if b.copy_gbps:
        roof["ideal_tok_s"] = b.copy_gbps * 1e9 / (wbytes + kv)
    else:
        roof["error"] = "no copy bandwidth measured (copy section not run or failed)"
    b.add(roof)
    ideal = roof.get("ideal_tok_s")
    llm_prefill(b, model, model.forward, cfg, ctx, "eager")
    llm_decode(b, model, model.forward, cfg, ctx, "eager", ideal)
    del model
    gc.collect()
    if b.dev.type == "cuda":
        torch.cuda.empty_cache()
    if not args.no_compile:
        run_compile_child(b, args, ctx, ideal, deadline)


COMPILE_CASES = (("decode", "compile:reduce-overhead"), ("prefill", "compile:default"))


def run_compile_child(b: Bench, args, ctx: int, ideal, deadline: float):
    """torch.compile runs in a child process so the time box can be enforced by killing it (a
    compilation cannot be interrupted in-process); records the child finished are merged, the
    rest get an error."""
    left = deadline - time.monotonic()
    tools = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        res, log = os.path.join(tmp, "res.json"), os.path.join(tmp, "log.txt")
        cmd = [sys.executable, "-m", "torch_ref.gpu_bench", "--llm-child", res, "--device", str(b.dev),
               "--llm-config", args.llm_config, "--llm-ctx", str(ctx), "--seed", str(args.seed)]
        if b.quick:
            cmd.append("--quick")
        if ideal:
            cmd += ["--llm-ideal", str(ideal)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tools, os.environ.get("PYTHONPATH")])))
        why = None
        if left < 20:
            why = f"LLM time box ({args.llm_budget:.0f} s) spent before torch.compile"
        else:
            with open(log, "w") as lf:
                # own session, so the timeout kill also reaches Inductor's compile workers
                p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                try:
                    rc = p.wait(timeout=left)
                    if rc != 0:
                        with open(log) as f:
                            why = f"compile child exited {rc}: {f.read()[-400:]}"
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    why = f"not finished within the LLM time box ({args.llm_budget:.0f} s)"
        done = json.load(open(res)) if os.path.exists(res) else []
    for rec in done:
        b.add(rec)
    got = {(r["name"], r["params"].get("mode")) for r in done}
    for name, mode in COMPILE_CASES:
        if (name, mode) not in got:
            b.add({"section": "llm", "name": name, "params": {"mode": mode, "ctx": ctx}, "error": why or "missing"})


def llm_child(args):
    """Child process: compiled decode (reduce-overhead = CUDA graphs), then compiled prefill;
    the results file is rewritten after each so a timeout keeps what finished."""
    dev = torch.device(args.device)
    b = Bench(dev, args.quick, seed=args.seed)
    model, cfg = build_llm(args.llm_config, dev, args.seed)
    eager = model.forward

    def save():  # atomically, so a kill mid-write leaves the previous file
        with open(args.llm_child + ".tmp", "w") as f:
            json.dump(b.results, f)
        os.replace(args.llm_child + ".tmp", args.llm_child)

    for name, mode in COMPILE_CASES:
        if name == "decode":
            llm_decode(b, model, torch.compile(eager, mode="reduce-overhead"), cfg, args.llm_ctx, mode, args.llm_ideal)
        else:
            torch._dynamo.reset()  # drop the decode graphs; prefill compiles its own
            llm_prefill(b, model, torch.compile(eager), cfg, args.llm_ctx, mode)
        save()


# ---------------------------------------------------------------- driver

MICRO = {"copy": sec_copy, "gemm": sec_gemm, "attention": sec_attention, "conv": sec_conv, "norm": sec_norm,
         "sampling": sec_sampling, "vq": sec_vq}


def device_info(dev: torch.device) -> dict:
    try:
        import transformers
        tf = transformers.__version__
    except ImportError:
        tf = None
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": tf,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", help="JSON output file")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and iteration counts (CPU smoke test)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of " + ",".join(SECTIONS))
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--llm-config", default="paper", help="qwen2 config: tiny|small|paper|PATH.json")
    ap.add_argument("--llm-ctx", type=int, default=None, help="prefill tokens / decode context (1024; 64 with --quick)")
    ap.add_argument("--llm-budget", type=float, default=180.0, help="seconds for the whole LLM section")
    ap.add_argument("--no-compile", action="store_true", help="LLM eager only")
    ap.add_argument("--l2", choices=("cold", "warm"), default="cold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm-child", help=argparse.SUPPRESS)
    ap.add_argument("--llm-ideal", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    bad = set(args.sections.split(",")) - set(SECTIONS)
    if bad:
        ap.error(f"unknown sections {sorted(bad)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.llm_child:
        return llm_child(args)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest conv algorithm (warm-up absorbs the search)
    sections = [s for s in args.sections.split(",") if not (s == "llm" and args.skip_llm)]
    report = dict(device_info(dev), quick=args.quick, seed=args.seed, l2=args.l2)
    b = Bench(dev, args.quick, l2_cold=args.l2 == "cold", seed=args.seed)
    t0 = time.perf_counter()
    print(f"# {report['device']}  torch {report['torch']}  cuda {report['cuda']}", flush=True)
    with torch.inference_mode():
        for s in SECTIONS[:-1]:
            if s in sections:
                b.section(s, MICRO[s])
    if "llm" in sections:
        b.section("llm", sec_llm, args)
    report.update(sections_s=b.section_s, total_s=round(time.perf_counter() - t0, 2), results=b.results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(f"# {len(b.results)} results, {sum('error' in r for r in b.results)} errors, {report['total_s']} s; "
          f"per section {b.section_s}", flush=True)
    return report


if __name__ == "__main__":
    main()
