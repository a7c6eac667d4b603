//! Indices of the k largest values along an axis, in descending order. NaN counts as larger
//! than every number (as in PyTorch); equal values keep the lower index first.

use super::common::{f32_in, i64_store};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use rayon::prelude::*;
use std::cmp::Ordering;

/// Descending by value (NaN first), then ascending by index: a strict total order.
fn desc(a: &(f32, usize), b: &(f32, usize)) -> Ordering {
    let by_val = match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal),
    };
    by_val.then(a.1.cmp(&b.1))
}

pub fn top_k(axis: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = f32_in(x);
    let n = x.shape[axis];
    let k = out.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    // One line per (outer, inner) position; results are laid out [outer, k, inner].
    let lines: Vec<Vec<i64>> = (0..outer * inner)
        .into_par_iter()
        .map(|l| {
            let (o, j) = (l / inner, l % inner);
            let mut v: Vec<(f32, usize)> = (0..n).map(|t| (xs[(o * n + t) * inner + j], t)).collect();
            if k < n {
                v.select_nth_unstable_by(k - 1, desc);
                v.truncate(k);
            }
            v.sort_unstable_by(desc);
            v.iter().map(|p| p.1 as i64).collect()
        })
        .collect();
    let mut res = vec![0i64; outer * k * inner];
    for (l, line) in lines.iter().enumerate() {
        let (o, j) = (l / inner, l % inner);
        for (t, &ix) in line.iter().enumerate() {
            res[(o * k + t) * inner + j] = ix;
        }
    }
    i64_store(out, &res)
}
