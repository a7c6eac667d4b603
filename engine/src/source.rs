//! Where a plan's weights come from.

use focus_graph::DType;
use std::collections::HashMap;

/// Read-only access to named weights (a memory-mapped checkpoint, or tensors in memory).
pub trait WeightSource: Send + Sync {
    /// `(dtype, shape, little-endian bytes)` of a tensor, or `None` if absent.
    fn tensor(&self, name: &str) -> Option<(DType, &[usize], &[u8])>;
    /// Every tensor name (for reporting unexpected tensors).
    fn names(&self) -> Vec<String>;
}

/// Weights held in memory, e.g. seeded random weights for demos and tests.
#[derive(Default, Clone, Debug)]
pub struct MemoryWeights {
    tensors: HashMap<String, (DType, Vec<usize>, Vec<u8>)>,
}

impl MemoryWeights {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, name: impl Into<String>, dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) {
        self.tensors.insert(name.into(), (dtype, shape, bytes));
    }
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    /// Tensors sorted by name, for writing to a file.
    pub fn sorted(&self) -> Vec<(&str, DType, &[usize], &[u8])> {
        let mut v: Vec<_> =
            self.tensors.iter().map(|(n, (d, s, b))| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

impl WeightSource for MemoryWeights {
    fn tensor(&self, name: &str) -> Option<(DType, &[usize], &[u8])> {
        self.tensors.get(name).map(|(d, s, b)| (*d, s.as_slice(), b.as_slice()))
    }
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
}

impl MemoryWeights {
    /// Seeded random weights for every parameter of `graph`, scaled like common initialisers:
    /// matrices and kernels uniform in ±√(3/fan_in) (unit output variance), norm weights near
    /// 1, biases and layer scales small. For demos and tests, not for quality.
    pub fn random_for(graph: &focus_graph::Graph, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        use rayon::prelude::*;
        // Independent streams per (tensor, 1M-element chunk), filled in parallel: paper-size
        // models (3B parameters) get their weights in seconds.
        const CHUNK: usize = 1 << 20;
        let mut w = MemoryWeights::new();
        for (k, (name, id)) in graph.params().into_iter().enumerate() {
            let n = graph.node(id);
            let dims = n.shape.dims();
            let numel = n.shape.numel();
            let (lo, hi) = if dims.len() >= 2 {
                let a = (3.0 / (numel / dims[0]).max(1) as f32).sqrt();
                (-a, a)
            } else if name.ends_with("bias") {
                (-0.1, 0.1)
            } else if name.ends_with("gamma") || name.contains("scale") {
                (0.05, 0.15)
            } else {
                (0.9, 1.1)
            };
            let mut vals = vec![0f32; numel];
            vals.par_chunks_mut(CHUNK).enumerate().for_each(|(j, c)| {
                let stream = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((k as u64) << 24) ^ j as u64;
                let mut rng = rand::rngs::StdRng::seed_from_u64(stream);
                c.iter_mut().for_each(|v| *v = rng.gen_range(lo..hi));
            });
            let mut t = crate::tensor::Tensor::zeros(n.dtype, n.shape.clone());
            focus_kernels::cpu::common::f32_store(&mut t.view_mut(), &vals);
            w.insert(name, n.dtype, dims.to_vec(), t.bytes().to_vec());
        }
        w
    }
}
