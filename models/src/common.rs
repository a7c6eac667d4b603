//! Small helpers shared by model builders.

use focus_graph::{DType, GraphBuilder, NodeId, Result, Shape};

/// Named intermediate activations (for parity against the reference's).
pub type Intermediates = Vec<(String, NodeId)>;

/// A weight by checkpoint name.
pub fn param(b: &mut GraphBuilder, name: &str, dt: DType, shape: impl Into<Shape>) -> Result<NodeId> {
    b.param(name, dt, shape)
}

/// A conv weight declared in the checkpoint's OIHW layout and permuted to the engine's OHWI;
/// the permute depends only on the weight, so it is folded once at load time.
pub fn conv_weight(b: &mut GraphBuilder, name: &str, dt: DType, oihw: [usize; 4]) -> Result<NodeId> {
    let w = b.param(name, dt, oihw)?;
    b.permute(w, &[0, 2, 3, 1])
}
