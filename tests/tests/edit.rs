//! FOCUS end to end on the engine (`focus_pipeline::Editor`, test-size config, random weights):
//! the mask tokens are causal followers of the prompt, the segmentation's best query is the
//! mask the decoder receives, the image block parses, and an edit is reproducible.

use focus_engine::{compile, Device, Tensor, WeightSource};
use focus_graph::DType;
use focus_models::perception::{self, PerceptionShape};
use focus_pipeline::edit::random_weights;
use focus_pipeline::perception::Image;
use focus_pipeline::{EditConfig, Editor, GenerateOptions, Generator};
use std::sync::Arc;

const HW: [usize; 2] = [48, 64];

fn image() -> Vec<f32> {
    (0..HW[0] * HW[1] * 3).map(|i| ((i * 7919) % 251) as f32 / 250.0).collect()
}

fn setup() -> (EditConfig, Arc<dyn WeightSource>, Vec<u32>, Vec<u32>) {
    let cfg = EditConfig::demo();
    let (instruction, class_name) = (vec![11u32, 48, 85, 122, 159], vec![7u32, 60]);
    let graphs = cfg.graphs(DType::F32, HW, (instruction.len(), class_name.len())).unwrap();
    let w: Arc<dyn WeightSource> = Arc::new(random_weights(&graphs, 3).unwrap());
    (cfg, w, instruction, class_name)
}

#[test]
fn mask_tokens_follow_the_prompt_causally() {
    // The prompt's hidden states are the same with and without the appended mask tokens.
    let (cfg, w, instruction, class_name) = setup();
    let run = |seg: usize| -> Vec<f32> {
        let shape = PerceptionShape {
            vit_hw: cfg.vit_hw,
            hr_hw: cfg.hr_hw,
            raw_image: Some(HW),
            n_pre: instruction.len(),
            n_post: class_name.len(),
            capacity: cfg.capacity,
            dtype: DType::F32,
            seg_queries: seg,
        };
        let g = perception::prefill_graph(&cfg.perception, &shape).unwrap();
        let mut p = compile(&g, Some(w.clone()), Device::Cpu).unwrap();
        let span = cfg.perception.image_layout(cfg.vit_hw).token_ids(&cfg.perception.image_token_ids);
        let ids: Vec<i64> =
            [&instruction[..], &span, &class_name].concat().iter().map(|&t| t as i64).collect();
        let pos: Vec<i64> = (0..(ids.len() + seg) as i64).collect();
        let img = Tensor::from_f32(DType::F32, [1, HW[0], HW[1], 3], &image()).unwrap();
        let ids = Tensor::from_i64(DType::I32, [ids.len()], &ids).unwrap();
        let pos = Tensor::from_i64(DType::I32, [pos.len()], &pos).unwrap();
        p.run(&[("image", &img), ("input_ids", &ids), ("positions", &pos)]).unwrap();
        let hidden = focus_kernels::cpu::common::f32_in(&p.output("hidden").unwrap()).into_owned();
        if seg > 0 {
            let d = cfg.perception.llm.hidden_size;
            let s = focus_kernels::cpu::common::f32_in(&p.output("seg_hidden").unwrap()).into_owned();
            assert_eq!(s, hidden[hidden.len() - seg * d..], "seg_hidden is the last {seg} rows");
            // The class name's state: the mean of its rows, just before the mask tokens.
            let c = focus_kernels::cpu::common::f32_in(&p.output("class_hidden").unwrap()).into_owned();
            let end = hidden.len() / d - seg;
            let rows = &hidden[(end - class_name.len()) * d..end * d];
            for (j, got) in c.iter().enumerate() {
                let want = rows.chunks_exact(d).map(|r| r[j]).sum::<f32>() / class_name.len() as f32;
                assert!((got - want).abs() < 1e-5, "class_hidden[{j}] {got} != {want}");
            }
        }
        hidden
    };
    let (plain, with) = (run(0), run(6));
    assert_eq!(with.len() - plain.len(), 6 * cfg.perception.llm.hidden_size);
    let d: f32 = plain.iter().zip(&with).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(d < 1e-5, "prompt states moved by {d}");
}

#[test]
fn an_edit_chains_tokens_masks_and_decoding() {
    let (cfg, w, instruction, class_name) = setup();
    let mut ed = Editor::new(cfg.clone(), w.clone(), Device::Cpu, DType::F32).unwrap();
    let data = image();
    let img = Image { h: HW[0], w: HW[1], data: &data };
    let opts = GenerateOptions { steps: 3, ..Default::default() };
    let e = ed.edit(&img, &instruction, &class_name, &opts).unwrap();
    // Every stage ran in one shared activation arena, smaller than their arenas together.
    let (shared, own, plans) = ed.arena_use();
    assert!(plans >= 6 && shared > 0 && shared < own, "{shared} of {own} bytes over {plans} plans");
    // The block parses into grids of codes inside the codebooks.
    assert_eq!(e.codes[0].len(), 25);
    assert_eq!(e.codes[1].len(), 64);
    assert!(e.codes[0].iter().all(|&c| c < 64) && e.codes[1].iter().all(|&c| c < 96));
    // The best-scoring query's mask is the one the decoder got.
    let scores = e.segmentation.scores.to_f32();
    assert_eq!(scores.len(), cfg.mask_decoder.num_queries);
    let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
    assert_eq!(e.query, best);
    let masks = e.segmentation.masks.to_f32();
    let n = 64 * 64;
    assert_eq!(e.mask, masks[best * n..(best + 1) * n]);
    assert!(e.mask.iter().all(|p| (0.0..=1.0).contains(p)));
    assert_eq!((e.image.h, e.image.w), (64, 64));
    // The generator took the segmenter's mask on the device: the same picture as a generator
    // given that mask from the host; the inverted mask makes another.
    let rt = focus_pipeline::Runtime::new(w, Device::Cpu);
    let mut gen = Generator::new(cfg.generation.clone(), &rt, DType::F32, cfg.grids, cfg.latent).unwrap();
    let host = gen.generate(&e.codes[0], &e.codes[1], Some(&e.mask), &opts).unwrap();
    assert_eq!(host.rgb, e.image.rgb);
    let inverted: Vec<f32> = e.mask.iter().map(|p| 1.0 - p).collect();
    assert_ne!(gen.generate(&e.codes[0], &e.codes[1], Some(&inverted), &opts).unwrap().rgb, e.image.rgb);
    // Reproducible; another noise seed changes the picture, not the mask.
    let again = ed.edit(&img, &instruction, &class_name, &opts).unwrap();
    assert_eq!((again.image.rgb.clone(), again.mask.clone()), (e.image.rgb.clone(), e.mask.clone()));
    let other =
        ed.edit(&img, &instruction, &class_name, &GenerateOptions { seed: 9, ..opts.clone() }).unwrap();
    assert_eq!(other.mask, e.mask);
    assert_ne!(other.image.rgb, e.image.rgb);
    assert!(ed.edit(&img, &instruction, &[], &opts).unwrap_err().to_string().contains("class name"));
}
