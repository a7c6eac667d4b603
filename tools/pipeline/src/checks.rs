//! Every whole-plan check graph: the model families' (`focus_models::checks`) and the
//! pipelines' own at the editor's test size — the generator's conditioning, guided step (a
//! batch of two through the UNet, mask injection) and decode at an 8×8 latent, and the
//! segmenter. What the emulator test and `focus gpu-check` run on the CUDA path vs the CPU.

use crate::EditConfig;
use focus_graph::{DType, Graph};

pub fn check_graphs() -> Result<Vec<(String, DType, Graph)>, String> {
    let mut v = focus_models::checks::check_graphs().map_err(|e| e.to_string())?;
    let cfg = EditConfig::demo();
    for dt in [DType::F32, DType::BF16] {
        let gen = crate::generation::graphs(&cfg.generation, dt, [[2, 2], [4, 4]], [8, 8])
            .map_err(|e| e.to_string())?;
        for (name, g) in
            ["generation condition", "generation guided step", "generation decode"].iter().zip(gen)
        {
            v.push((format!("{name} {dt}"), dt, g));
        }
        // f32 only: in bf16 the masked attention thresholds mask logits near 0 and flipped bits
        // between backends move the scores by ~0.3.
        if dt == DType::F32 {
            let graphs = cfg.graphs(dt, [64, 64], (2, 2)).map_err(|e| e.to_string())?;
            v.push((format!("segmentation {dt}"), dt, graphs[1].clone()));
        }
    }
    Ok(v)
}
