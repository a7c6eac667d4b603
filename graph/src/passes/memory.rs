//! Memory planning: liveness analysis over the topological order, then offsets in one arena
//! that reuse memory whose lifetime ended (greedy by size, first fit in address order).

use crate::graph::{Graph, NodeId};
use crate::op::Op;

/// Byte alignment of every arena offset (covers every dtype and SIMD loads).
pub const ARENA_ALIGN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Arena offset of each node's storage; `None` for static (resident) nodes and states.
    /// Aliases carry their root's offset plus their own offset inside it.
    pub offsets: Vec<Option<usize>>,
    /// Live interval `[first, last]` (node indices) of each arena-resident storage root.
    pub lifetimes: Vec<Option<(usize, usize)>>,
    pub arena_bytes: usize,
    /// What giving every tensor its own buffer would cost.
    pub naive_bytes: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Plan the arena for every non-static node. `is_static` comes from [`super::static_nodes`].
pub fn plan_memory(g: &Graph, is_static: &[bool]) -> MemoryPlan {
    plan_memory_spans(g, is_static, &[])
}

/// As [`plan_memory`], for a backend that runs each span (a set of nodes) as one kernel placed
/// anywhere between its first and last member: every member's value is kept from the span's
/// first node on, and every member's input until its last node, so the kernel neither reads an
/// input whose memory was already handed on nor writes over a value still live.
pub fn plan_memory_spans(g: &Graph, is_static: &[bool], spans: &[Vec<NodeId>]) -> MemoryPlan {
    let n = g.len();
    let root: Vec<NodeId> = g.ids().map(|id| g.storage_root(id)).collect();
    let mut life: Vec<Option<(usize, usize)>> = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        let r = root[i].0;
        // Static values and states live outside the arena, but a node writing into a state
        // still reads its inputs here, so their lifetimes are extended below regardless.
        let in_arena = !is_static[r] && !matches!(g.nodes[r].op, Op::State { .. });
        if in_arena && r == i {
            // Inputs are written before the run starts and kept for the whole run, so a plan
            // can be re-run without setting them again.
            life[i] = Some(if matches!(node.op, Op::Input { .. }) { (0, n) } else { (i, i) });
        }
        for inp in &node.inputs {
            let ri = root[inp.0].0;
            if let Some((_, last)) = &mut life[ri] {
                *last = (*last).max(i);
            }
        }
    }
    for (_, o) in &g.outputs {
        if let Some((_, last)) = &mut life[root[o.0].0] {
            *last = n;
        }
    }
    for span in spans {
        let (Some(lo), Some(hi)) = (span.iter().map(|m| m.0).min(), span.iter().map(|m| m.0).max()) else {
            continue;
        };
        for m in span {
            if let Some((first, last)) = &mut life[root[m.0].0] {
                (*first, *last) = ((*first).min(lo), (*last).max(hi));
            }
            for inp in &g.nodes[m.0].inputs {
                if let Some((_, last)) = &mut life[root[inp.0].0] {
                    *last = (*last).max(hi);
                }
            }
        }
    }

    let mut order: Vec<usize> = (0..n).filter(|&i| life[i].is_some()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(align(g.nodes[i].bytes())), i));
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (offset, size, first, last)
    let mut offset_of = vec![None; n];
    let mut arena = 0;
    let mut naive = 0;
    for i in order {
        let size = align(g.nodes[i].bytes());
        naive += size;
        let (f, l) = life[i].unwrap();
        let mut busy: Vec<(usize, usize)> =
            placed.iter().filter(|p| p.2 <= l && f <= p.3).map(|p| (p.0, p.1)).collect();
        busy.sort_unstable();
        let mut off = 0;
        for (o, s) in busy {
            if off + size <= o {
                break;
            }
            off = off.max(o + s);
        }
        placed.push((off, size, f, l));
        offset_of[i] = Some(off);
        arena = arena.max(off + size);
    }
    let offsets = g.ids().map(|id| offset_of[root[id.0].0].map(|o| o + g.storage_offset(id))).collect();
    MemoryPlan { offsets, lifetimes: life, arena_bytes: arena, naive_bytes: naive }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::static_nodes;
    use crate::{DType, GraphBuilder, UnaryOp};
    use rand::{Rng, SeedableRng};

    /// Property: over random graphs, no two simultaneously live storages overlap.
    #[test]
    fn random_graphs_have_no_live_overlap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..200 {
            let mut b = GraphBuilder::new();
            let mut vals = vec![b.input("x", DType::F32, [rng.gen_range(1..64)]).unwrap()];
            let len = b.shape(vals[0])[0];
            let w = b.param("w", DType::F32, [len]).unwrap();
            vals.push(w);
            let mut state = b.state("s", DType::F32, [len]).unwrap();
            let zero = b.constant_i32([1], &[0]).unwrap();
            for _ in 0..rng.gen_range(1..40) {
                let a = vals[rng.gen_range(0..vals.len())];
                let c = vals[rng.gen_range(0..vals.len())];
                let v = match rng.gen_range(0..5) {
                    // A computed value written into a state: it must stay live until the write.
                    4 => {
                        let e = b.unary(UnaryOp::Exp, a).unwrap();
                        let filler = b.unary(UnaryOp::Neg, c).unwrap();
                        state = b.write_slice(state, e, zero, 0).unwrap();
                        let _ = filler;
                        state
                    }
                    0 => b.unary(UnaryOp::Exp, a).unwrap(),
                    1 => b.add(a, c).unwrap(),
                    2 => b.reshape(a, [1, len]).and_then(|r| b.reshape(r, [len])).unwrap(),
                    // A view (a contiguous slice, at byte 0 or 64) or, unaligned, a copy.
                    _ => {
                        let at = rng.gen_range(0..3) * 16 % (len + 1);
                        b.concat(&[a, c], 0).and_then(|r| b.slice(r, 0, at, at + len)).unwrap()
                    }
                };
                vals.push(v);
            }
            for (k, v) in vals.iter().rev().take(3).enumerate() {
                let _ = b.output(&format!("o{k}"), *v);
            }
            let g = b.finish().unwrap();
            let st = static_nodes(&g);
            // Spans as a GPU backend fuses them: the fusion groups, plus random pairs.
            let mut spans: Vec<Vec<NodeId>> =
                crate::passes::fusion_groups(&g).into_iter().map(|f| f.nodes).collect();
            for _ in 0..rng.gen_range(0..4) {
                let (a, c) = (rng.gen_range(0..g.len()), rng.gen_range(0..g.len()));
                spans.push(vec![NodeId(a), NodeId(c)]);
            }
            let p = plan_memory_spans(&g, &st, &spans);
            assert!(p.arena_bytes <= p.naive_bytes);
            for span in &spans {
                let lo = span.iter().map(|m| m.0).min().unwrap();
                let hi = span.iter().map(|m| m.0).max().unwrap();
                for m in span {
                    if let Some((first, last)) = p.lifetimes[g.storage_root(*m).0] {
                        assert!(first <= lo && hi <= last, "span member {} not live over {lo}..={hi}", m.0);
                    }
                    for inp in &g.nodes[m.0].inputs {
                        if let Some((_, last)) = p.lifetimes[g.storage_root(*inp).0] {
                            assert!(hi <= last, "input of span member {} freed before {hi}", m.0);
                        }
                    }
                }
            }
            // Every read of a stored value (through any alias chain) lies inside its lifetime.
            for (j, node) in g.nodes.iter().enumerate() {
                for inp in &node.inputs {
                    let r = g.storage_root(*inp).0;
                    if let Some((first, last)) = p.lifetimes[r] {
                        assert!(first <= j && j <= last, "node {j} reads {r} outside {first}..={last}");
                    }
                }
            }
            // Aliases address inside their root's range.
            for id in g.ids() {
                let r = g.storage_root(id);
                if let (Some(o), Some(ro)) = (p.offsets[id.0], p.offsets[r.0]) {
                    assert_eq!(o, ro + g.storage_offset(id));
                    assert!(o + g.node(id).bytes() <= ro + g.node(r).bytes());
                }
            }
            let roots: Vec<usize> = (0..g.len()).filter(|&i| p.lifetimes[i].is_some()).collect();
            for &a in &roots {
                for &c in &roots {
                    if a >= c {
                        continue;
                    }
                    let (fa, la) = p.lifetimes[a].unwrap();
                    let (fc, lc) = p.lifetimes[c].unwrap();
                    let (oa, oc) = (p.offsets[a].unwrap(), p.offsets[c].unwrap());
                    let (sa, sc) = (g.nodes[a].bytes(), g.nodes[c].bytes());
                    let live_together = fa <= lc && fc <= la;
                    let overlap = oa < oc + sc && oc < oa + sa && sa > 0 && sc > 0;
                    assert!(!(live_together && overlap), "nodes {a} and {c} overlap while live");
                }
            }
        }
    }

    #[test]
    fn chain_reuses_memory() {
        let mut b = GraphBuilder::new();
        let mut x = b.input("x", DType::F32, [1024]).unwrap();
        for _ in 0..10 {
            x = b.unary(UnaryOp::Exp, x).unwrap();
        }
        b.output("y", x).unwrap();
        let g = b.finish().unwrap();
        let p = plan_memory(&g, &static_nodes(&g));
        assert_eq!(p.naive_bytes, 11 * 4096);
        // The input stays live; the chain ping-pongs between two buffers.
        assert_eq!(p.arena_bytes, 3 * 4096);
    }
}
