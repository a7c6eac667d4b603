"""Library-backed modules: state-dict names and shapes equal the spec's public checkpoint names."""

import pytest
import torch

from torch_ref import common, components
from torch_ref.make_fixture import build_model, checkpoint_state


def state(name, config="tiny"):
    comp = components.get(name)
    cfg = common.load_config(comp, config)
    model = comp.build(cfg)
    return cfg, checkpoint_state(comp, model, cfg)


def shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def test_qwen2_names():
    cfg, sd = state("qwen2")
    s = shapes(sd)
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = H // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    assert s["model.embed_tokens.weight"] == (V, H)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        assert s[p + "input_layernorm.weight"] == (H,)
        assert s[p + "self_attn.q_proj.weight"] == (H, H) and s[p + "self_attn.q_proj.bias"] == (H,)
        assert s[p + "self_attn.k_proj.weight"] == (kv, H) and s[p + "self_attn.k_proj.bias"] == (kv,)
        assert s[p + "self_attn.v_proj.weight"] == (kv, H) and s[p + "self_attn.v_proj.bias"] == (kv,)
        assert s[p + "self_attn.o_proj.weight"] == (H, H) and p + "self_attn.o_proj.bias" not in s
        assert s[p + "post_attention_layernorm.weight"] == (H,)
        assert s[p + "mlp.gate_proj.weight"] == (I, H) and s[p + "mlp.up_proj.weight"] == (I, H)
        assert s[p + "mlp.down_proj.weight"] == (H, I)
    assert s["model.norm.weight"] == (H,)
    assert "lm_head.weight" not in s  # tied (spec §2.3)
    assert len(s) == 2 + 12 * cfg["num_hidden_layers"]


def test_qwen2vl_vit_names():
    cfg, sd = state("qwen2vl_vit")
    s = shapes(sd)
    E, P = cfg["embed_dim"], cfg["patch_size"]
    assert s["visual.patch_embed.proj.weight"] == (E, 3, 2, P, P)
    for i in range(cfg["depth"]):
        p = f"visual.blocks.{i}."
        for n in ("norm1", "norm2"):
            assert s[p + n + ".weight"] == (E,) and s[p + n + ".bias"] == (E,)  # LayerNorm with bias
        assert s[p + "attn.qkv.weight"] == (3 * E, E) and s[p + "attn.qkv.bias"] == (3 * E,)
        assert s[p + "attn.proj.weight"] == (E, E)
        assert s[p + "mlp.fc1.weight"] == (4 * E, E) and s[p + "mlp.fc2.weight"] == (E, 4 * E)
    assert s["visual.merger.ln_q.weight"] == (E,) and s["visual.merger.ln_q.bias"] == (E,)
    assert s["visual.merger.mlp.0.weight"] == (4 * E, 4 * E)
    assert s["visual.merger.mlp.2.weight"] == (cfg["hidden_size"], 4 * E)


def test_qwen25vl_vit_names():
    cfg, sd = state("qwen25vl_vit")
    s = shapes(sd)
    E, I = cfg["hidden_size"], cfg["intermediate_size"]
    assert s["visual.patch_embed.proj.weight"] == (E, 3, 2, cfg["patch_size"], cfg["patch_size"])
    p = "visual.blocks.0."
    assert s[p + "norm1.weight"] == (E,) and p + "norm1.bias" not in s  # RMSNorm
    assert s[p + "attn.qkv.weight"] == (3 * E, E) and s[p + "attn.proj.bias"] == (E,)
    for n in ("gate_proj", "up_proj"):
        assert s[p + f"mlp.{n}.weight"] == (I, E) and s[p + f"mlp.{n}.bias"] == (I,)
    assert s[p + "mlp.down_proj.weight"] == (E, I) and s[p + "mlp.down_proj.bias"] == (E,)
    assert s["visual.merger.ln_q.weight"] == (E,) and "visual.merger.ln_q.bias" not in s
    assert s["visual.merger.mlp.2.weight"] == (cfg["out_hidden_size"], 4 * E)


def test_convnext_timm_names():
    cfg, sd = state("convnext")
    s = shapes(sd)
    d = cfg["dims"]
    assert s["stem.0.weight"] == (d[0], 3, 4, 4) and s["stem.1.weight"] == (d[0],)
    for st in range(1, 4):
        assert s[f"stages.{st}.downsample.0.weight"] == (d[st - 1],)
        assert s[f"stages.{st}.downsample.1.weight"] == (d[st], d[st - 1], 2, 2)
    b = "stages.2.blocks.1."
    assert s[b + "conv_dw.weight"] == (d[2], 1, 7, 7)
    assert s[b + "norm.weight"] == (d[2],)
    assert s[b + "mlp.fc1.weight"] == (4 * d[2], d[2]) and s[b + "mlp.fc2.weight"] == (d[2], 4 * d[2])
    assert s[b + "gamma"] == (d[2],)
    assert "head.norm.weight" in s and "head.fc.weight" in s


