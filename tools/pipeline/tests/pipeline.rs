//! Text handling, the perception runner and text chat from a checkpoint directory: chat
//! template with special tokens, KV-cache decoding equal to recomputing the whole prefix,
//! constraints, and clear errors.

use focus_engine::sampling::{Allowed, Constraint, SampleError, Sampler, SamplingParams};
use focus_engine::{compile, Device, MemoryWeights, Tensor, WeightSource};
use focus_graph::{DType, GraphBuilder};
use focus_models::perception::{
    self, splice_image, ImageLayout, ImageSlot, ImageTokenIds, PerceptionConfig, PerceptionShape,
};
use focus_models::qwen2;
use focus_pipeline::perception::{Image, PerceptionError};
use focus_pipeline::text::{chat_prompt, chat_text, user_with_image, TextError, Tokenizer};
use focus_pipeline::{Perception, Runtime};
use std::sync::Arc;

/// A word-level tokenizer with the Qwen chat special tokens.
fn tokenizer() -> Tokenizer {
    Tokenizer::from_json(&focus_pipeline::chat::test_tokenizer_json()).unwrap()
}

#[test]
fn chat_template_keeps_special_tokens_whole() {
    let tok = tokenizer();
    let p = chat_prompt(&tok, "You are helpful", "What is in <image> it").unwrap();
    let start = tok.token_id("<|im_start|>").unwrap();
    let end = tok.token_id("<|im_end|>").unwrap();
    assert_eq!(p.before[0], start);
    assert_eq!(p.before.iter().filter(|&&t| t == start).count(), 2);
    assert_eq!(p.end_of_turn, end);
    // after: "it", <|im_end|>, <|im_start|>, "assistant"
    assert_eq!(p.after, vec![13, end, start, 3]);
    assert_eq!(tok.decode(&p.after, true).unwrap(), "it assistant");
    let e = chat_prompt(&tok, "s", "no image here").unwrap_err();
    assert!(matches!(e, TextError::Placeholder { found: 0, .. }), "{e}");
    let e = chat_prompt(&tok, "s", "<image> <image>").unwrap_err();
    assert!(matches!(e, TextError::Placeholder { found: 2, .. }), "{e}");
    let e = Tokenizer::from_file(std::path::Path::new("/nonexistent/tokenizer.json")).err().unwrap();
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn image_placeholder_expands_to_the_image_span() {
    let tok = tokenizer();
    // The structure tokens follow the chat specials (ids 14..=16) in ILLUME+'s order.
    let ids = tok.image_token_ids().unwrap();
    assert_eq!(ids, ImageTokenIds::consecutive(17));
    // ILLUME+ puts the image first in the user message, then a newline and the question.
    let user = user_with_image("describe the image");
    assert_eq!(user, "<image>\ndescribe the image");
    let p = chat_prompt(&tok, "you are helpful", &user).unwrap();
    let span = ImageLayout { grids: vec![[2, 2]], queries: 1 }.token_ids(&ids);
    let full = p.with_image(&span);
    assert_eq!(full.len(), p.before.len() + 11 + p.after.len());
    assert_eq!(full[p.before.len()..p.before.len() + 11], [17, 20, 0, 0, 19, 0, 0, 19, 21, 18, 0]);
    // Before: <|im_start|> system ... <|im_end|> <|im_start|> user; after: describe the image ...
    assert_eq!(p.before[p.before.len() - 1], 2);
    assert_eq!(p.after[..3], [7, 8, 9]);
}

/// The splice on the engine: every span position holds its structure-token embedding, its
/// grid feature (row-major, rows ended by `<end_of_line>`) or its adapter query.
#[test]
fn splice_places_structure_tokens_feature_rows_and_queries() {
    let (n_pre, n_post, d) = (2, 3, 4);
    for layout in [
        ImageLayout { grids: vec![[2, 3]], queries: 2 },
        ImageLayout { grids: vec![[3, 1], [2, 2]], queries: 0 },
    ] {
        let l = n_pre + layout.len() + n_post;
        let mut b = GraphBuilder::new();
        let emb = b.input("emb", DType::F32, [l, d]).unwrap();
        let levels: Vec<_> = (0..layout.grids.len())
            .map(|k| b.input(&format!("level{k}"), DType::F32, [layout.grids[k][0] * layout.grids[k][1], d]))
            .collect::<Result<_, _>>()
            .unwrap();
        let q = (layout.queries > 0).then(|| b.input("queries", DType::F32, [layout.queries, d]).unwrap());
        let x = splice_image(&mut b, emb, n_pre, &layout, &levels, q).unwrap();
        b.output("x", x).unwrap();
        let mut plan = compile(&b.finish().unwrap(), None, Device::Cpu).unwrap();
        // Values: emb row p 1000p + j, level k feature f −10(100k + f + 1) − j, query k 500 + 10k + j.
        let rows = |n: usize, f: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
            (0..n * d).map(|i| f(i / d, i % d)).collect()
        };
        let mut inputs = vec![(
            "emb".to_string(),
            Tensor::from_f32(DType::F32, [l, d], &rows(l, &|p, j| (1000 * p + j) as f32)).unwrap(),
        )];
        for (k, &[h, w]) in layout.grids.iter().enumerate() {
            let v = rows(h * w, &|f, j| -(((100 * k + f + 1) * 10 + j) as f32));
            inputs.push((format!("level{k}"), Tensor::from_f32(DType::F32, [h * w, d], &v).unwrap()));
        }
        if layout.queries > 0 {
            let v = rows(layout.queries, &|k, j| (500 + 10 * k + j) as f32);
            inputs.push(("queries".into(), Tensor::from_f32(DType::F32, [layout.queries, d], &v).unwrap()));
        }
        let inputs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let out = plan.run(&inputs).unwrap();
        let got = out["x"].to_f32();
        assert_eq!(got.len(), l * d);
        let slots = layout.slots(&ImageTokenIds::consecutive(0));
        for p in 0..l {
            let want: Vec<f32> = match p.checked_sub(n_pre).and_then(|s| slots.get(s)) {
                None | Some(ImageSlot::Token(_)) => (0..d).map(|j| (1000 * p + j) as f32).collect(),
                Some(&ImageSlot::Feature { level, row, col }) => {
                    let f = row * layout.grids[level][1] + col;
                    (0..d).map(|j| -(((100 * level + f + 1) * 10 + j) as f32)).collect()
                }
                Some(&ImageSlot::Query(k)) => (0..d).map(|j| (500 + 10 * k + j) as f32).collect(),
            };
            assert_eq!(got[p * d..(p + 1) * d], want[..], "position {p} of {layout:?}");
        }
    }
}

