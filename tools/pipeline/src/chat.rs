//! Text chat with a Qwen2.5 checkpoint directory in the Hugging Face layout (`config.json`,
//! `tokenizer.json`, `model.safetensors` or a sharded index): the Instruct template, a prefill
//! plan per prompt length (compiled once, `PlanCache`), the shared KV-cache decode loop.

use crate::decode::{decode_tokens, hand_over_caches, ids, positions, DecodeRun};
use crate::perception::{Generation, PerceptionError};
use crate::runtime::Runtime;
use crate::text::{chat_text, TextError, Tokenizer, IMAGE_STRUCTURE_TOKENS};
use focus_engine::sampling::SamplingParams;
use focus_engine::weights::WeightStore;
use focus_engine::{Device, EngineError, MemoryWeights, Plan, PlanCache, WeightSource};
use focus_graph::{DType, GraphError};
use focus_models::qwen2::{self, Qwen2Config, StepOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ChatError {
    #[error("{path}: {detail}")]
    Checkpoint { path: String, detail: String },
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Run(#[from] PerceptionError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Weights(#[from] focus_engine::weights::WeightError),
}

/// A word-level `tokenizer.json` with the Qwen chat and ILLUME+ image-structure special
/// tokens and a few lowercase words: what the tests (and a smoke run of `focus chat`) use in
/// place of Qwen's 151k-token vocabulary.
pub fn test_tokenizer_json() -> String {
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
    let mut specials = vec!["<|im_start|>", "<|im_end|>", "<|endoftext|>"];
    specials.extend(IMAGE_STRUCTURE_TOKENS);
    let mut vocab: Vec<String> = words.iter().enumerate().map(|(i, w)| format!("\"{w}\": {i}")).collect();
    let mut added = Vec::new();
    for (k, s) in specials.iter().enumerate() {
        let id = words.len() + k;
        vocab.push(format!("\"{s}\": {id}"));
        added.push(format!(
            r#"{{"id": {id}, "content": "{s}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#
        ));
    }
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [{}],
            "normalizer": {{"type": "Lowercase"}}, "pre_tokenizer": {{"type": "Whitespace"}},
            "post_processor": null, "decoder": null,
            "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "[UNK]"}}}}"#,
        added.join(", "),
        vocab.join(", ")
    )
}

/// Write a Qwen2.5-architecture checkpoint directory at test size into `dir`: a `config.json`
/// with `vocab` ids (2 layers, 64 wide), [`test_tokenizer_json`], and seeded random weights in
/// `model.safetensors`.
pub fn write_test_checkpoint(dir: &Path, vocab: usize, seed: u64) -> Result<(), ChatError> {
    let io =
        |e: std::io::Error| ChatError::Checkpoint { path: dir.display().to_string(), detail: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    let config = format!(
        r#"{{"architectures": ["Qwen2ForCausalLM"], "vocab_size": {vocab}, "hidden_size": 64,
            "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": true, "max_position_embeddings": 256}}"#
    );
    std::fs::write(dir.join("config.json"), &config).map_err(io)?;
    std::fs::write(dir.join("tokenizer.json"), test_tokenizer_json()).map_err(io)?;
    let cfg = Qwen2Config::from_json(&config)
        .map_err(|detail| ChatError::Checkpoint { path: dir.display().to_string(), detail })?;
    let step = StepOptions::prefill(1, 8, DType::F32);
    let w = MemoryWeights::random_for(&qwen2::step_graph(&cfg, &step)?, seed);
    focus_engine::weights::save(dir.join("model.safetensors"), &w.sorted(), None)?;
    Ok(())
}

pub struct Chat {
    cfg: Qwen2Config,
    dtype: DType,
    device: Device,
    capacity: usize,
    tokenizer: Tokenizer,
    prefills: PlanCache,
    decode: Plan,
}

impl Chat {
    /// Open the checkpoint in `dir` on `device`, storing in `dtype`, with a KV cache of
    /// `capacity` positions (prompt plus reply).
    pub fn open(dir: &Path, device: Device, dtype: DType, capacity: usize) -> Result<Self, ChatError> {
        let bad = |p: &Path, detail: String| ChatError::Checkpoint { path: p.display().to_string(), detail };
        let config = dir.join("config.json");
        let json = std::fs::read_to_string(&config).map_err(|e| bad(&config, e.to_string()))?;
        let cfg = Qwen2Config::from_json(&json).map_err(|e| bad(&config, e))?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(bad(
                &config,
                format!(
                    "vocab_size {} is smaller than the tokenizer's {}",
                    cfg.vocab_size,
                    tokenizer.vocab_size()
                ),
            ));
        }
        if capacity == 0 || capacity > cfg.max_position_embeddings {
            return Err(bad(
                &config,
                format!("a KV cache of {capacity} positions (1..={})", cfg.max_position_embeddings),
            ));
        }
        let weights: Arc<dyn WeightSource> = Arc::new(WeightStore::open(dir)?);
        let rt = Runtime::new(weights.clone(), device);
        let step = StepOptions::decode(capacity, dtype);
        let decode = rt.compile(&qwen2::step_graph(&cfg, &step)?)?;
        let prefills = PlanCache::new(Some(weights)).with_arena(rt.arena.clone());
        Ok(Chat { cfg, dtype, device, capacity, tokenizer, prefills, decode })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn config(&self) -> &Qwen2Config {
        &self.cfg
    }

    /// Up to `max_new` tokens after `prompt` (token ids), stopping after `stop`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        max_new: usize,
        stop: Option<u32>,
    ) -> Result<Generation, ChatError> {
        let vocab = self.cfg.vocab_size;
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(PerceptionError::TokenOutOfRange { id, vocab }.into());
        }
        let len = prompt.len();
        if len == 0 || len + max_new > self.capacity {
            return Err(
                PerceptionError::TooLong { prompt: len, new: max_new, capacity: self.capacity }.into()
            );
        }
        let step = StepOptions::prefill(len, self.capacity, self.dtype);
        let plan = self.prefills.plan(&qwen2::step_graph(&self.cfg, &step)?, self.device)?;
        plan.set_input("input_ids", &ids(prompt)?.view())?;
        plan.set_input("positions", &positions(0, len)?.view())?;
        let t = Instant::now();
        plan.execute()?;
        plan.wait()?;
        let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
        let logits = focus_kernels::cpu::common::f32_in(&plan.output("logits")?).into_owned();
        hand_over_caches(&mut self.decode, plan, self.cfg.num_hidden_layers)?;
        let run = DecodeRun { logits, start: len, vocab, params, max_new, stop, constraint: None };
        let (tokens, decode_ms) = decode_tokens(&mut self.decode, run)?;
        Ok(Generation { tokens, prompt_tokens: len, prefill_ms, decode_ms, prefill_profile: None })
    }

    /// Answer `user` after `system` in the Instruct format: the reply's text (special tokens
    /// skipped) and the generation, stopping at `<|im_end|>`.
    pub fn reply(
        &mut self,
        system: &str,
        user: &str,
        params: &SamplingParams,
        max_new: usize,
    ) -> Result<(String, Generation), ChatError> {
        let (prompt, end) = chat_text(&self.tokenizer, system, user)?;
        let g = self.generate(&prompt, params, max_new, Some(end))?;
        Ok((self.tokenizer.decode(&g.tokens, true)?, g))
    }
}
