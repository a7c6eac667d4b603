//! The Qwen2 decode loop shared by the runners: hand the prefill's KV caches to the decode
//! plan, then sample token by token (on the device where the sampler allows it).

use crate::perception::PerceptionError;
use focus_engine::sampling::{Allowed, Constraint, SampleError, Sampler, SamplingParams};
use focus_engine::{Device, EngineError, Plan, Tensor};
use focus_graph::DType;
use focus_models::qwen2;
use std::time::Instant;

pub(crate) fn ids(v: &[u32]) -> Result<Tensor, EngineError> {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Tensor::from_i64(DType::I32, [v.len()], &v)
}

pub(crate) fn positions(start: usize, n: usize) -> Result<Tensor, EngineError> {
    let v: Vec<i64> = (start as i64..(start + n) as i64).collect();
    Tensor::from_i64(DType::I32, [n], &v)
}

/// Give `decode` the KV caches `prefill` just filled. On a GPU by device-to-device copies
/// (microseconds): a swap would plan both plans' launches again, the whole prefill's included,
/// and drop the decode step's CUDA graph. On a CPU swapping the buffers is the cheaper.
pub(crate) fn hand_over_caches(
    decode: &mut Plan,
    prefill: &mut Plan,
    layers: usize,
) -> Result<(), EngineError> {
    let names: Vec<String> =
        (0..layers).flat_map(|l| [qwen2::k_cache_name(l), qwen2::v_cache_name(l)]).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if matches!(decode.device(), Device::Cuda(_)) {
        for name in &names {
            decode.copy_state_from(prefill, name)?;
        }
    } else {
        decode.swap_states(prefill, &names)?;
    }
    // On a GPU the decode step replays one CUDA graph per token, captured once.
    if !decode.has_graph() {
        decode.capture_graph()?;
    }
    Ok(())
}

/// What the decode loop needs besides the plan.
pub(crate) struct DecodeRun<'a, 'c> {
    /// The prefill's logits at the prompt's last position.
    pub logits: Vec<f32>,
    /// Prompt length: the position of the first generated token.
    pub start: usize,
    pub vocab: usize,
    pub params: &'a SamplingParams,
    pub max_new: usize,
    pub stop: Option<u32>,
    pub constraint: Option<&'c mut dyn Constraint>,
}

/// Sample up to `max_new` tokens from `run.logits` on, feeding each back through `decode`
/// (a `qwen2::step_graph` with `next_token`). Steps whose constraint is a range, greedy or with
/// top_k up to `qwen2::DEVICE_TOP_K`, pick their token on the device (the graph's token head,
/// drawing with this sampler's next uniform) and copy back 8 bytes instead of the logits.
/// Returns the tokens and each decode step's milliseconds.
pub(crate) fn decode_tokens(
    decode: &mut Plan,
    run: DecodeRun,
) -> Result<(Vec<u32>, Vec<f64>), PerceptionError> {
    let DecodeRun { logits, start, vocab, params, max_new, stop, mut constraint } = run;
    let mut sampler = Sampler::new(params.clone())?;
    let greedy = params.temperature == 0.0 || params.top_k == 1;
    let device_draw = greedy || (1..=qwen2::DEVICE_TOP_K).contains(&params.top_k);
    let mut allowed_for = |tokens: &[u32]| match constraint.as_deref_mut() {
        Some(c) => c.allowed(&tokens.iter().map(|&t| t as usize).collect::<Vec<_>>()),
        None => Allowed::All,
    };
    let mut tokens: Vec<u32> = Vec::new();
    let mut decode_ms = Vec::new();
    let mut allowed = allowed_for(&tokens);
    let mut picked: Option<usize> = None;
    let mut next_logits = logits;
    while tokens.len() < max_new {
        let tok = match picked.take() {
            Some(t) => t as u32,
            None => sampler.sample(&next_logits, &allowed)? as u32,
        };
        tokens.push(tok);
        if Some(tok) == stop || tokens.len() == max_new {
            break;
        }
        allowed = allowed_for(&tokens);
        let range = match &allowed {
            Allowed::All => Some((0, vocab)),
            Allowed::Range(a, b) => Some(((*a).min(vocab), (*b).min(vocab))),
            Allowed::Set(_) => None,
        };
        let on_device = device_draw && range.is_some();
        if let Some((lo, hi)) = range.filter(|_| on_device) {
            if lo >= hi {
                return Err(SampleError::NothingAllowed(vocab).into());
            }
        }
        let (lo, hi) = range.unwrap_or((0, vocab));
        let bounds = Tensor::from_i64(DType::I32, [2], &[lo as i64, hi as i64])?;
        decode.set_input("allowed", &bounds.view())?;
        let u = if on_device && !greedy { sampler.next_uniform() } else { 0.0 };
        let draw =
            [params.temperature, params.top_k as f32, params.top_p, u as f32, (u - u as f32 as f64) as f32];
        decode.set_input("sampling", &Tensor::from_f32(DType::F32, [1, 5], &draw)?.view())?;
        let wanted: &[&str] = if on_device { &["next_token", "nan_logits"] } else { &["logits"] };
        decode.copy_outputs(Some(wanted))?;
        decode.set_input("input_ids", &ids(&[tok])?.view())?;
        decode.set_input("positions", &positions(start + tokens.len() - 1, 1)?.view())?;
        let t = Instant::now();
        decode.execute()?;
        if on_device {
            if focus_kernels::cpu::common::f32_in(&decode.output("nan_logits")?)[0] > 0.0 {
                return Err(SampleError::NaN.into());
            }
            let t = decode.output("next_token")?;
            let tok = i64::from_le_bytes(t.data[..8].try_into().expect("[1] i64"));
            picked = Some(usize::try_from(tok).map_err(|_| SampleError::NothingAllowed(vocab))?);
        } else {
            next_logits = focus_kernels::cpu::common::f32_in(&decode.output("logits")?).into_owned();
        }
        decode_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((tokens, decode_ms))
}
