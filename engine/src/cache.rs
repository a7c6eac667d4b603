//! Compiled plans by (graph, device) (ARCHITECTURE decision 1): a caller rebuilds a shape
//! bucket's graph, which is cheap, and gets the plan compiled the first time, which is not
//! (weight checks, constant folding, device uploads, kernel planning).

use crate::arena::SharedArena;
use crate::device::Device;
use crate::error::Result;
use crate::executor::{compile_in, Plan};
use crate::source::WeightSource;
use focus_graph::Graph;
use std::collections::HashMap;
use std::sync::Arc;

/// Plans of one weight source, keyed by the graph's fingerprint and the device; a hit also
/// compares the whole graph, so a fingerprint collision compiles rather than returns the wrong
/// plan. Optionally every plan shares one activation arena.
pub struct PlanCache {
    weights: Option<Arc<dyn WeightSource>>,
    arena: Option<SharedArena>,
    plans: HashMap<(u64, Device), Vec<(Graph, Plan)>>,
    hits: usize,
    misses: usize,
}

impl PlanCache {
    pub fn new(weights: Option<Arc<dyn WeightSource>>) -> Self {
        PlanCache { weights, arena: None, plans: HashMap::new(), hits: 0, misses: 0 }
    }

    /// Compile every plan into `arena` (see [`SharedArena`]).
    pub fn with_arena(mut self, arena: SharedArena) -> Self {
        self.arena = Some(arena);
        self
    }

    /// The plan of `g` on `device`, compiled on first use.
    pub fn plan(&mut self, g: &Graph, device: Device) -> Result<&mut Plan> {
        let bucket = self.plans.entry((g.fingerprint(), device)).or_default();
        match bucket.iter().position(|(k, _)| k == g) {
            Some(i) => {
                self.hits += 1;
                Ok(&mut bucket[i].1)
            }
            None => {
                let plan = compile_in(g, self.weights.clone(), device, self.arena.as_ref())?;
                self.misses += 1;
                bucket.push((g.clone(), plan));
                Ok(&mut bucket.last_mut().expect("just pushed").1)
            }
        }
    }

    /// Plans held.
    pub fn len(&self) -> usize {
        self.plans.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups answered from the cache, and lookups that compiled.
    pub fn stats(&self) -> (usize, usize) {
        (self.hits, self.misses)
    }
}
