//! focus-pipeline: runs FOCUS pipelines on the engine. Text handling (tokenizer, Qwen2.5
//! Instruct chat template, image placeholder) and the perception runner (image + prompt →
//! generated tokens and text, prefill + KV-cache decode, sampling with constraints).

pub mod image_tokens;
pub mod perception;
pub mod text;

pub use perception::{Generation, Perception, PerceptionError};
pub use text::{ChatPrompt, TextError, Tokenizer};
