//! The perception runner: image + prompt tokens → generated tokens. A prefill plan per prompt
//! shape (built on first use and cached: static graphs), one decode plan that takes the
//! prefill's KV caches over (swapped on a CPU, copied on the device on a GPU), sampling on the
//! device where it can and on the host otherwise, with optional constraints.

use crate::decode::{decode_tokens, hand_over_caches, ids, positions, DecodeRun};
use crate::runtime::Runtime;
use focus_engine::sampling::{Constraint, SampleError, SamplingParams};
use focus_engine::{EngineError, Plan, Profile, Tensor};
use focus_graph::{DType, GraphError};
use focus_models::perception::{self, ImageLayout, PerceptionConfig, PerceptionShape};
use focus_models::qwen2::{self, StepOptions};
use std::collections::HashMap;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PerceptionError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error("prompt of {prompt} tokens plus {new} new tokens exceeds the KV-cache capacity {capacity}")]
    TooLong { prompt: usize, new: usize, capacity: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("image: {0}")]
    Image(String),
}

/// An RGB image, row-major HWC, values in [0, 1].
pub struct Image<'a> {
    pub h: usize,
    pub w: usize,
    pub data: &'a [f32],
}

/// Largest accepted image side.
pub const MAX_IMAGE_SIDE: usize = 8192;

#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    /// Per decode step.
    pub decode_ms: Vec<f64>,
    /// Per-node profile of the prefill, when asked for.
    pub prefill_profile: Option<Profile>,
}

pub struct Perception {
    cfg: PerceptionConfig,
    rt: Runtime,
    dtype: DType,
    vit_hw: [usize; 2],
    hr_hw: [usize; 2],
    capacity: usize,
    /// FOCUS mask tokens appended to every prompt (`PerceptionShape::seg_queries`).
    seg_queries: usize,
    prefills: HashMap<([usize; 2], usize, usize), Plan>,
    decode: Plan,
}

impl Perception {
    /// Encoders run at `vit_hw` / `hr_hw`; the KV cache holds `capacity` positions.
    pub fn new(
        cfg: PerceptionConfig,
        rt: Runtime,
        dtype: DType,
        vit_hw: [usize; 2],
        hr_hw: [usize; 2],
        capacity: usize,
    ) -> Result<Self, PerceptionError> {
        let step = StepOptions::decode(capacity, dtype);
        let decode = rt.compile(&qwen2::step_graph(&cfg.llm, &step)?)?;
        Ok(Perception {
            cfg,
            rt,
            dtype,
            vit_hw,
            hr_hw,
            capacity,
            seg_queries: 0,
            prefills: HashMap::new(),
            decode,
        })
    }

    /// Append `n` mask-token embeddings to every prompt (after `after`); the prefill plan then
    /// also leaves the segmentation decoder's inputs in its `SEG_STATES`.
    pub fn with_seg_queries(mut self, n: usize) -> Self {
        self.seg_queries = n;
        self.prefills.clear();
        self
    }

    pub fn config(&self) -> &PerceptionConfig {
        &self.cfg
    }

    /// Positions the image span takes in the prompt between `before` and `after`.
    pub fn image_tokens(&self) -> usize {
        self.cfg.image_tokens(self.vit_hw)
    }

    /// The image span's layout (ILLUME+ image block with the fused ViT grid, adapter queries).
    pub fn image_layout(&self) -> ImageLayout {
        self.cfg.image_layout(self.vit_hw)
    }

    /// The ids the prompt carries over the image span: the block's structure tokens, and
    /// placeholders where the prefill splices features and queries in.
    pub fn image_ids(&self) -> Vec<u32> {
        self.image_layout().token_ids(&self.cfg.image_token_ids)
    }

    pub fn decode_plan(&self) -> &Plan {
        &self.decode
    }