fn runner(capacity: usize) -> (Perception, Arc<dyn WeightSource>) {
    let cfg = PerceptionConfig::demo();
    // Weights for every part: build one prefill graph to enumerate them.
    let shape = PerceptionShape {
        vit_hw: [56, 56],
        hr_hw: [64, 64],
        raw_image: Some([40, 48]),
        n_pre: 1,
        n_post: 1,
        capacity,
        dtype: DType::F32,
        seg_queries: 0,
    };
    let g = perception::prefill_graph(&cfg, &shape).unwrap();
    let w: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(&g, 7));
    let rt = Runtime::new(w.clone(), Device::Cpu);
    (Perception::new(cfg, rt, DType::F32, [56, 56], [64, 64], capacity).unwrap(), w)
}

fn image() -> Vec<f32> {
    (0..40 * 48 * 3).map(|i| ((i * 37) % 101) as f32 / 100.0).collect()
}

#[test]
fn cached_decoding_equals_recomputing_the_prefix() {
    let (mut p, _) = runner(64);
    let data = image();
    let img = Image { h: 40, w: 48, data: &data };
    let (before, after) = (vec![5, 6, 7], vec![8, 9]);
    // Sampled at temperature 1 with no cut (drawn on the host from each step's logits), so the
    // tokens vary and every step's logits matter (greedy tokens on random weights repeat).
    let params = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 3 };
    let g = p.generate(&img, &before, &after, &params, 6, None, None, false).unwrap();
    assert_eq!(g.tokens.len(), 6);
    let distinct: std::collections::BTreeSet<_> = g.tokens.iter().collect();
    assert!(distinct.len() > 2, "{:?}", g.tokens);
    // Reference: a fresh prefill over prompt + tokens so far, no cache reuse, the same draws.
    let vocab = p.config().llm.vocab_size;
    let span = p.image_ids();
    assert_eq!(span.len(), p.image_tokens());
    let mut sampler = Sampler::new(params.clone()).unwrap();
    for k in 0..6 {
        let mut post = after.clone();
        post.extend_from_slice(&g.tokens[..k]);
        let len = before.len() + span.len() + post.len();
        let ids: Vec<i64> = [&before[..], &span, &post].concat().iter().map(|&t| t as i64).collect();
        let pos: Vec<i64> = (0..len as i64).collect();
        let plan = p.prefill_plan([40, 48], before.len(), post.len()).unwrap();
        let it = Tensor::from_f32(DType::F32, [1, 40, 48, 3], &data).unwrap();
        plan.set_input("image", &it.view()).unwrap();
        plan.set_input("input_ids", &Tensor::from_i64(DType::I32, [len], &ids).unwrap().view()).unwrap();
        plan.set_input("positions", &Tensor::from_i64(DType::I32, [len], &pos).unwrap().view()).unwrap();
        plan.execute().unwrap();
        let l =
            focus_kernels::cpu::common::f32_in(&plan.output("logits").unwrap())[(len - 1) * vocab..].to_vec();
        assert_eq!(sampler.sample(&l, &Allowed::All).unwrap() as u32, g.tokens[k], "step {k}");
    }
    // Same request again: same tokens (the cache is rewritten from position 0).
    let g2 = p.generate(&img, &before, &after, &params, 6, None, None, false).unwrap();
    assert_eq!(g.tokens, g2.tokens);
}

