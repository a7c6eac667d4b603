"""gpu_bench on CPU with --quick sizes: formulas, record structure, error capture."""

import json

import pytest
import torch

from torch_ref import common, gpu_bench as gb
from torch_ref.components import qwen2

CPU = torch.device("cpu")


def test_flop_and_byte_formulas():
    assert gb.gemm_flops(2, 4, 3) == 48
    assert gb.gemm_bytes(2, 4, 3, 2) == (2 * 3 + 3 * 4 + 2 * 4) * 2
    # per head: S = QK^T is 2*Tq*Tk*D, O = PV another 2*Tq*Tk*D
    assert gb.attn_flops(1, 2, 4, 5, 8, causal=False) == 2 * (2 * 4 * 5 * 8 + 2 * 4 * 5 * 8)
    assert gb.attn_flops(1, 2, 4, 4, 8, causal=True) == gb.attn_flops(1, 2, 4, 4, 8, causal=False) // 2
    # depthwise 3x3 on 4 channels at 5x5 ("same" padding): one 9-tap MAC per output element
    assert gb.conv_flops(1, 4, 4, 5, 5, 3, 3, groups=4) == 2 * 4 * 25 * 9
    assert gb.conv_flops(1, 4, 6, 5, 5, 3, 3, groups=1) == 2 * 6 * 25 * 4 * 9
    assert gb.conv_bytes(1, 4, 4, 5, 5, 5, 5, 3, 3, 4, 2) == (100 + 36 + 4 + 100) * 2
    assert gb.norm_bytes(10, 3, 2) == 46
    assert gb.tensor_bytes(torch.zeros(3, 4, dtype=torch.bfloat16), None, torch.zeros(2)) == 24 + 8


def test_llm_formulas_match_spec_and_model():
    paper = common.load_config(qwen2, "paper")
    # spec §10: 5,837.6 GFLOP prefill at 1024 tokens, 6.17 GB weights, 36,864 KV bytes per token
    assert gb.llm_prefill_flops(paper, 1024) == pytest.approx(5837.6e9, rel=2e-4)
    assert gb.llm_weight_bytes(paper) == pytest.approx(6.17e9, rel=1e-3)
    assert gb.llm_kv_bytes(paper, 1) == 36864
    model, cfg = gb.build_llm("tiny", CPU, 0)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert gb.llm_weight_bytes(cfg) == sum(p.numel() * p.element_size() for p in model.parameters())


def test_vq_forms_agree():
    g = torch.Generator().manual_seed(0)
    x, cb = torch.randn(50, 32, generator=g), torch.randn(300, 32, generator=g)
    brute = ((x[:, None] - cb[None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(gb.vq_cdist(x, cb), brute)
    assert torch.equal(gb.vq_expand(x, cb), brute)


def test_case_metrics_and_rotation():
    b = gb.Bench(CPU, quick=True)
    r = b.case("gemm", "t", {"m": 8}, lambda: (torch.randn(8, 8), torch.randn(8, 8)), torch.matmul,
               flops=1000, nbytes=2000)
    assert r["median_ms"] > 0 and r["tflops"] == pytest.approx(1000 / r["median_ms"] / 1e9)
    assert r["gbps"] == pytest.approx(2000 / r["median_ms"] / 1e6)
    assert r["buffers"] == gb.MAX_BUFFERS  # 512-byte operands: the rotation cap applies
    assert gb.Bench(CPU, quick=True, l2_cold=False).case("x", "t", {}, lambda: (torch.randn(8),),
                                                         torch.neg)["buffers"] == 1


def test_failures_are_recorded_not_raised():
    b = gb.Bench(CPU, quick=True)

    def bad(_):
        raise RuntimeError("boom")

    r = b.case("gemm", "bad", {"m": 1}, lambda: (torch.zeros(1),), bad)
    assert r["error"] == "RuntimeError: boom" and "median_ms" not in r
    b.case("gemm", "good", {}, lambda: (torch.zeros(4),), torch.neg)  # later cases still run

    def broken_section(bench):
        raise ValueError("setup failed")

    b.section("conv", broken_section)
    assert [(r["name"], "error" in r) for r in b.results] == [("bad", True), ("good", False), ("*", True)]
    assert b.results[-1] == {"section": "conv", "name": "*", "params": {}, "error": "ValueError: setup failed"}
    assert "conv" in b.section_s


def test_main_json_structure(tmp_path):
    out = tmp_path / "r.json"
    rep = gb.main(["--device", "cpu", "--quick", "--sections", "copy,norm,vq,llm", "--llm-config", "tiny",
                   "--no-compile", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(rep))
    for k in ("device", "torch", "cuda", "results", "sections_s", "total_s"):
        assert k in rep
    res = rep["results"]
    assert {r["section"] for r in res} == {"copy", "norm", "vq", "llm"}
    assert not [r for r in res if "error" in r]
    for r in res:
        assert isinstance(r["name"], str) and isinstance(r["params"], dict)
        assert r["name"] == "decode_roofline" or r["median_ms"] > 0
    copy = next(r for r in res if r["section"] == "copy")
    assert copy["gbps"] == pytest.approx(2 * copy["params"]["bytes"] / copy["median_ms"] / 1e6)
    roof = next(r for r in res if r["name"] == "decode_roofline")
    assert roof["ideal_tok_s"] == pytest.approx(copy["gbps"] * 1e9 / (roof["weight_bytes"] + roof["kv_bytes"]))
    modes = {(r["name"], r["params"]["mode"]) for r in res if r["name"] in ("prefill", "decode")}
    assert modes == {("prefill", "eager"), ("decode", "eager")}
    assert any(r["name"] == "rmsnorm_F" for r in res) == hasattr(torch.nn.functional, "rms_norm")


def test_gemm_section_runs(tmp_path):
    rep = gb.main(["--device", "cpu", "--quick", "--sections", "gemm", "--no-compile",
                   "--out", str(tmp_path / "g.json")])
    res = rep["results"]
    assert not [r for r in res if "error" in r]
    names = {r["name"] for r in res}
    assert {"swiglu_decode", "qkv_decode"} <= names
    qkv = next(r for r in res if r["name"] == "qkv_decode")
    p = qkv["params"]
    assert qkv["tflops"] == pytest.approx(2 * (p["nq"] + 2 * p["nkv"]) * p["k"] / qkv["median_ms"] / 1e9)
