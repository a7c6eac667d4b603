"""Properties tying the FOCUS-own modules to the spec, and reference-vs-library cross-checks."""

import hashlib
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from torch_ref import common, components
from torch_ref.make_fixture import build_model, generate

D = torch.float64


def model_of(name, config="tiny", seed=0, **over):
    comp = components.get(name)
    cfg = common.load_config(comp, config)
    cfg.update(over)
    return build_model(comp, cfg, seed).to(D), cfg


def test_simvq_lookup_equals_bruteforce_argmin():
    m, cfg = model_of("simvq")
    m.block_size = 16  # exercise the cross-block minimum
    g = torch.Generator().manual_seed(3)
    z = torch.randn((2, cfg["dim"], 5, 7), generator=g, dtype=D)
    quant, idx = m(z)
    x = z.permute(0, 2, 3, 1).reshape(-1, cfg["dim"])
    c = m.code_transform.weight @ m.frozen_codebook.T  # C^T = W F^T
    brute = torch.stack([((x[i:i + 1].T - c) ** 2).sum(0).argmin() for i in range(x.shape[0])])
    assert torch.equal(idx.reshape(-1), brute)
    assert torch.allclose(quant.permute(0, 2, 3, 1).reshape(-1, cfg["dim"]), c.T[brute])
    assert torch.allclose(m.decode(idx), quant)


def test_simvq_ties_resolve_to_lowest_index():
    m, cfg = model_of("simvq")
    m.block_size = 16
    with torch.no_grad():
        m.frozen_codebook[40] = m.frozen_codebook[5]  # duplicate code in another block
    z = m.codebook()[5].view(1, -1, 1, 1)
    assert m(z)[1].item() == 5


def test_adapter_zero_gates_is_identity():
    m, cfg = model_of("adapter")
    with torch.no_grad():
        for layer in m.layers:
            layer.attn_gate.zero_()
            layer.ff_gate.zero_()
    g = torch.Generator().manual_seed(1)
    h = torch.randn((1, cfg["n_queries"], cfg["d"]), generator=g, dtype=D)
    for j, layer in enumerate(m.layers):
        media = torch.randn((1, 10, cfg["d"]), generator=g, dtype=D)
        assert torch.equal(layer(h, media), h)
    feats = [torch.randn((1, c, hh, ww), generator=g, dtype=D) for c, (hh, ww) in
             zip(cfg["in_channels"], cfg["feat_hw"])]
    assert torch.allclose(m(feats), m.proj_out(m.norm_out(m.latents[None])))


def test_masked_attention_all_attend_equals_plain_attention():
    m, cfg = model_of("m2f_transformer_decoder")
    comp = components.get("m2f_transformer_decoder")
    inp = common.cast_inputs(comp.make_inputs(cfg, torch.Generator().manual_seed(2)), D)
    args = (inp["mask_features"], [inp[f"ms.{i}"] for i in range(3)], inp["seg_query_hidden"], inp["class_hidden"])
    all_attend = m(*args, attn_mask_override=lambda i, am: torch.zeros_like(am))
    # plain attention: replace the masked cross-attention by unmasked nn.MultiheadAttention calls
    orig = [ca.multihead_attn.forward for ca in m.transformer_cross_attention_layers]
    for ca, f in zip(m.transformer_cross_attention_layers, orig):
        ca.multihead_attn.forward = lambda q, k, v, attn_mask=None, f=f, **kw: f(q, k, v, **kw)
    plain = m(*args)
    for a, b in zip(all_attend, plain):
        assert torch.allclose(a, b, atol=1e-12)


def test_msda_matches_transformers_reference():
    from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention

    from torch_ref.mask2former import ms_deform_attn_core

    g = torch.Generator().manual_seed(0)
    shapes = [(2, 3), (4, 6), (8, 12)]
    b, heads, dh, q, p = 1, 4, 8, 10, 2
    S = sum(h * w for h, w in shapes)
    value = torch.randn((b, S, heads, dh), generator=g, dtype=D)
    loc = torch.rand((b, q, heads, len(shapes), p, 2), generator=g, dtype=D) * 1.4 - 0.2  # some out of range
    aw = torch.rand((b, q, heads, len(shapes), p), generator=g, dtype=D)
    ours = ms_deform_attn_core(value, shapes, loc, aw)
    ref = multi_scale_deformable_attention(value, shapes, loc, aw)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_msda_zero_offsets_single_point_samples_own_pixel():
    from torch_ref.mask2former import MSDeformAttn, reference_points

    m = MSDeformAttn(16, 1, 2, 1).to(D)
    with torch.no_grad():
        m.sampling_offsets.weight.zero_()
        m.sampling_offsets.bias.zero_()
    shapes = [(3, 5)]
    s = torch.randn((1, 15, 16), dtype=D)
    out = m(s, reference_points(shapes, D), s, shapes)
    assert torch.allclose(out, m.output_proj(m.value_proj(s)), atol=1e-12)