struct Window;
impl Constraint for Window {
    fn allowed(&mut self, generated: &[usize]) -> Allowed {
        if generated.len() < 3 {
            Allowed::Range(100, 110)
        } else {
            Allowed::Set(vec![42])
        }
    }
}

/// The same allowed ids as a range (greedy steps pick on the device head) or as an explicit
/// set (the host samples the copied logits).
struct Ids(usize, usize, bool);
impl Constraint for Ids {
    fn allowed(&mut self, _: &[usize]) -> Allowed {
        if self.2 {
            Allowed::Set((self.0..self.1).collect())
        } else {
            Allowed::Range(self.0, self.1)
        }
    }
}

#[test]
fn tokens_drawn_on_the_device_head_equal_host_sampling() {
    let (mut p, _) = runner(48);
    let data = image();
    let img = Image { h: 40, w: 48, data: &data };
    let greedy = SamplingParams::default();
    let sampled = |top_k, top_p, seed| SamplingParams { temperature: 1.5, top_k, top_p, seed };
    for (params, (lo, hi)) in [
        (greedy.clone(), (0, 512)),
        (greedy.clone(), (100, 300)),
        (greedy.clone(), (7, 8)),
        (sampled(50, 1.0, 1), (0, 512)),
        (sampled(256, 0.9, 2), (0, 512)),
        (sampled(5, 0.5, 3), (200, 260)),
        (sampled(3, 1.0, 4), (9, 11)),
    ] {
        let mut run = |as_set| {
            let g = p.generate(&img, &[3, 4], &[5], &params, 8, None, Some(&mut Ids(lo, hi, as_set)), false);
            g.unwrap().tokens
        };
        let (device, host) = (run(false), run(true));
        assert_eq!(device, host, "{params:?} allowed {lo}..{hi}");
        assert!(device.iter().all(|&t| (lo..hi).contains(&(t as usize))), "{device:?}");
    }
    let e =
        p.generate(&img, &[3], &[5], &greedy, 3, None, Some(&mut Ids(600, 700, false)), false).unwrap_err();
    assert!(matches!(e, PerceptionError::Sample(SampleError::NothingAllowed(512))), "{e}");
}

