//! `focus chat`: one reply from a Qwen2.5 checkpoint directory (Hugging Face layout), with the
//! Instruct template, sampled as asked; prints the reply and where the time went.

use focus_engine::sampling::SamplingParams;
use focus_engine::Device;
use focus_pipeline::text::DEFAULT_SYSTEM;
use focus_pipeline::Chat;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// Checkpoint directory: config.json, tokenizer.json and model.safetensors (or a sharded
    /// model.safetensors.index.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The user's message.
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value = DEFAULT_SYSTEM)]
    pub system: String,
    /// Most tokens in the reply.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Top-k cut (0: none).
    #[arg(long, default_value_t = 20)]
    pub top_k: usize,
    /// Nucleus cut (1: none).
    #[arg(long, default_value_t = 0.8)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Storage dtype: bf16 reads a bf16 checkpoint in place; f32 converts it at load.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// KV-cache positions (prompt plus reply).
    #[arg(long, default_value_t = 2048)]
    pub capacity: usize,
}

pub fn run(a: &ChatArgs) -> Result<(), String> {
    let device = Device::parse(&a.device).map_err(|e| e.to_string())?;
    let dtype = super::float_dtype(&a.dtype)?;
    let t = Instant::now();
    let mut chat = Chat::open(&a.model, device, dtype, a.capacity).map_err(|e| e.to_string())?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let params = SamplingParams { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed };
    let (text, g) = chat.reply(&a.system, &a.prompt, &params, a.max_tokens).map_err(|e| e.to_string())?;
    println!("{text}");
    let decode: f64 = g.decode_ms.iter().sum();
    println!(
        "-- {} on {device} ({dtype}): opened in {open_ms:.0} ms; prompt {} tokens, prefill {:.1} ms; {} tokens in {:.1} ms ({:.1} tokens/s)",
        a.model.display(),
        g.prompt_tokens,
        g.prefill_ms,
        g.tokens.len(),
        decode,
        g.decode_ms.len() as f64 / (decode / 1e3).max(1e-9)
    );
    Ok(())
}
