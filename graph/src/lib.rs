//! focus-graph: the static graph IR of focus-engine.
//!
//! Models build a [`Graph`] with the [`GraphBuilder`]; every op is shape/dtype-checked when it
//! is added. Passes (dead code, elementwise fusion grouping, constant-subgraph marking, memory
//! planning) prepare it for a backend; dumps print it. No device code lives here.

pub mod builder;
pub mod cost;
pub mod dtype;
pub mod dump;
pub mod error;
pub mod graph;
pub mod infer;
pub mod op;
pub mod passes;
pub mod shape;

pub use builder::GraphBuilder;
pub use cost::Cost;
pub use dtype::DType;
pub use error::{GraphError, Result};
pub use graph::{Graph, Node, NodeId};
pub use op::*;
pub use shape::Shape;
