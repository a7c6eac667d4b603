//! Rotary position embedding on `x [..., T, H, D]`, rotate-half pairing (dim i with i + D/2).
//!
//! Angles are computed the way the PyTorch references do, in f32:
//! `inv_freq = 1 / theta^(arange(0, dim, 2) / dim)` (dim = D for 1-D, D/2 for 2-D) and
//! `angle = float(pos) * inv_freq`. The power and the cos/sin are evaluated in f64 and rounded
//! once, i.e. correctly rounded f32 results of the f32 operands, which is what PyTorch's f32
//! kernels produce up to an ulp. The rotation itself is f32 (the ViT reference upcasts to f32;
//! for half inputs we also rotate in f32 and round once at the end).

use crate::cpu::common::{f32_in, with_f32_out, IndexRef, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::RopeKind;
use rayon::prelude::*;

/// f32 inverse frequencies for a rotary table of `dim` dims (dim/2 frequencies); the CUDA
/// kernel takes this same table so both backends rotate by identical angles.
pub fn inv_freq(theta: f32, dim: usize) -> Scratch {
    let mut f = Scratch::zeroed(dim / 2);
    for (i, fi) in f.iter_mut().enumerate() {
        let e = (2 * i) as f32 / dim as f32;
        *fi = 1.0 / ((theta as f64).powf(e as f64) as f32);
    }
    f
}

pub fn rope(kind: RopeKind, theta: f32, x: &TensorRef, pos: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let r = x.shape.len();
    let (t, h, d) = (x.shape[r - 3], x.shape[r - 2], x.shape[r - 1]);
    let half = d / 2;
    let p = IndexRef::new(pos)?;
    // Angle table [T, D/2]: dim i (< D/2) and dim i + D/2 rotate by angle[t][i].
    let mut cos = Scratch::zeroed(t * half);
    let mut sin = Scratch::zeroed(t * half);
    let mut set = |ti: usize, i: usize, angle: f32| {
        cos[ti * half + i] = (angle as f64).cos() as f32;
        sin[ti * half + i] = (angle as f64).sin() as f32;
    };
    match kind {
        RopeKind::OneD => {
            let f = inv_freq(theta, d);
            for (ti, pt) in p.iter().enumerate() {
                for (i, &fi) in f.iter().enumerate() {
                    set(ti, i, pt as f32 * fi);
                }
            }
        }
        RopeKind::TwoD => {
            // Table of dim D/2 -> D/4 frequencies; first quarter by row, second by column.
            let f = inv_freq(theta, half);
            let q = f.len();
            for ti in 0..t {
                let (row, col) = (p.get(2 * ti) as f32, p.get(2 * ti + 1) as f32);
                for (j, &fj) in f.iter().enumerate() {
                    set(ti, j, row * fj);
                    set(ti, q + j, col * fj);
                }
            }
        }
    }
    let xd = f32_in(x);
    with_f32_out(out, |o| {
        if o.is_empty() || half == 0 {
            o.copy_from_slice(&xd);
            return Ok(());
        }
        // Rows of (leading index, t), H heads of D each; tasks of at least ~16K elements so
        // small inputs run on the calling thread.
        let min_rows = (1 << 14) / (h * d) + 1;
        let rows = o.par_chunks_mut(h * d).zip(xd.par_chunks(h * d)).enumerate().with_min_len(min_rows);
        rows.for_each(|(row, (dst, src))| {
            let ti = row % t;
            let (c, s) = (&cos[ti * half..][..half], &sin[ti * half..][..half]);
            for (dh, sh) in dst.chunks_exact_mut(d).zip(src.chunks_exact(d)) {
                let (x1, x2) = sh.split_at(half);
                let (o1, o2) = dh.split_at_mut(half);
                for i in 0..half {
                    o1[i] = x1[i] * c[i] - x2[i] * s[i];
                    o2[i] = x2[i] * c[i] + x1[i] * s[i];
                }
            }
        });
        Ok(())
    })
}
