//! Graph passes: dead-code elimination, elementwise fusion grouping, constant-subgraph
//! marking and memory planning.

pub mod dce;
pub mod fold;
pub mod fusion;
pub mod memory;

pub use dce::eliminate_dead_code;
pub use fold::static_nodes;
pub use fusion::{fusion_groups, FusionGroup};
pub use memory::{plan_memory, plan_memory_spans, MemoryPlan, ARENA_ALIGN};
