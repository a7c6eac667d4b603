pub mod bench;
pub mod chat;
pub mod demo;
pub mod edit;
pub mod generate;
pub mod gpu_bench;
pub mod gpu_check;
pub mod graph;
pub mod inspect;
pub mod kernels;
pub mod ops;
pub mod parity;

/// A storage dtype named on the command line: f32, f16 or bf16.
pub fn float_dtype(name: &str) -> Result<focus_graph::DType, String> {
    focus_graph::DType::ALL
        .into_iter()
        .find(|d| d.is_float() && d.short_name() == name)
        .ok_or_else(|| format!("unknown dtype '{name}' (f32, f16, bf16)"))
}
