//! The generation runner (`focus_pipeline::Generator`) on the reference's `generation` fixture:
//! its conditioning, one guided Euler step and the decode reproduce the PyTorch chain, and
//! sampling is seeded, guided and checked.

use focus_engine::weights::WeightStore;
use focus_engine::{Device, Tensor, WeightSource};
use focus_graph::DType;
use focus_models::euler::EulerSchedule;
use focus_pipeline::{GenerateOptions, GenerationConfig, Generator};
use std::path::PathBuf;
use std::sync::Arc;

fn fixture() -> Arc<WeightStore> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/torch_ref/generation.tiny.safetensors");
    Arc::new(WeightStore::open(p).unwrap())
}

fn f32s(w: &WeightStore, name: &str) -> (Vec<usize>, Vec<f32>) {
    let (dt, shape, bytes) = w.tensor(name).unwrap();
    (shape.to_vec(), Tensor::from_bytes(dt, shape.to_vec(), bytes).unwrap().to_f32())
}

fn ids(w: &WeightStore, name: &str) -> Vec<usize> {
    let (dt, shape, bytes) = w.tensor(name).unwrap();
    Tensor::from_bytes(dt, shape.to_vec(), bytes).unwrap().to_i64().iter().map(|&v| v as usize).collect()
}

/// NCHW → NHWC, each pixel repeated `r`×`r` (nearest upsampling by an integer factor).
fn nhwc(v: &[f32], [c, h, w]: [usize; 3], r: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(v.len() * r * r);
    for y in 0..h * r {
        for x in 0..w * r {
            out.extend((0..c).map(|ch| v[(ch * h + y / r) * w + x / r]));
        }
    }
    out
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn generator(w: &Arc<WeightStore>) -> Generator {
    let src: Arc<dyn WeightSource> = w.clone();
    let rt = focus_pipeline::Runtime::new(src, Device::Cpu);
    Generator::new(GenerationConfig::tiny(), &rt, DType::F32, [[2, 2], [4, 4]], [8, 8]).unwrap()
}

#[test]
fn conditioning_step_and_decode_match_the_reference_chain() {
    let w = fixture();
    let mut g = generator(&w);
    let vq = g.condition(&ids(&w, "input.sem_ids"), &ids(&w, "input.pix_ids")).unwrap();
    let want = nhwc(&f32s(&w, "inter.vq").1, [64, 4, 4], 2);
    let e = rel_l2(&vq.to_f32(), &want);
    println!("vq at the latent grid: rel-L2 {e:.3e}");
    assert!(e < 1e-5);

    // One step of the 4-step schedule with guidance 1 (eps_u + 1·(eps_c − eps_u) = eps_c) and the
    // fixture's context, text embedding and time ids.
    let sched = EulerSchedule::new(&GenerationConfig::tiny().euler, 4).unwrap();
    let noise = nhwc(&f32s(&w, "input.noise").1, [4, 8, 8], 1);
    let lat: Vec<f32> = noise.iter().map(|v| v * sched.init_noise_sigma).collect();
    let latents = Tensor::from_f32(DType::F32, [1, 8, 8, 4], &lat).unwrap();
    let t: [f32; 6] = f32s(&w, "input.time_ids").1.try_into().unwrap();
    let opts = GenerateOptions {
        steps: 4,
        guidance: 1.0,
        context: Some(f32s(&w, "input.encoder_hidden_states").1),
        text_embeds: Some(f32s(&w, "input.text_embeds").1),
        time_ids: t,
        ..Default::default()
    };
    let next = g.step(&latents, &vq, (&sched, 0), &opts).unwrap();
    let want = nhwc(&f32s(&w, "output.latents_next").1, [4, 8, 8], 1);
    let e = rel_l2(&next.to_f32(), &want);
    println!("guided Euler step: rel-L2 {e:.3e}");
    assert!(e < 1e-5);

    // Guidance acts: s = 3 moves the step.
    let far = g.step(&latents, &vq, (&sched, 0), &GenerateOptions { guidance: 3.0, ..opts.clone() }).unwrap();
    assert!(rel_l2(&far.to_f32(), &want) > 1e-3);

    let want_next = Tensor::from_f32(DType::F32, [1, 8, 8, 4], &want).unwrap();
    let rgb = g.decode(&want_next).unwrap();
    let img = nhwc(&f32s(&w, "output.image").1, [3, 16, 16], 1);
    let img: Vec<f32> = img.iter().map(|v| (v * 0.5 + 0.5).clamp(0.0, 1.0)).collect();
    let e = rel_l2(&rgb.to_f32(), &img);
    println!("decode to RGB: rel-L2 {e:.3e}");
    assert!(e < 1e-5);
}

#[test]
fn sampling_is_seeded_and_inputs_are_checked() {
    let w = fixture();
    let mut g = generator(&w);
    let (sem, pix) = (ids(&w, "input.sem_ids"), ids(&w, "input.pix_ids"));
    let opts = GenerateOptions { steps: 3, ..Default::default() };
    let a = g.generate(&sem, &pix, None, &opts).unwrap();
    assert_eq!((a.h, a.w, a.rgb.len(), a.step_ms.len()), (16, 16, 16 * 16 * 3, 3));
    assert_eq!(a.rgb, g.generate(&sem, &pix, None, &opts).unwrap().rgb);
    assert_ne!(
        a.rgb,
        g.generate(&sem, &pix, None, &GenerateOptions { seed: 1, ..opts.clone() }).unwrap().rgb
    );

    let err = |r: Result<focus_pipeline::GeneratedImage, focus_pipeline::GenerationError>| {
        r.unwrap_err().to_string()
    };
    let mut bad = sem.clone();
    bad[0] = 64;
    assert!(err(g.generate(&bad, &pix, None, &opts)).contains("semantic code 64 outside the codebook of 64"));
    assert!(err(g.generate(&sem[..3], &pix, None, &opts)).contains("3 semantic codes for a 2x2 grid"));
    assert!(err(g.generate(&sem, &pix, Some(&[0.5; 256]), &opts)).contains("no mask injection"));
    assert!(err(g.generate(&sem, &pix, None, &GenerateOptions { steps: 0, ..opts.clone() }))
        .contains("0 inference steps"));
    assert!(err(g.generate(&sem, &pix, None, &GenerateOptions { guidance: f32::NAN, ..opts }))
        .contains("not finite"));
}
