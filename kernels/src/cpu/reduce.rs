//! Reductions over sorted axes and arg-reductions along one axis.
//!
//! Sum/Mean accumulate in f64. Max/Min propagate NaN (like `torch.amax`). ArgMax/ArgMin treat
//! NaN as the extreme value (like PyTorch): the first NaN along the axis wins. Ties resolve to
//! the lowest index.

use super::common::{f32_in, i64_store, with_f32_out, Dims, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;
use rayon::prelude::*;

fn max_nan(acc: f64, v: f64) -> f64 {
    // Once NaN, stays NaN (v > NaN is false).
    if v > acc || v.is_nan() {
        v
    } else {
        acc
    }
}

fn min_nan(acc: f64, v: f64) -> f64 {
    if v < acc || v.is_nan() {
        v
    } else {
        acc
    }
}

pub fn reduce(op: ReduceOp, axes: &[usize], x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = f32_in(x);
    let shape = x.shape;
    let r = shape.len();
    // Output strides (in elements of the kept-dims output); reduced dims get stride 0.
    let mut ostride: Dims = smallvec::smallvec![0usize; r];
    let mut s = 1;
    for d in (0..r).rev() {
        if !axes.contains(&d) {
            ostride[d] = s;
            s *= shape[d];
        }
    }
    let n_out = s;
    let n_red: usize = axes.iter().map(|&a| shape[a]).product();
    let init = match op {
        ReduceOp::Sum | ReduceOp::Mean => 0.0,
        ReduceOp::Max => f64::NEG_INFINITY,
        ReduceOp::Min => f64::INFINITY,
    };
    let mut acc = Scratch::<f64>::filled(n_out, init);
    let last = shape.last().copied().unwrap_or(1);
    let last_reduced = r > 0 && axes.contains(&(r - 1));
    if xs.is_empty() || last == 0 {
        // Nothing to read: sums are 0, mean is NaN (0/0), max/min keep ±inf like an empty fold.
    } else {
        // Walk input rows (all dims but the last) with an odometer over the output offset.
        let rows = xs.len() / last;
        let mut idx: Dims = smallvec::smallvec![0usize; r.saturating_sub(1)];
        let mut base = 0usize;
        for row in 0..rows {
            let v = &xs[row * last..(row + 1) * last];
            if last_reduced {
                let a = &mut acc[base];
                match op {
                    ReduceOp::Sum | ReduceOp::Mean => *a += v.iter().map(|&t| t as f64).sum::<f64>(),
                    ReduceOp::Max => *a = v.iter().fold(*a, |m, &t| max_nan(m, t as f64)),
                    ReduceOp::Min => *a = v.iter().fold(*a, |m, &t| min_nan(m, t as f64)),
                }
            } else {
                let a = &mut acc[base..base + last];
                for (a, &t) in a.iter_mut().zip(v) {
                    *a = match op {
                        ReduceOp::Sum | ReduceOp::Mean => *a + t as f64,
                        ReduceOp::Max => max_nan(*a, t as f64),
                        ReduceOp::Min => min_nan(*a, t as f64),
                    };
                }
            }
            // Advance the odometer over dims 0..r-1.
            for d in (0..r.saturating_sub(1)).rev() {
                idx[d] += 1;
                base += ostride[d];
                if idx[d] < shape[d] {
                    break;
                }
                base -= ostride[d] * shape[d];
                idx[d] = 0;
            }
        }
    }
    if op == ReduceOp::Mean {
        for a in acc.iter_mut() {
            *a /= n_red as f64;
        }
    }
    with_f32_out(out, |o| {
        for (y, a) in o.iter_mut().zip(acc.iter()) {
            *y = *a as f32;
        }
        Ok(())
    })
}

/// Index of the max (or min) of `v[start + k * stride]`, first NaN wins, ties to lowest.
fn arg_line(op: ArgOp, v: &[f32], start: usize, n: usize, stride: usize) -> i64 {
    let mut best = 0usize;
    let mut bv = v[start];
    if bv.is_nan() {
        return 0;
    }
    for k in 1..n {
        let t = v[start + k * stride];
        if t.is_nan() {
            return k as i64;
        }
        let better = match op {
            ArgOp::ArgMax => t > bv,
            ArgOp::ArgMin => t < bv,
        };
        if better {
            best = k;
            bv = t;
        }
    }
    best as i64
}

pub fn arg_reduce(op: ArgOp, axis: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = f32_in(x);
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let n_out = out.numel();
    let mut res = Scratch::<i64>::stale(n_out);
    res.par_iter_mut().with_min_len(256).enumerate().for_each(|(i, r)| {
        let (o, j) = (i / inner, i % inner);
        *r = arg_line(op, &xs, o * n * inner + j, n, inner);
    });
    i64_store(out, &res)
}
