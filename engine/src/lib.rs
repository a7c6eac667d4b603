//! focus-engine: the runtime. Devices, host tensors, weight sources (memory-mapped safetensors
//! or in memory), the executor that compiles a graph into a plan and runs it, activation arenas
//! shared by plans that run in turn, a cache of compiled plans, and the profiler.

pub mod arena;
pub mod buffer;
pub mod cache;
mod cuda;
pub mod device;
pub mod error;
pub mod executor;
pub mod profiler;
pub mod sampling;
pub mod source;
pub mod tensor;
pub mod weights;

pub use arena::SharedArena;
pub use cache::PlanCache;
pub use cuda::{CudaSchedule, Fusions};
pub use device::Device;
pub use error::{EngineError, Result};
pub use executor::{compile, compile_shared, Plan, PlanStats};
pub use profiler::Profile;
pub use source::{MemoryWeights, WeightSource};
pub use tensor::Tensor;