#[test]
fn constraints_stop_tokens_and_bad_requests() {
    let (mut p, _) = runner(48);
    let data = image();
    let img = Image { h: 40, w: 48, data: &data };
    let sp = SamplingParams { temperature: 0.9, top_k: 5, top_p: 0.9, seed: 3 };
    let g = p.generate(&img, &[1], &[2], &sp, 6, Some(42), Some(&mut Window), false).unwrap();
    assert!(g.tokens[..3].iter().all(|t| (100..110).contains(t)), "{:?}", g.tokens);
    assert_eq!(g.tokens[3..], [42], "stops right after the stop token");

    let e = p.generate(&img, &[1; 20], &[2], &sp, 20, None, None, false).unwrap_err();
    assert!(matches!(e, PerceptionError::TooLong { capacity: 48, .. }), "{e}");
    let e = p.generate(&img, &[1], &[600], &sp, 2, None, None, false).unwrap_err();
    assert!(matches!(e, PerceptionError::TokenOutOfRange { id: 600, vocab: 512 }), "{e}");
    let short = &data[..100];
    let e =
        p.generate(&Image { h: 40, w: 48, data: short }, &[1], &[2], &sp, 2, None, None, false).unwrap_err();
    assert!(e.to_string().contains("100 values"), "{e}");
    let e = p.generate(&Image { h: 0, w: 48, data: &[] }, &[1], &[2], &sp, 2, None, None, false).unwrap_err();
    assert!(matches!(e, PerceptionError::Image(_)), "{e}");
}

#[test]
fn generated_image_blocks_follow_the_grammar() {
    use focus_pipeline::image_tokens::{ImageGrammar, ImageVocab};
    let (mut p, _) = runner(64);
    let data = image();
    let img = Image { h: 40, w: 48, data: &data };
    // A small stand-in for the ILLUME+ layout, inside the demo vocabulary.
    let vocab = ImageVocab {
        start_of_image: 10,
        end_of_image: 11,
        end_of_line: 12,
        start_of_level: [13, 15],
        end_of_level: [14, 16],
        code_base: [100, 200],
        codes: [50, 100],
    };
    let mut g = ImageGrammar { vocab, grids: [(2, 2), (2, 3)] };
    let n = g.len();
    let sp = SamplingParams { temperature: 1.0, top_k: 20, top_p: 1.0, seed: 9 };
    let out = p.generate(&img, &[1, 2], &[3], &sp, n, None, Some(&mut g), false).unwrap();
    let toks: Vec<usize> = out.tokens.iter().map(|&t| t as usize).collect();
    let [sem, pix] = g.parse(&toks).unwrap();
    assert_eq!((sem.len(), pix.len()), (4, 6));
    assert!(sem.iter().all(|&c| c < 50) && pix.iter().all(|&c| c < 100));
}

/// A test-size checkpoint directory of its own for one test.
fn checkpoint_dir(tag: &str, vocab: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("focus-chat-{}-{tag}-{vocab}", std::process::id()));
    focus_pipeline::chat::write_test_checkpoint(&dir, vocab, 5).unwrap();
    dir
}

