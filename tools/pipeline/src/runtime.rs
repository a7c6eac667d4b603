//! Where a pipeline's plans run.

use focus_engine::{compile_shared, Device, EngineError, Plan, SharedArena, WeightSource};
use focus_graph::Graph;
use std::sync::Arc;

/// The weights, the device, and the activation arena that a pipeline's stages share (they run
/// one after another, so one arena sized by the largest stage serves them all). Clones share
/// the arena: the editor hands one runtime to perception, segmentation and generation.
#[derive(Clone)]
pub struct Runtime {
    pub weights: Arc<dyn WeightSource>,
    pub device: Device,
    pub arena: SharedArena,
}

impl Runtime {
    pub fn new(weights: Arc<dyn WeightSource>, device: Device) -> Self {
        Runtime { weights, device, arena: SharedArena::new() }
    }

    /// Bytes of the shared arena on this runtime's device (the largest plan's activations).
    pub fn arena_bytes(&self) -> usize {
        match self.device {
            Device::Cpu => self.arena.host_bytes(),
            Device::Cuda(ordinal) => self.arena.device_bytes(ordinal),
        }
    }

    /// Compile `g` on this runtime's device, weights and arena.
    pub fn compile(&self, g: &Graph) -> Result<Plan, EngineError> {
        compile_shared(g, Some(self.weights.clone()), self.device, &self.arena)
    }
}
