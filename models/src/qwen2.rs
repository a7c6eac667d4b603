//! Qwen2 / Qwen2.5 decoder-only LLM (spec §2): one graph per step size with a static KV cache.
//!
//! A step takes `T` tokens at positions `positions [T]` (consecutive, starting at the cache
//! position), appends their keys/values to the per-layer cache states `[1, C, Hkv, D]` in place,
//! and attends over the cache with a mask `key j visible to query t iff j <= positions[t]`,
//! built in the graph. Prefill is a step with the whole prompt; decode is a step with `T = 1`,
//! the same graph every token (so it can be captured once on GPU).

use crate::common::param;
use focus_graph::{CmpOp, DType, Graph, GraphBuilder, NodeId, Result, RopeKind, UnaryOp};
use serde::Deserialize;

/// The `config.json` fields of a Qwen2 checkpoint that the graph needs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_theta() -> f32 {
    1_000_000.0
}
fn default_true() -> bool {
    true
}
fn default_max_pos() -> usize {
    32768
}

impl Qwen2Config {
    /// Qwen2.5-3B (spec §2.1).
    pub fn qwen25_3b() -> Self {
        Qwen2Config {
            vocab_size: 151936,
            hidden_size: 2048,
            intermediate_size: 11008,
            num_hidden_layers: 36,
            num_attention_heads: 16,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            tie_word_embeddings: true,
            head_dim: None,
            max_position_embeddings: 32768,
        }
    }