    /// Every compiled plan: the decode step and the prefills so far.
    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        std::iter::once(&self.decode).chain(self.prefills.values())
    }

    fn check_ids(&self, v: &[u32]) -> Result<(), PerceptionError> {
        let vocab = self.cfg.llm.vocab_size;
        match v.iter().find(|&&id| id as usize >= vocab) {
            Some(&id) => Err(PerceptionError::TokenOutOfRange { id, vocab }),
            None => Ok(()),
        }
    }

    /// The prefill plan for this image size and prompt split (compiled on first use).
    pub fn prefill_plan(
        &mut self,
        image_hw: [usize; 2],
        n_pre: usize,
        n_post: usize,
    ) -> Result<&mut Plan, PerceptionError> {
        let key = (image_hw, n_pre, n_post);
        if !self.prefills.contains_key(&key) {
            let shape = PerceptionShape {
                vit_hw: self.vit_hw,
                hr_hw: self.hr_hw,
                raw_image: Some(image_hw),
                n_pre,
                n_post,
                capacity: self.capacity,
                dtype: self.dtype,
                seg_queries: self.seg_queries,
            };
            let g = perception::prefill_graph(&self.cfg, &shape)?;
            let mut plan = self.rt.compile(&g)?;
            // The segmentation decoder's inputs stay on the device (read back only on a CPU).
            plan.copy_outputs(Some(&["hidden", "logits"]))?;
            self.prefills.insert(key, plan);
        }
        Ok(self.prefills.get_mut(&key).expect("inserted above"))
    }

    /// Generate up to `max_new` tokens after `before` + image span ([`Self::image_ids`]) +
    /// `after`, stopping after `stop`.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &mut self,
        image: &Image,
        before: &[u32],
        after: &[u32],
        params: &SamplingParams,
        max_new: usize,
        stop: Option<u32>,
        constraint: Option<&mut dyn Constraint>,
        profile: bool,
    ) -> Result<Generation, PerceptionError> {
        if image.h == 0 || image.w == 0 || image.h > MAX_IMAGE_SIDE || image.w > MAX_IMAGE_SIDE {
            return Err(PerceptionError::Image(format!(
                "{}x{} outside 1..={MAX_IMAGE_SIDE} per side",
                image.w, image.h
            )));
        }
        if image.data.len() != image.h * image.w * 3 {
            return Err(PerceptionError::Image(format!(
                "{} values for a {}x{} RGB image (expected {})",
                image.data.len(),
                image.w,
                image.h,
                image.h * image.w * 3
            )));
        }
        let span = self.image_ids();
        self.check_ids(before)?;
        self.check_ids(&span)?;
        self.check_ids(after)?;
        let len = before.len() + span.len() + after.len() + self.seg_queries;
        if len + max_new > self.capacity {
            return Err(PerceptionError::TooLong { prompt: len, new: max_new, capacity: self.capacity });
        }
        let prompt = [before, &span, after].concat();
        let layers = self.cfg.llm.num_hidden_layers;
        let vocab = self.cfg.llm.vocab_size;

        let key = ([image.h, image.w], before.len(), after.len());
        self.prefill_plan(key.0, key.1, key.2)?;
        // Disjoint field borrows: the prefill plan and the decode plan trade KV caches below.
        let plan = self.prefills.get_mut(&key).expect("compiled above");
        let img = Tensor::from_f32(DType::F32, [1, image.h, image.w, 3], image.data)?;
        plan.set_input("image", &img.view())?;
        plan.set_input("input_ids", &ids(&prompt)?.view())?;
        plan.set_input("positions", &positions(0, len)?.view())?;
        let t = Instant::now();
        let prefill_profile =
            if profile { Some(plan.execute_profiled()?) } else { plan.execute().map(|_| None)? };
        plan.wait()?;
        let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
        let logits =
            focus_kernels::cpu::common::f32_in(&plan.output("logits")?)[(len - 1) * vocab..].to_vec();
        hand_over_caches(&mut self.decode, plan, layers)?;
        let run = DecodeRun { logits, start: len, vocab, params, max_new, stop, constraint };
        let (tokens, decode_ms) = decode_tokens(&mut self.decode, run)?;
        Ok(Generation { tokens, prompt_tokens: len, prefill_ms, decode_ms, prefill_profile })
    }
}
