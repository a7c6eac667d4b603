//! Nearest codebook row by squared L2.
//!
//! A fast pass ranks rows by `||c||² - 2 x·c` (f32, codebook norms computed once) over tiles
//! of `x` rows, keeping every row within a rounding margin of the running best. The survivors
//! are then compared by the directly computed `Σ (x - c)²` (f32), lowest index on ties, so
//! near-ties and duplicate rows resolve deterministically to the lowest index.

use super::common::{f32_in, i64_store, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use rayon::prelude::*;

/// `x` rows handled together so each codebook row is loaded once per tile.
const TILE: usize = 8;

/// Candidate list capacity per row; pruned when it is half full and a new best arrives.
const CANDIDATES: usize = 128;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

pub fn vq_nearest(x: &TensorRef, codebook: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = f32_in(x);
    let cb = f32_in(codebook);
    let d = codebook.shape[1];
    let m = out.numel();
    if m == 0 {
        return Ok(());
    }
    // Pooled scratch throughout: re-running a plan allocates nothing.
    let mut res = Scratch::<i64>::zeroed(m);
    if d == 0 {
        return i64_store(out, &res);
    }
    let mut cc = Scratch::<f32>::stale(cb.len() / d);
    for (n, c) in cc.iter_mut().zip(cb.chunks_exact(d)) {
        *n = dot(c, c);
    }
    let max_cc = cc.iter().fold(0f32, |a, &b| a.max(b));
    res.par_chunks_mut(TILE).zip(xs.par_chunks(TILE * d)).for_each(|(res, tile)| {
        let nr = res.len();
        let row = |t: usize| &tile[t * d..(t + 1) * d];
        // Rounding bound of the expanded form, generous: a few ulps per term.
        let mut margin = [0f32; TILE];
        for (t, mg) in margin[..nr].iter_mut().enumerate() {
            *mg = 4.0 * d as f32 * f32::EPSILON * (dot(row(t), row(t)) + max_cc) + f32::MIN_POSITIVE;
        }
        let mut best = [f32::INFINITY; TILE];
        let mut cand: [Scratch<(f32, usize)>; TILE] = std::array::from_fn(|_| Scratch::empty(CANDIDATES));
        for (j, c) in cb.chunks_exact(d).enumerate() {
            for t in 0..nr {
                let s = cc[j] - 2.0 * dot(row(t), c);
                if s <= best[t] + margin[t] {
                    let cand = cand[t].vec();
                    if s < best[t] {
                        best[t] = s;
                        // Drop candidates the new best has left behind (amortised).
                        if cand.len() > CANDIDATES / 2 {
                            let lim = s + margin[t];
                            cand.retain(|p| p.0 <= lim);
                        }
                    }
                    cand.push((s, j));
                }
            }
        }
        for (t, r) in res.iter_mut().enumerate() {
            let lim = best[t] + margin[t];
            let mut bi = 0usize;
            let mut bd = f32::INFINITY;
            let mut found = false;
            for &(s, j) in cand[t].iter() {
                if s <= lim {
                    let e = sq_dist(row(t), &cb[j * d..(j + 1) * d]);
                    // Candidates arrive in index order: strict < keeps the lowest.
                    if !found || e < bd {
                        bi = j;
                        bd = e;
                        found = true;
                    }
                }
            }
            *r = bi as i64;
        }
    });
    i64_store(out, &res)
}