def test_convnext_hf_names():
    cfg, sd = state("convnext_hf")
    s = shapes(sd)
    d = cfg["dims"]
    assert s["convnext.embeddings.patch_embeddings.weight"] == (d[0], 3, 4, 4)
    assert s["convnext.embeddings.layernorm.weight"] == (d[0],)
    assert s["convnext.encoder.stages.1.downsampling_layer.0.weight"] == (d[0],)
    assert s["convnext.encoder.stages.1.downsampling_layer.1.weight"] == (d[1], d[0], 2, 2)
    p = "convnext.encoder.stages.2.layers.1."
    assert s[p + "dwconv.weight"] == (d[2], 1, 7, 7) and s[p + "layernorm.weight"] == (d[2],)
    assert s[p + "pwconv1.weight"] == (4 * d[2], d[2]) and s[p + "layer_scale_parameter"] == (d[2],)
    assert s["convnext.layernorm.weight"] == (d[3],)


def test_convnext_timm_to_hf_mapping_is_complete():
    from torch_ref.components import convnext

    cfg, sd = state("convnext")
    _, hf = state("convnext_hf")
    mapped = convnext.timm_to_hf(sd)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: v for k, v in shapes(hf).items()}


def test_unet_names():
    cfg, sd = state("unet")
    s = shapes(sd)
    c0 = cfg["block_out_channels"][0]
    assert s["conv_in.weight"] == (c0, 68, 3, 3)
    for n in ("time_embedding.linear_1.weight", "time_embedding.linear_2.weight", "add_embedding.linear_1.weight",
              "add_embedding.linear_2.weight", "conv_norm_out.weight", "conv_out.weight",
              "down_blocks.0.resnets.0.time_emb_proj.weight", "down_blocks.1.resnets.0.conv_shortcut.weight",
              "down_blocks.0.downsamplers.0.conv.weight", "mid_block.resnets.1.conv2.weight",
              "up_blocks.0.upsamplers.0.conv.weight", "up_blocks.1.resnets.0.conv_shortcut.weight"):
        assert n in s, n
    assert s["add_embedding.linear_1.weight"][1] == cfg["projection_class_embeddings_input_dim"]
    t = "down_blocks.1.attentions.0."
    C = cfg["block_out_channels"][1]
    assert s[t + "proj_in.weight"] == (C, C)  # use_linear_projection
    tb = t + "transformer_blocks.1."  # 2 transformer layers in block 1
    assert s[tb + "attn1.to_q.weight"] == (C, C) and tb + "attn1.to_q.bias" not in s
    assert s[tb + "attn2.to_k.weight"] == (C, cfg["cross_attention_dim"])
    assert s[tb + "attn2.to_out.0.bias"] == (C,)
    assert s[tb + "ff.net.0.proj.weight"] == (8 * C, C) and s[tb + "ff.net.2.weight"] == (C, 4 * C)
    for n in ("norm1", "norm2", "norm3"):
        assert s[tb + n + ".weight"] == (C,)
    assert s["conv_out.weight"] == (4, c0, 3, 3)


def test_unet_mask_names():
    cfg, sd = state("unet_mask")
    s = shapes(sd)
    p = cfg["mask"]["patch"]
    assert s["mask_embedder.proj.weight"] == (cfg["cross_attention_dim"], p * p)
    assert "conv_in.weight" in s and not any(k.startswith("unet.") for k in s)


def test_vae_decoder_names():
    cfg, sd = state("vae_decoder")
    s = shapes(sd)
    top = cfg["block_out_channels"][-1]
    assert s["post_quant_conv.weight"] == (4, 4, 1, 1)
    assert s["decoder.conv_in.weight"] == (top, 4, 3, 3)
    for n in ("group_norm", "to_q", "to_k", "to_v", "to_out.0"):
        assert f"decoder.mid_block.attentions.0.{n}.weight" in s
    assert s["decoder.mid_block.attentions.0.to_q.weight"] == (top, top)
    n = len(cfg["block_out_channels"])
    for i in range(n):
        for r in range(3):
            assert f"decoder.up_blocks.{i}.resnets.{r}.conv1.weight" in s
        assert (f"decoder.up_blocks.{i}.upsamplers.0.conv.weight" in s) == (i < n - 1)
    assert "decoder.up_blocks.1.resnets.0.conv_shortcut.weight" in s
    assert "decoder.conv_norm_out.weight" in s and s["decoder.conv_out.weight"][0] == 3
    assert not any(k.startswith("encoder.") for k in s)


