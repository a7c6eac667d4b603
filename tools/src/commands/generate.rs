//! `focus generate`: the FOCUS generation path with seeded random weights at test size:
//! random image-token codes → ILLUME+'s VQ conditioning → guided Euler sampling of the
//! SDXL-layout UNet with FOCUS's mask injection (a centred disk as the "predicted" mask) →
//! VAE decode → PNG. Prints the plans and where the time goes.

use crate::commands::graph::mib;
use focus_engine::{Device, MemoryWeights, WeightSource};
use focus_graph::DType;
use focus_pipeline::generation::graphs;
use focus_pipeline::{GenerateOptions, GenerationConfig, Generator};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// How `focus generate` and `focus edit` sample (the same options for both).
#[derive(clap::Args, Debug)]
pub struct Sampling {
    /// Seed of the random weights, codes / prompt and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Euler steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Classifier-free guidance scale (the unconditional branch sees no VQ map).
    #[arg(long, default_value_t = 1.5)]
    pub guidance: f32,
    /// Device: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Storage dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Storage dtype of the VAE decoder (f32 by the precision policy whatever --dtype is).
    #[arg(long, default_value = "f32")]
    pub vae_dtype: String,
}

impl Sampling {
    /// The device, the dtype and the generator's options, checked.
    pub fn resolve(&self) -> Result<(Device, DType, GenerateOptions), String> {
        let device = Device::parse(&self.device).map_err(|e| e.to_string())?;
        let dtype = super::float_dtype(&self.dtype)?;
        if self.steps == 0 || self.steps > 1000 {
            return Err(format!("--steps must be in 1..=1000, got {}", self.steps));
        }
        let opts = GenerateOptions {
            steps: self.steps,
            guidance: self.guidance,
            seed: self.seed,
            ..Default::default()
        };
        Ok((device, dtype, opts))
    }

    pub fn vae_dtype(&self) -> Result<DType, String> {
        super::float_dtype(&self.vae_dtype)
    }
}

/// An image buffer as a PNG file.
pub fn save_png(
    p: &Path,
    data: &[u8],
    (w, h): (usize, usize),
    color: image::ColorType,
) -> Result<(), String> {
    image::save_buffer(p, data, w as u32, h as u32, color)
        .map_err(|e| format!("cannot write {}: {e}", p.display()))
}

/// Code grids and latent grid of the demo: a 64² image from 8×8 pixel codes (ILLUME+'s 2×
/// super-resolution: the latent is 4× the pixel grid) and 5×5 semantic codes.
const GRIDS: [[usize; 2]; 2] = [[5, 5], [8, 8]];
const LATENT: [usize; 2] = [32, 32];

pub fn run(a: &Sampling, out: Option<&Path>) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (device, dtype, opts) = a.resolve()?;
    let cfg = GenerationConfig { vae_dtype: a.vae_dtype()?, ..GenerationConfig::demo() };
    let mut weights = MemoryWeights::new();
    for g in graphs(&cfg, dtype, GRIDS, LATENT).map_err(|e| err(&e))? {
        for (name, dt, shape, bytes) in MemoryWeights::random_for(&g, a.seed).sorted() {
            weights.insert(name, dt, shape.to_vec(), bytes.to_vec());
        }
    }
    let weights: Arc<dyn WeightSource> = Arc::new(weights);
    let t = Instant::now();
    let rt = focus_pipeline::Runtime::new(weights, device);
    let mut gen = Generator::new(cfg.clone(), &rt, dtype, GRIDS, LATENT).map_err(|e| err(&e))?;
    println!(
        "focus generate: FOCUS generation path, seeded random weights (seed {}), {dtype} (VAE {}) on {device}; \
         codes {}x{} semantic + {}x{} pixel -> latent {}x{} -> image {}x{}; plans compiled in {:.1} ms",
        a.seed,
        cfg.vae_dtype,
        GRIDS[0][0],
        GRIDS[0][1],
        GRIDS[1][0],
        GRIDS[1][1],
        LATENT[0],
        LATENT[1],
        2 * LATENT[0],
        2 * LATENT[1],
        t.elapsed().as_secs_f64() * 1e3
    );
    for (name, plan) in ["conditioning", "UNet step (CFG batch 2)", "VAE decode"].iter().zip(gen.plans()) {
        let st = plan.stats();
        println!(
            "  {name}: {} steps, {:.3} GFLOP, arena {:.2} MiB, weights {:.2} MiB",
            st.steps,
            st.flops as f64 / 1e9,
            mib(st.arena_bytes),
            mib(st.mapped_weight_bytes + st.resident_bytes)
        );
    }
    // Random codes (what the LLM's image tokens carry) and a centred disk as the mask.
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed ^ 0x5eed);
    let sem: Vec<usize> =
        (0..GRIDS[0][0] * GRIDS[0][1]).map(|_| rng.gen_range(0..cfg.semantic.codebook_size)).collect();
    let pix: Vec<usize> =
        (0..GRIDS[1][0] * GRIDS[1][1]).map(|_| rng.gen_range(0..cfg.pixel.codebook_size)).collect();
    let m = cfg.mask.as_ref().expect("the demo config injects a mask");
    let (mh, mw) = (LATENT[0] * m.image_scale, LATENT[1] * m.image_scale);
    let mask: Vec<f32> = (0..mh * mw)
        .map(|i| {
            let (y, x) = ((i / mw) as f32 + 0.5 - mh as f32 / 2.0, (i % mw) as f32 + 0.5 - mw as f32 / 2.0);
            ((y * y + x * x).sqrt() < mh.min(mw) as f32 / 3.0) as u8 as f32
        })
        .collect();
    let img = gen.generate(&sem, &pix, Some(&mask), &opts).map_err(|e| err(&e))?;
    let mut steps = img.step_ms.clone();
    steps.sort_by(f64::total_cmp);
    println!(
        "conditioning {:.3} ms; {} Euler steps (guidance {}): median {:.3} ms/step, total {:.1} ms; decode {:.3} ms",
        img.condition_ms,
        steps.len(),
        a.guidance,
        steps[steps.len() / 2],
        img.step_ms.iter().sum::<f64>(),
        img.decode_ms
    );
    let mean = img.rgb.iter().map(|&v| v as f64).sum::<f64>() / img.rgb.len() as f64;
    println!("image {}x{} RGB, mean value {mean:.1}", img.w, img.h);
    if let Some(p) = out {
        save_png(p, &img.rgb, (img.w, img.h), image::ColorType::Rgb8)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