def test_movq_spatialnorm_and_dc_blocks():
    from torch_ref.movq import DCDownBlock2d, DCUpBlock2d, SpatialNorm

    g = torch.Generator().manual_seed(0)
    sn = SpatialNorm(16, 4, 8).to(D)
    f = torch.randn((1, 16, 8, 6), generator=g, dtype=D)
    zq = torch.randn((1, 4, 4, 3), generator=g, dtype=D)
    with torch.no_grad():  # conv_y -> 1, conv_b -> 0: SpatialNorm reduces to its GroupNorm
        sn.conv_y.weight.zero_(); sn.conv_y.bias.fill_(1.0); sn.conv_b.weight.zero_(); sn.conv_b.bias.zero_()
    assert torch.allclose(sn(f, zq), sn.norm_layer(f))
    with torch.no_grad():  # zq constant per 2x2 block after nearest upsampling: modulation follows zq
        sn.conv_y.weight.normal_(); sn.conv_b.bias.normal_()
    zq_up = F.interpolate(zq, size=(8, 6), mode="nearest")
    assert torch.allclose(sn(f, zq), sn.norm_layer(f) * sn.conv_y(zq_up) + sn.conv_b(zq_up))
    down, up = DCDownBlock2d(16).to(D), DCUpBlock2d(16).to(D)
    with torch.no_grad():
        down.conv.weight.zero_(); down.conv.bias.zero_(); up.conv.weight.zero_(); up.conv.bias.zero_()
    assert torch.allclose(down(f), F.avg_pool2d(f, 2))  # shortcut == 2x2 average pooling
    assert torch.allclose(up(f), F.interpolate(f, scale_factor=2, mode="nearest"))  # shortcut == nearest 2x


def test_semantic_block_matches_transformers_qwen2vl_block():
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLVisionBlock

    from torch_ref.components.semantic_decoder import rope_2d

    m, cfg = model_of("semantic_decoder")
    c = Qwen2VLVisionConfig(embed_dim=cfg["embed_dim"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"],
                            hidden_act="quick_gelu")
    c._attn_implementation = "eager"
    hb = Qwen2VLVisionBlock(c).to(D)
    hb.load_state_dict(m.blocks[0].state_dict())
    h, w = cfg["grid_hw"]
    x = torch.randn((1, h * w, cfg["embed_dim"]), dtype=D)
    cos, sin = rope_2d(h, w, cfg["embed_dim"] // cfg["num_heads"])
    ref = hb(x[0], cu_seqlens=torch.tensor([0, h * w], dtype=torch.int32), max_seqlen=h * w,
             position_embeddings=(cos, sin))
    assert torch.allclose(m.blocks[0](x, cos, sin)[0], ref, atol=1e-5)  # HF applies RoPE in fp32


def test_vit_patchify_matches_hf_image_processor():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    from torch_ref.components._vit import patchify

    img = torch.rand((1, 3, 56, 84), generator=torch.Generator().manual_seed(0))
    proc = Qwen2VLImageProcessor(do_resize=False, do_rescale=False, do_normalize=False, patch_size=14,
                                 temporal_patch_size=2, merge_size=2)
    out = proc(images=[img[0].numpy()], return_tensors="pt", input_data_format="channels_first")
    ours = patchify(img, 14, 2, 2)
    assert torch.allclose(out["pixel_values"].to(ours.dtype), ours, atol=1e-6)
    assert out["image_grid_thw"].tolist() == [[1, 4, 6]]


def test_unet_mask_injection_changes_only_injected_blocks():
    comp = components.get("unet_mask")
    cfg = common.load_config(comp, "tiny")
    m = build_model(comp, cfg, 0).to(D)
    inp = common.cast_inputs(comp.make_inputs(cfg, torch.Generator().manual_seed(1)), D)
    out, inter = comp.run(m, inp, cfg)
    base = components.get("unet")
    out0, inter0 = base.run(m.unet, inp, cfg)
    assert torch.equal(inter["down.1"], inter0["down.1"])  # down blocks are not injected
    assert not torch.allclose(inter["mid"], inter0["mid"])
    assert not torch.allclose(out["noise_pred"], out0["noise_pred"])


def test_convnext_hf_layout_equals_timm():
    _, _, _, a, _, _ = generate("convnext", "tiny", 0)
    _, _, _, b, _, _ = generate("convnext_hf", "tiny", 0)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-10), k


def test_fixture_generation_is_byte_deterministic(tmp_path):
    tools = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    digests = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        out = tmp_path / str(i) / "fusion.safetensors"
        subprocess.run([sys.executable, "-m", "torch_ref.make_fixture", "--component", "fusion", "--config", "tiny",
                        "--seed", "7", "--out", str(out)], cwd=tools, check=True, capture_output=True)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_committed_fixtures_match_generator():
    """Each committed tiny fixture is reproduced by its recorded command (same tensors)."""
    from torch_ref.fixture import read_fixture

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "fixtures", "torch_ref"))
    for name in ("qwen2", "simvq", "fusion"):
        path = os.path.join(root, f"{name}.tiny.safetensors")
        if not os.path.exists(path):
            continue
        w, i, o, _, meta = read_fixture(path)
        assert meta["component"] == name and meta["reference_precision"] in ("float64", "float32")
        _, w2, i2, o2, _, _ = generate(name, "tiny", int(meta["seed"]))
        for k, v in o.items():
            assert torch.allclose(v.to(D), o2[k].to(D).to(v.dtype).to(D), atol=0), k