    /// Parse a HF `config.json`, checking the fields are consistent.
    pub fn from_json(s: &str) -> std::result::Result<Self, String> {
        let c: Qwen2Config = serde_json::from_str(s).map_err(|e| format!("invalid Qwen2 config: {e}"))?;
        c.validate()?;
        Ok(c)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let (h, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if h == 0 || kv == 0 || h % kv != 0 {
            return Err(format!(
                "num_attention_heads {h} must be a positive multiple of num_key_value_heads {kv}"
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(h) {
            return Err(format!("hidden_size {} not divisible by {h} heads", self.hidden_size));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("head_dim {} must be even for RoPE", self.head_dim()));
        }
        if self.vocab_size == 0 || self.num_hidden_layers == 0 || self.intermediate_size == 0 {
            return Err("vocab_size, num_hidden_layers and intermediate_size must be positive".into());
        }
        Ok(())
    }
}

/// How a step graph is built.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// Tokens processed by this step.
    pub tokens: usize,
    /// KV-cache capacity (positions), fixed for the plan.
    pub capacity: usize,
    pub dtype: DType,
    /// Output logits for every position (parity checks) instead of only the last one.
    pub all_logits: bool,
    /// Take `inputs_embeds [T, hidden]` instead of `input_ids` (image features spliced in).
    pub embeds_input: bool,
    /// Also pick the next token on the device (see `token_head`).
    pub next_token: bool,
}

impl StepOptions {
    /// `tokens` input ids through a cache of `capacity` positions: the last position's logits.
    pub fn prefill(tokens: usize, capacity: usize, dtype: DType) -> Self {
        StepOptions { tokens, capacity, dtype, all_logits: false, embeds_input: false, next_token: false }
    }

    /// One token per step, picked on the device by the token head.
    pub fn decode(capacity: usize, dtype: DType) -> Self {
        StepOptions { next_token: true, ..Self::prefill(1, capacity, dtype) }
    }
}

pub fn k_cache_name(layer: usize) -> String {
    format!("kv.{layer}.k")
}
pub fn v_cache_name(layer: usize) -> String {
    format!("kv.{layer}.v")
}

/// The token-embedding table (also the tied LM head).
pub fn embed_table(b: &mut GraphBuilder, c: &Qwen2Config, dt: DType) -> Result<NodeId> {
    param(b, "model.embed_tokens.weight", dt, [c.vocab_size, c.hidden_size])
}

/// Build one step graph. Inputs: `input_ids` i32 `[T]` (or `inputs_embeds`), `positions` i32
/// `[T]`. Outputs: `logits` f32 `[1, V]` (or `[T, V]` with `all_logits`) and `hidden`
/// `[T, hidden]` (final-norm hidden states).
pub fn step_graph(c: &Qwen2Config, o: &StepOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let embed = embed_table(&mut b, c, o.dtype)?;
    let x = if o.embeds_input {
        b.input("inputs_embeds", o.dtype, [o.tokens, c.hidden_size])?
    } else {
        let ids = b.input("input_ids", DType::I32, [o.tokens])?;
        b.embedding(embed, ids)?
    };
    let pos = b.input("positions", DType::I32, [o.tokens])?;
    let (hidden, logits) = build_step(&mut b, c, o, x, pos)?;
    b.output("hidden", hidden)?;
    b.output("logits", logits)?;
    if o.next_token {
        let t = b.shape(logits)[0];
        let last = b.slice(logits, 0, t - 1, t)?;
        let (token, nan) = b.scoped("next_token", |b| token_head(b, last))?;
        b.output("next_token", token)?;
        b.output("nan_logits", nan)?;
    }
    b.finish()
}

/// Most candidates the device token head draws from: `top_k` up to this (or greedy) picks on
/// the device; larger cuts and no cut sample the logits on the host.
pub const DEVICE_TOP_K: usize = 256;

/// The token pick on the device, so a decode step returns 8 bytes instead of the logits.
/// Inputs: `allowed [2] i32` = `[lo, hi)`, the ids a constraint allows, and `sampling [1, 5]`
/// f32 = (temperature, top_k, top_p, u_hi, u_lo) as `Op::SampleSorted` reads them. Outputs:
/// `next_token [1] i64` — the top `DEVICE_TOP_K` allowed logits (descending, ties to the lower
/// id) drawn as the host sampler draws (greedy: the argmax), -1 if none is allowed — and
/// `nan_logits [1] f32`, the count of NaN logits, so a broken model is an error, not a token.
pub fn token_head(b: &mut GraphBuilder, logits: NodeId) -> Result<(NodeId, NodeId)> {
    let v = b.shape(logits)[1];
    let allowed = b.input("allowed", DType::I32, [2])?;
    let ids: Vec<i32> = (0..v as i32).collect();
    let ids = b.constant_i32([1, v], &ids)?;
    let lo = b.slice(allowed, 0, 0, 1)?;
    let hi = b.slice(allowed, 0, 1, 2)?;
    let ge = b.compare(CmpOp::Ge, ids, lo)?;
    let lt = b.compare(CmpOp::Lt, ids, hi)?;
    let ninf = b.constant_f32([1], &[f32::NEG_INFINITY])?;
    let masked = b.where_(lt, logits, ninf)?;
    let masked = b.where_(ge, masked, ninf)?;
    let top = b.top_k(masked, DEVICE_TOP_K.min(v), -1)?;
    let values = b.take_along_axis(masked, top, -1)?;
    let params = b.input("sampling", DType::F32, [1, 5])?;
    let token = b.sample_sorted(values, top, params)?;
    let nan = b.compare(CmpOp::Ne, logits, logits)?;
    let nan = b.cast(nan, DType::F32)?;
    let nan = b.reduce(focus_graph::ReduceOp::Sum, nan, &[1], false)?;
    Ok((token, nan))
}

/// The decoder on embeddings `x [T, hidden]` at `positions [T]`, reading and appending to the
/// KV-cache states: returns (final-norm hidden states, f32 logits).
pub fn build_step(
    b: &mut GraphBuilder,
    c: &Qwen2Config,
    o: &StepOptions,
    mut x: NodeId,
    pos: NodeId,
) -> Result<(NodeId, NodeId)> {
    let dt = o.dtype;
    let (t, cap) = (o.tokens, o.capacity);
    let (hid, nh, nkv, hd) = (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim());
    let embed = embed_table(b, c, dt)?;
    let start = b.slice(pos, 0, 0, 1)?;
    // Visibility mask [1, 1, T, C]: key j is visible to query t iff j <= positions[t].
    let mask = b.scoped("mask", |b| {
        let keys: Vec<i32> = (0..cap as i32).collect();
        let keys = b.constant_i32([1, cap], &keys)?;
        let q = b.reshape(pos, [t, 1])?;
        let m = b.compare(CmpOp::Le, keys, q)?;
        b.reshape(m, [1, 1, t, cap])
    })?;
    let scale = 1.0 / (hd as f32).sqrt();
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}.");
        b.push_scope(format!("layers.{l}"));
        let w = param(b, &format!("{p}input_layernorm.weight"), dt, [hid])?;
        let h = b.rms_norm(x, w, c.rms_norm_eps)?;
        // q, k and v as one op writing three blocks, each then read in place (a view).
        let (mut ws, mut bs) = (Vec::new(), Vec::new());
        for (name, heads) in [("q_proj", nh), ("k_proj", nkv), ("v_proj", nkv)] {
            ws.push(param(b, &format!("{p}self_attn.{name}.weight"), dt, [heads * hd, hid])?);
            bs.push(param(b, &format!("{p}self_attn.{name}.bias"), dt, [heads * hd])?);
        }
        let qkv = b.scoped("qkv_proj", |b| b.multi_linear(h, &ws, Some(&bs)))?;
        let mut at = 0;
        let mut part = |b: &mut GraphBuilder, heads: usize| -> Result<NodeId> {
            let y = b.slice(qkv, 0, at, at + t * heads * hd)?;
            at += t * heads * hd;
            b.reshape(y, [1, t, heads, hd])
        };
        let q = part(b, nh)?;
        let k = part(b, nkv)?;
        let v = part(b, nkv)?;
        let q = b.rope(q, pos, RopeKind::OneD, c.rope_theta)?;
        let k = b.rope(k, pos, RopeKind::OneD, c.rope_theta)?;
        let kc = b.state(&k_cache_name(l), dt, [1, cap, nkv, hd])?;
        let vc = b.state(&v_cache_name(l), dt, [1, cap, nkv, hd])?;
        let kc = b.write_slice(kc, k, start, 1)?;
        let vc = b.write_slice(vc, v, start, 1)?;
        let a = b.attention(q, kc, vc, Some(mask), false, scale)?;
        let a = b.reshape(a, [t, nh * hd])?;
        let wo = param(b, &format!("{p}self_attn.o_proj.weight"), dt, [hid, nh * hd])?;
        let a = b.scoped("o_proj", |b| b.linear(a, wo, None))?;
        x = b.add(x, a)?;
        let w = param(b, &format!("{p}post_attention_layernorm.weight"), dt, [hid])?;
        let h = b.rms_norm(x, w, c.rms_norm_eps)?;
        let inter = c.intermediate_size;
        let wg = param(b, &format!("{p}mlp.gate_proj.weight"), dt, [inter, hid])?;
        let wu = param(b, &format!("{p}mlp.up_proj.weight"), dt, [inter, hid])?;
        let wd = param(b, &format!("{p}mlp.down_proj.weight"), dt, [hid, inter])?;
        let m = b.scoped("mlp", |b| {
            let gu = b.gated_linear(h, (wg, wu), None, UnaryOp::Silu)?;
            b.linear(gu, wd, None)
        })?;
        x = b.add(x, m)?;
        b.pop_scope();
    }
    let w = param(b, "model.norm.weight", dt, [hid])?;
    let hidden = b.rms_norm(x, w, c.rms_norm_eps)?;
    let head =
        if c.tie_word_embeddings { embed } else { param(b, "lm_head.weight", dt, [c.vocab_size, hid])? };
    let last = if o.all_logits { hidden } else { b.slice(hidden, 0, t - 1, t)? };
    let logits = b.scoped("lm_head", |b| b.linear(last, head, None))?;
    let logits = b.cast(logits, DType::F32)?;
    Ok((hidden, logits))
}
