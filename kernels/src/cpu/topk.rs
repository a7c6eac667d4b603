//! Indices of the k largest values along an axis, in descending order. NaN counts as larger
//! than every number (as in PyTorch); equal values keep the lower index first.

use super::common::{f32_in, i64_store, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
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
    // One line per (outer, inner) position; results are laid out [outer, k, inner]. Pooled
    // scratch: re-running a plan allocates nothing.
    let mut res = Scratch::<i64>::stale(outer * k * inner);
    let mut v = Scratch::<(f32, usize)>::stale(n);
    for l in 0..outer * inner {
        let (o, j) = (l / inner, l % inner);
        for (t, slot) in v.iter_mut().enumerate() {
            *slot = (xs[(o * n + t) * inner + j], t);
        }
        if k < n {
            v.select_nth_unstable_by(k - 1, desc);
        }
        v[..k].sort_unstable_by(desc);
        for (t, p) in v[..k].iter().enumerate() {
            res[(o * k + t) * inner + j] = p.1 as i64;
        }
    }
    i64_store(out, &res)
}