def test_chained_fixtures_reuse_their_parts():
    """The chained components are compositions: their weight names are the parts' names, and
    perception's fused tokens equal the fusion module run alone on the same inputs."""
    import torch
    from torch_ref.make_fixture import generate

    cfg, w, inputs, out, inter, _ = generate("perception", "tiny", 0)
    assert "visual.patch_embed.proj.weight" in w and "stem.0.weight" in w and "fusion.attn.q_proj.weight" in w
    assert "adapter.latents" in w and "model.embed_tokens.weight" in w and "projector_1.0.weight" in w
    assert not any(k.startswith("head.") for k in w)
    # ILLUME+'s image block around the fused grid (rows ended by <end_of_line>), then the queries.
    from torch_ref.components import perception

    n0, t, (gh, gw) = cfg["n_pre"], cfg["image_token_ids"], perception.grid(cfg)
    ids, span, fused = inputs["input_ids"][0], inter["image_span"], inter["fused"][0]
    nq = inter["adapter_tokens"].shape[1]
    body = gh * (gw + 1)
    assert gh * gw == fused.shape[0] and span.shape[0] == 4 + body + nq
    assert ids[n0:n0 + 2].tolist() == [t["start_of_image"], t["start_of_level"][0]]
    assert ids[n0 + 2 + body:n0 + 4 + body].tolist() == [t["end_of_level"][0], t["end_of_image"]]
    eol = w["model.embed_tokens.weight"][t["end_of_line"]]
    for r in range(gh):
        row = 2 + r * (gw + 1)
        assert ids[n0 + row + gw] == t["end_of_line"] and (ids[n0 + row:n0 + row + gw] == 0).all()
        assert torch.equal(span[row:row + gw], fused[r * gw:(r + 1) * gw])
        assert torch.allclose(span[row + gw].to(D), eol.to(D))
    assert torch.equal(span[4 + body:], inter["adapter_tokens"][0]) and (ids[n0 + 4 + body:][:nq] == 0).all()
    cfg, w, inputs, out, inter, _ = generate("generation", "tiny", 0)
    assert "semantic_quantizer.frozen_codebook" in w and "pixel_quantizer.code_transform.weight" in w
    assert "conv_in.weight" in w and "decoder.conv_in.weight" in w and "post_quant_conv.weight" in w
    assert inter["vq"].shape[1] == cfg["unet"]["vq_channels"]
    assert torch.isfinite(out["image"]).all()
