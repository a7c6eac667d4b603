//! Nearest codebook row by squared L2.
//!
//! A fast pass ranks rows by `||c||² - 2 x·c` (f32, codebook norms computed once) over tiles
//! of `x` rows, keeping every row within a rounding margin of the running best. The survivors
//! are then compared by the directly computed `Σ (x - c)²` (f32), lowest index on ties, so
//! near-ties and duplicate rows resolve deterministically to the lowest index.

use super::common::{f32_in, i64_store};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use rayon::prelude::*;

/// `x` rows handled together so each codebook row is loaded once per tile.
const TILE: usize = 8;

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
    if d == 0 {
        return i64_store(out, &vec![0; m]);
    }
    let cc: Vec<f32> = cb.chunks_exact(d).map(|c| dot(c, c)).collect();
    let max_cc = cc.iter().fold(0f32, |a, &b| a.max(b));
    let res: Vec<i64> = xs
        .par_chunks(TILE * d)
        .flat_map_iter(|tile| {
            let rows: Vec<&[f32]> = tile.chunks_exact(d).collect();
            let nr = rows.len();
            // Rounding bound of the expanded form, generous: a few ulps per term.
            let margin: Vec<f32> = rows
                .iter()
                .map(|r| 4.0 * d as f32 * f32::EPSILON * (dot(r, r) + max_cc) + f32::MIN_POSITIVE)
                .collect();
            let mut best = vec![f32::INFINITY; nr];
            let mut cand: Vec<Vec<(usize, f32)>> = vec![Vec::new(); nr];
            for (j, c) in cb.chunks_exact(d).enumerate() {
                for (t, r) in rows.iter().enumerate() {
                    let s = cc[j] - 2.0 * dot(r, c);
                    if s <= best[t] + margin[t] {
                        if s < best[t] {
                            best[t] = s;
                            // Drop candidates the new best has left behind (amortised).
                            if cand[t].len() > 64 {
                                let lim = s + margin[t];
                                cand[t].retain(|p| p.1 <= lim);
                            }
                        }
                        cand[t].push((j, s));
                    }
                }
            }
            (0..nr)
                .map(|t| {
                    let lim = best[t] + margin[t];
                    let mut bi = 0usize;
                    let mut bd = f32::INFINITY;
                    let mut found = false;
                    for &(j, s) in &cand[t] {
                        if s <= lim {
                            let e = sq_dist(rows[t], &cb[j * d..(j + 1) * d]);
                            // Candidates arrive in index order: strict < keeps the lowest.
                            if !found || e < bd {
                                bi = j;
                                bd = e;
                                found = true;
                            }
                        }
                    }
                    bi as i64
                })
                .collect::<Vec<_>>()
        })
        .collect();
    i64_store(out, &res)
}
