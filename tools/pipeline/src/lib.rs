//! focus-pipeline: runs FOCUS pipelines on the engine. Text handling (tokenizer, Qwen2.5
//! Instruct chat template, image placeholder) and the perception runner (image + prompt →
//! generated tokens and text, prefill + KV-cache decode, sampling with constraints); the
//! generation runner (image-token codes → VQ conditioning → guided Euler sampling of the UNet →
//! VAE decode); the segmentation runner (mask-token states → masks and class scores) and
//! the editor that chains them all (FOCUS end to end).

pub mod chat;
pub mod checks;
mod decode;
pub mod edit;
pub mod generation;
pub mod image_tokens;
pub mod perception;
pub mod runtime;
pub mod segmentation;
pub mod text;

pub use chat::{Chat, ChatError};
pub use edit::{Edit, EditConfig, EditError, Editor};
pub use generation::{GenerateOptions, GeneratedImage, GenerationConfig, GenerationError, Generator};
pub use perception::{Generation, Perception, PerceptionError};
pub use runtime::Runtime;
pub use text::{ChatPrompt, TextError, Tokenizer};
