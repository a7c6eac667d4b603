//! Text handling and the perception runner: chat template with special tokens, KV-cache
//! decoding equal to recomputing the whole prefix, constraints, and clear errors.

use focus_engine::sampling::{Allowed, Constraint, SamplingParams};
use focus_engine::{Device, MemoryWeights, Tensor, WeightSource};
use focus_graph::DType;
use focus_models::perception::{self, PerceptionConfig, PerceptionShape};
use focus_pipeline::perception::{Image, PerceptionError};
use focus_pipeline::text::{chat_prompt, TextError, Tokenizer};
use focus_pipeline::Perception;
use std::sync::Arc;

/// A word-level tokenizer.json with the Qwen chat special tokens.
fn tokenizer() -> Tokenizer {
    let words = [
        "[UNK]",
        "system",
        "user",
        "assistant",
        "you",
        "are",
        "helpful",
        "describe",
        "the",
        "image",
        "what",
        "is",
        "in",
        "it",
    ];
    let specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];
    let mut vocab: Vec<String> = words.iter().enumerate().map(|(i, w)| format!("\"{w}\": {i}")).collect();
    let mut added = Vec::new();
    for (k, s) in specials.iter().enumerate() {
        let id = words.len() + k;
        vocab.push(format!("\"{s}\": {id}"));
        added.push(format!(
            r#"{{"id": {id}, "content": "{s}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#
        ));
    }
    let json = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [{}],
            "normalizer": {{"type": "Lowercase"}}, "pre_tokenizer": {{"type": "Whitespace"}},
            "post_processor": null, "decoder": null,
            "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "[UNK]"}}}}"#,
        added.join(", "),
        vocab.join(", ")
    );
    Tokenizer::from_json(&json).unwrap()
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
    };
    let g = perception::prefill_graph(&cfg, &shape).unwrap();
    let w: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(&g, 7));
    (Perception::new(cfg, w.clone(), Device::Cpu, DType::F32, [56, 56], [64, 64], capacity).unwrap(), w)
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
    let g = p.generate(&img, &before, &after, &SamplingParams::default(), 4, None, None, false).unwrap();
    assert_eq!(g.tokens.len(), 4);
    // Reference: a fresh prefill over prompt + tokens so far, no cache reuse.
    let vocab = p.config().llm.vocab_size;
    let nimg = p.image_tokens();
    for k in 0..3 {
        let mut post = after.clone();
        post.extend_from_slice(&g.tokens[..=k]);
        let len = before.len() + nimg + post.len();
        let mut ids: Vec<i64> = before.iter().map(|&t| t as i64).collect();
        ids.extend(std::iter::repeat_n(0, nimg));
        ids.extend(post.iter().map(|&t| t as i64));
        let pos: Vec<i64> = (0..len as i64).collect();
        let plan = p.prefill_plan([40, 48], before.len(), post.len()).unwrap();
        let it = Tensor::from_f32(DType::F32, [1, 40, 48, 3], &data).unwrap();
        plan.set_input("image", &it.view()).unwrap();
        plan.set_input("input_ids", &Tensor::from_i64(DType::I32, [len], &ids).unwrap().view()).unwrap();
        plan.set_input("positions", &Tensor::from_i64(DType::I32, [len], &pos).unwrap().view()).unwrap();
        plan.execute().unwrap();
        let l =
            focus_kernels::cpu::common::f32_in(&plan.output("logits").unwrap())[(len - 1) * vocab..].to_vec();
        let best = l.iter().enumerate().fold(0, |b, (i, &v)| if v > l[b] { i } else { b });
        assert_eq!(best as u32, g.tokens[k + 1], "step {k}");
    }
    // Same request again: same tokens (the cache is rewritten from position 0).
    let g2 = p.generate(&img, &before, &after, &SamplingParams::default(), 4, None, None, false).unwrap();
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
