//! Parity with the PyTorch reference on the committed fixtures (tests/fixtures/torch_ref,
//! produced by tools/torch_ref; see tests/fixtures/MANIFEST.md).

use focus_cli::parity::{run_fixture, COMPONENTS};
use focus_graph::DType;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/torch_ref").join(name)
}

fn check(name: &str) {
    let r = run_fixture(&fixture(name), None, DType::F32).unwrap();
    for c in &r.comparisons {
        println!("{name}: {} rel-L2 {:.3e} max-abs {:.3e}", c.name, c.rel_l2, c.max_abs);
    }
    assert!(r.passed(), "{name}: {:?}", r.comparisons);
    // The comparison is real: a far tighter tolerance must fail on f32 rounding.
    let strict = run_fixture(&fixture(name), Some(1e-12), DType::F32).unwrap();
    assert!(!strict.passed(), "{name}: rel-L2 exactly 0 is implausible");
}

#[test]
fn convnext_matches_timm() {
    check("convnext.tiny.safetensors");
}

#[test]
fn qwen2_matches_transformers_including_greedy_decode() {
    check("qwen2.tiny.safetensors");
}

/// Every committed fixture's component runs on the engine; a fixture naming one the engine
/// lacks is reported as such (a fixture written here with an unknown component).
#[test]
fn unimplemented_components_are_reported_not_faked() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/torch_ref");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let comp = p.file_name().unwrap().to_str().unwrap().split('.').next().unwrap().to_string();
        assert!(COMPONENTS.contains(&comp.as_str()), "fixture {comp} has no engine implementation");
    }
    let path =
        std::env::temp_dir().join(format!("focus-unknown-component-{}.safetensors", std::process::id()));
    let meta = [("component", "segment_anything"), ("config", "{}")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let x = [0u8; 4];
    focus_engine::weights::save(&path, &[("input.x", DType::F32, &[1], &x)], Some(&meta)).unwrap();
    let err = run_fixture(&path, None, DType::F32).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(err.contains("'segment_anything' has no engine implementation yet"), "{err}");
}

#[test]
fn qwen2vl_vit_matches_transformers() {
    check("qwen2vl_vit.tiny.safetensors");
}

#[test]
fn qwen25vl_vit_windows_match_transformers() {
    check("qwen25vl_vit.tiny.safetensors");
}

#[test]
fn fusion_cross_attention_matches_reference() {
    check("fusion.tiny.safetensors");
}

#[test]
fn gated_adapter_matches_reference() {
    check("adapter.tiny.safetensors");
}

#[test]
fn simvq_lookup_matches_reference() {
    check("simvq.tiny.safetensors");
}

#[test]
fn resize_modes_and_vit_preprocessing_match_pytorch_interpolate() {
    check("resize.tiny.safetensors");
}

#[test]
fn convnext_hf_layout_matches_transformers() {
    check("convnext_hf.tiny.safetensors");
}

/// The same networks stored in bf16 and f16 (weights converted on load) against the f32/f64
/// reference, with the dtype's network-level tolerance.
#[test]
fn half_precision_networks_stay_within_tolerance() {
    for name in [
        "convnext",
        "qwen2",
        "qwen2vl_vit",
        "qwen25vl_vit",
        "fusion",
        "adapter",
        "perception",
        "movq_encoder",
        "movq_decoder",
        "vae_decoder",
        "m2f_pixel_decoder",
        "m2f_transformer_decoder",
        "unet",
        "unet_mask",
        "euler",
        "generation",
        "semantic_decoder",
        "movq_kandinsky",
    ] {
        // f16 only for two: the masked-attention decoder thresholds mask logits at 0, and in
        // bf16 one of the tiny fixture's 576 last-layer mask bits sits within rounding of 0 and
        // flips (class scores then 2.4e-2; PyTorch's own bf16 run: 2.3e-2); the generation
        // chain's bf16 noise prediction is 2.1e-2 (PyTorch in bf16: 0.23, its timestep
        // embedding rounded to bf16); the Kandinsky VQ round trip quantises a bf16 encoder
        // output (1.2e-2 off) against a 32-entry codebook and 3 of 96 codes change.
        let dtypes: &[DType] = if matches!(name, "m2f_transformer_decoder" | "generation" | "movq_kandinsky")
        {
            &[DType::F16]
        } else {
            &[DType::BF16, DType::F16]
        };
        for &dt in dtypes {
            let r = run_fixture(&fixture(&format!("{name}.tiny.safetensors")), None, dt).unwrap();
            for c in &r.comparisons {
                println!("{name} {dt}: {} rel-L2 {:.3e}", c.name, c.rel_l2);
            }
            assert!(r.passed(), "{name} in {dt}: {:?}", r.comparisons);
        }
    }
}

#[test]
fn illume_pixel_encoder_matches_reference() {
    check("movq_encoder.tiny.safetensors");
}

/// SpatialNorm's 1×1 modulation convs run at the quantised map's resolution and are read at
/// the nearest pixel (`Op::SpatialNorm`): the reference upsamples first.
#[test]
fn illume_pixel_decoder_matches_reference() {
    check("movq_decoder.tiny.safetensors");
}

#[test]
fn sdxl_vae_decoder_matches_diffusers() {
    check("vae_decoder.tiny.safetensors");
}

#[test]
fn mask2former_pixel_decoder_matches_reference() {
    check("m2f_pixel_decoder.tiny.safetensors");
}

/// Every layer's masks, class scores and attention mask (exactly) match.
#[test]
fn psalm_masked_attention_decoder_matches_reference() {
    check("m2f_transformer_decoder.tiny.safetensors");
}

#[test]
fn sdxl_unet_with_vq_input_matches_diffusers() {
    check("unet.tiny.safetensors");
}

/// FOCUS's mask sequence appended to attn2's context in the mid and up blocks.
#[test]
fn sdxl_unet_with_mask_injection_matches_reference() {
    check("unet_mask.tiny.safetensors");
}

#[test]
fn euler_scheduler_matches_diffusers() {
    check("euler.tiny.safetensors");
}

/// Codes → SimVQ maps → merged VQ conditioning → one Euler step of the UNet → VAE decode.
#[test]
fn chained_generation_path_matches_reference() {
    check("generation.tiny.safetensors");
}

#[test]
fn dualvitok_semantic_decoder_matches_reference() {
    check("semantic_decoder.tiny.safetensors");
}

/// diffusers' spatial-norm VQModel: encoder, exact code ids, SpatialNorm decoder.
#[test]
fn kandinsky_movq_matches_diffusers() {
    check("movq_kandinsky.tiny.safetensors");
}

#[test]
fn chained_perception_path_matches_reference_including_greedy_decode() {
    check("perception.tiny.safetensors");
}