#[test]
fn chat_with_a_checkpoint_directory_decodes_as_recomputing_from_scratch() {
    let dir = checkpoint_dir("decode", 24);
    let mut chat = focus_pipeline::Chat::open(&dir, Device::Cpu, DType::F32, 64).unwrap();
    let (prompt, end) = chat_text(chat.tokenizer(), "you are helpful", "describe the image").unwrap();
    // Sampled at temperature 1 with no cut (drawn on the host from the decode step's logits),
    // so the tokens vary and every step's logits matter.
    let params = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 7 };
    let got = chat.generate(&prompt, &params, 12, None).unwrap();
    assert_eq!((got.tokens.len(), got.prompt_tokens), (12, prompt.len()));
    let distinct: std::collections::BTreeSet<_> = got.tokens.iter().collect();
    assert!(distinct.len() > 3, "{:?}", got.tokens);
    // Without a KV cache: the whole sequence through a fresh plan per token, drawn by the same
    // sampler from the last position's logits.
    let cfg = chat.config().clone();
    let w: Arc<dyn WeightSource> = Arc::new(focus_engine::weights::WeightStore::open(&dir).unwrap());
    let mut sampler = Sampler::new(params.clone()).unwrap();
    let mut seq = prompt.clone();
    for _ in 0..12 {
        let o = qwen2::StepOptions::prefill(seq.len(), seq.len(), DType::F32);
        let mut p = compile(&qwen2::step_graph(&cfg, &o).unwrap(), Some(w.clone()), Device::Cpu).unwrap();
        let ids: Vec<i64> = seq.iter().map(|&t| t as i64).collect();
        let pos: Vec<i64> = (0..seq.len() as i64).collect();
        let ids = Tensor::from_i64(DType::I32, [ids.len()], &ids).unwrap();
        let pos = Tensor::from_i64(DType::I32, [pos.len()], &pos).unwrap();
        let logits = p.run(&[("input_ids", &ids), ("positions", &pos)]).unwrap()["logits"].to_f32();
        seq.push(sampler.sample(&logits, &Allowed::All).unwrap() as u32);
    }
    assert_eq!(got.tokens, seq[prompt.len()..]);
    let greedy = SamplingParams { temperature: 0.0, ..SamplingParams::default() };
    // A second turn of another length compiles one more prefill; the reply stops at <|im_end|>.
    let (text, g) = chat.reply("you are helpful", "what is in it", &greedy, 6).unwrap();
    assert!(g.tokens.len() <= 6 && (g.tokens.len() == 6 || g.tokens.last() == Some(&end)), "{:?}", g.tokens);
    assert_eq!(text, chat.tokenizer().decode(&g.tokens, true).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chat_checkpoint_problems_are_named() {
    let dir = checkpoint_dir("errors", 20); // fewer ids than the tokenizer has
    let e = focus_pipeline::Chat::open(&dir, Device::Cpu, DType::F32, 64).err().unwrap().to_string();
    assert!(e.contains("config.json") && e.contains("vocab_size 20"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let dir = checkpoint_dir("errors", 24);
    let e = focus_pipeline::Chat::open(&dir, Device::Cpu, DType::F32, 1000).err().unwrap().to_string();
    assert!(e.contains("1000"), "{e}");
    // A checkpoint without the final norm: the missing tensor is named.
    let store = focus_engine::weights::WeightStore::open(&dir).unwrap();
    let kept: Vec<(String, DType, Vec<usize>, Vec<u8>)> = store
        .names()
        .into_iter()
        .filter(|n| *n != "model.norm.weight")
        .map(|n| {
            let (dt, shape, bytes) = WeightSource::tensor(&store, n).unwrap();
            (n.to_string(), dt, shape.to_vec(), bytes.to_vec())
        })
        .collect();
    drop(store);
    let tensors: Vec<_> =
        kept.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
    focus_engine::weights::save(dir.join("model.safetensors"), &tensors, None).unwrap();
    let e = focus_pipeline::Chat::open(&dir, Device::Cpu, DType::F32, 64).err().unwrap().to_string();
    assert!(e.contains("missing tensor 'model.norm.weight'"), "{e}");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = focus_pipeline::Chat::open(&dir, Device::Cpu, DType::F32, 64).err().unwrap().to_string();
    assert!(e.contains("no .safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = focus_pipeline::Chat::open(&dir, Device::Cpu, DType::F32, 64).err().unwrap().to_string();
    assert!(e.contains("config.json"), "{e}");
}
