//! `focus edit`: FOCUS end to end with seeded random weights at test size on the bundled
//! image: the LLM (image in both encoder branches, instruction, class name, mask tokens) emits
//! an image-token block; the segmentation decoder turns the mask tokens into masks scored
//! against the class name; the best mask and the codes drive the diffusion decoder. Prints
//! every stage's time and writes the edited image and the mask as PNGs.

use crate::commands::generate::{save_png, Sampling};
use crate::image_io;
use focus_engine::WeightSource;
use focus_pipeline::edit::random_weights;
use focus_pipeline::perception::Image;
use focus_pipeline::{EditConfig, Editor};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub struct EditArgs<'a> {
    pub image: Option<&'a Path>,
    pub sampling: &'a Sampling,
    pub out: Option<&'a Path>,
    pub mask_out: Option<&'a Path>,
}

pub fn run(args: EditArgs) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let a = args.sampling;
    let (device, dtype, opts) = a.resolve()?;
    let img = image_io::load(args.image)?;
    let mut cfg = EditConfig::demo();
    cfg.generation.vae_dtype = a.vae_dtype()?;
    // An instruction and a class name as token ids (random weights: the words do not matter).
    let v = 256u32;
    let instruction: Vec<u32> = (0..6u32).map(|i| (i * 37 + 11 + a.seed as u32) % v).collect();
    let class_name: Vec<u32> = (0..2u32).map(|i| (i * 53 + 7 + a.seed as u32) % v).collect();
    let t = Instant::now();
    let graphs =
        cfg.graphs(dtype, [img.h, img.w], (instruction.len(), class_name.len())).map_err(|e| err(&e))?;
    let weights: Arc<dyn WeightSource> = Arc::new(random_weights(&graphs, a.seed).map_err(|e| err(&e))?);
    let mut editor = Editor::new(cfg.clone(), weights, device, dtype).map_err(|e| err(&e))?;
    println!(
        "focus edit: FOCUS end to end, seeded random weights (seed {}), {dtype} on {device}; image {}x{}; \
         {} mask tokens, image block {}x{} + {}x{} codes, output {}x{}; set up in {:.0} ms",
        a.seed,
        img.w,
        img.h,
        cfg.mask_decoder.num_queries,
        cfg.grids[0][0],
        cfg.grids[0][1],
        cfg.grids[1][0],
        cfg.grids[1][1],
        2 * cfg.latent[1],
        2 * cfg.latent[0],
        t.elapsed().as_secs_f64() * 1e3
    );
    let image = Image { h: img.h, w: img.w, data: &img.data };
    let e = editor.edit(&image, &instruction, &class_name, &opts).map_err(|e| err(&e))?;
    let steps: f64 = e.image.step_ms.iter().sum();
    println!(
        "prefill (ViT + ConvNeXt + fusion + adapter + LLM with {} mask tokens): {:.2} ms\n\
         image tokens: {} greedy steps under the ILLUME+ grammar, {:.2} ms\n\
         segmentation (pixel decoder + masked-attention decoder): {:.2} ms; best query {} of {} (score {:.3}), \
         mask area {:.1}%\n\
         generation: conditioning {:.2} ms, {} Euler steps with guidance {} {:.1} ms, VAE {:.2} ms",
        cfg.mask_decoder.num_queries,
        e.prefill_ms,
        e.tokens.len(),
        e.decode_ms,
        e.segment_ms,
        e.query,
        cfg.mask_decoder.num_queries,
        e.segmentation.scores.to_f32()[e.query],
        100.0 * e.mask.iter().filter(|&&p| p >= 0.5).count() as f64 / e.mask.len() as f64,
        e.image.condition_ms,
        e.image.step_ms.len(),
        a.guidance,
        steps,
        e.image.decode_ms
    );
    println!("codes: semantic {:?}… pixel {:?}…", &e.codes[0][..5], &e.codes[1][..8]);
    let (shared, own, plans) = editor.arena_use();
    println!(
        "activations: one {:.2} MiB arena shared by {plans} plans (their own arenas would total {:.2} MiB)",
        shared as f64 / (1 << 20) as f64,
        own as f64 / (1 << 20) as f64
    );
    if let Some(p) = args.out {
        save_png(p, &e.image.rgb, (e.image.w, e.image.h), image::ColorType::Rgb8)?;
        println!("wrote the edited image to {}", p.display());
    }
    if let Some(p) = args.mask_out {
        let side = (e.mask.len() as f64).sqrt() as usize;
        let m: Vec<u8> = e.mask.iter().map(|v| (v * 255.0).round() as u8).collect();
        save_png(p, &m, (side, e.mask.len() / side), image::ColorType::L8)?;
        println!("wrote the mask to {}", p.display());
    }
    Ok(())
}