def test_own_module_names():
    _, sd = state("movq_encoder")
    for n in ("pixel_encoder.conv_in.weight", "pixel_encoder.down.0.block.0.norm1.weight",
              "pixel_encoder.down.2.block.0.nin_shortcut.weight", "pixel_encoder.down.2.attn.0.q.weight",
              "pixel_encoder.down.0.downsample.conv.weight", "pixel_encoder.mid.block_1.conv1.weight",
              "pixel_encoder.mid.attn_1.proj_out.weight", "pixel_encoder.norm_out.weight",
              "pixel_encoder.conv_out.weight", "pixel_quant_conv.weight"):
        assert n in sd, n
    _, sd = state("movq_decoder")
    for n in ("pixel_post_quant_conv.weight", "pixel_decoder.conv_in.weight",
              "pixel_decoder.mid.block_1.norm1.norm_layer.weight", "pixel_decoder.mid.block_1.norm1.conv_y.weight",
              "pixel_decoder.mid.attn_1.norm.conv_b.bias", "pixel_decoder.up.2.attn.1.k.weight",
              "pixel_decoder.up.1.upsample.conv.weight", "pixel_decoder.up.1.block.0.nin_shortcut.weight",
              "pixel_decoder.norm_out.conv_y.weight", "pixel_decoder.conv_out.weight"):
        assert n in sd, n
    assert not any(k.startswith("pixel_decoder.up.0.upsample") for k in sd)
    _, sd = state("simvq")
    assert set(sd) == {"semantic_quantizer.frozen_codebook", "semantic_quantizer.code_transform.weight"}
    _, sd = state("semantic_decoder")
    for n in ("semantic_decoder.proj_in.weight", "semantic_decoder.blocks.0.norm1.bias",
              "semantic_decoder.blocks.1.attn.qkv.weight", "semantic_decoder.blocks.1.mlp.fc2.bias",
              "semantic_decoder.proj_out.0.weight", "semantic_decoder.proj_out.1.weight"):
        assert n in sd, n
    cfg, sd = state("m2f_transformer_decoder")
    p = "sem_seg_head.predictor."
    h = cfg["hidden"]
    assert tuple(sd[p + "transformer_cross_attention_layers.0.multihead_attn.in_proj_weight"].shape) == (3 * h, h)
    for n in ("transformer_self_attention_layers.2.self_attn.out_proj.weight", "transformer_ffn_layers.1.linear1.weight",
              "transformer_ffn_layers.1.norm.weight", "decoder_norm.weight", "mask_embed.layers.2.weight",
              "query_embed.weight", "level_embed.weight"):
        assert p + n in sd, n
    _, sd = state("m2f_pixel_decoder")
    p = "sem_seg_head.pixel_decoder."
    for n in ("input_proj.0.0.weight", "input_proj.2.1.weight", "transformer.level_embed",
              "transformer.encoder.layers.1.self_attn.sampling_offsets.weight",
              "transformer.encoder.layers.1.self_attn.attention_weights.weight", "transformer.encoder.layers.0.norm1.weight",
              "transformer.encoder.layers.0.linear1.weight", "adapter_1.weight", "adapter_1.norm.weight",
              "layer_1.weight", "layer_1.norm.bias", "mask_features.weight"):
        assert p + n in sd, n


def test_movq_kandinsky_names():
    """diffusers VQModel with spatial norm (Kandinsky MoVQ): SpatialNorm carries norm_layer,
    conv_y and conv_b, conditioned on the quantised map (spec §6.2)."""
    cfg, sd = state("movq_kandinsky")
    s = shapes(sd)
    c0, e = cfg["block_out_channels"][-1], cfg["vq_embed_dim"]
    assert s["quantize.embedding.weight"] == (cfg["num_vq_embeddings"], e)
    assert s["quant_conv.weight"] == (e, cfg["latent_channels"], 1, 1)
    p = "decoder.up_blocks.0.resnets.0.norm1."
    assert s[p + "norm_layer.weight"] == (c0,)
    assert s[p + "conv_y.weight"] == (c0, e, 1, 1) and s[p + "conv_b.weight"] == (c0, e, 1, 1)
    assert "decoder.conv_norm_out.conv_y.weight" in s and "encoder.conv_norm_out.weight" in s
