//! focus-models: one graph builder per FOCUS component, their configs, and a registry the CLI
//! uses to build graphs by name.

pub mod checks;
pub mod common;
pub mod convnext;
pub mod euler;
pub mod fusion;
pub mod kandinsky;
pub mod mask2former;
pub mod movq;
pub mod perception;
pub mod qwen2;
pub mod qwen_vit;
pub mod registry;
pub mod semantic;
pub mod simvq;
pub mod unet;
pub mod vae;

pub use registry::{build_named, ModelSpec, MODELS};
