//! LayerNorm, RMSNorm and channels-last GroupNorm. Statistics are accumulated in f64 with a
//! two-pass mean/variance (biased variance, as PyTorch); the normalisation itself is f32.

use crate::cpu::common::{f32_in, with_f32_out, Scratch};
use crate::cpu::resize::nearest_index;
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::DType;
use half::{bf16, f16};
use rayon::prelude::*;

/// Rows handled per rayon task at minimum (keeps tiny rows from drowning in scheduling).
fn min_rows(c: usize) -> usize {
    (1 << 13) / c.max(1) + 1
}

fn mean_var(r: &[f32]) -> (f64, f64) {
    let n = r.len() as f64;
    let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

pub fn layer_norm(
    eps: f32,
    x: &TensorRef,
    w: Option<&TensorRef>,
    b: Option<&TensorRef>,
    out: &mut TensorMut,
) -> Result<()> {
    let c = *x.shape.last().unwrap_or(&1);
    let xd = f32_in(x);
    let wd = w.map(f32_in);
    let bd = b.map(f32_in);
    with_f32_out(out, |o| {
        if c == 0 {
            return Ok(());
        }
        o.par_chunks_mut(c).zip(xd.par_chunks(c)).with_min_len(min_rows(c)).for_each(|(dst, src)| {
            let (mean, var) = mean_var(src);
            let rstd = (1.0 / (var + eps as f64).sqrt()) as f32;
            let mean = mean as f32;
            for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
                let mut y = (s - mean) * rstd;
                if let Some(w) = &wd {
                    y *= w[i];
                }
                if let Some(b) = &bd {
                    y += b[i];
                }
                *d = y;
            }
        });
        Ok(())
    })
}

/// Rounds an f32 through `dtype` (identity for f32).
fn rounder(dtype: DType) -> fn(f32) -> f32 {
    match dtype {
        DType::F16 => |v| f16::from_f32(v).to_f32(),
        DType::BF16 => |v| bf16::from_f32(v).to_f32(),
        _ => |v| v,
    }
}

/// As HF Qwen2: normalise in f32, cast to the input dtype, then multiply by the weight.
pub fn rms_norm(eps: f32, x: &TensorRef, w: Option<&TensorRef>, out: &mut TensorMut) -> Result<()> {
    let c = *x.shape.last().unwrap_or(&1);
    let xd = f32_in(x);
    let wd = w.map(f32_in);
    let round = rounder(x.dtype);
    with_f32_out(out, |o| {
        if c == 0 {
            return Ok(());
        }
        o.par_chunks_mut(c).zip(xd.par_chunks(c)).with_min_len(min_rows(c)).for_each(|(dst, src)| {
            let ms = src.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / c as f64;
            let r = (1.0 / (ms + eps as f64).sqrt()) as f32;
            for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
                let y = round(s * r);
                *d = match &wd {
                    Some(w) => y * w[i],
                    None => y,
                };
            }
        });
        Ok(())
    })
}

/// Channels-last GroupNorm: for each image, group g covers channels [g*C/G, (g+1)*C/G) at
/// every spatial position.
pub fn group_norm(
    groups: usize,
    eps: f32,
    x: &TensorRef,
    w: Option<&TensorRef>,
    b: Option<&TensorRef>,
    out: &mut TensorMut,
) -> Result<()> {
    group_norm_modulated(groups, eps, x, (w, b), None, out)
}

/// SpatialNorm (`Op::SpatialNorm`): GroupNorm with its affine, then `· scale + shift` read at
/// the nearest pixel of the `[N, h, w, C]` maps; one f32 expression, rounded once.
pub fn spatial_norm(
    groups: usize,
    eps: f32,
    x: &TensorRef,
    (w, b): (&TensorRef, &TensorRef),
    (scale, shift): (&TensorRef, &TensorRef),
    out: &mut TensorMut,
) -> Result<()> {
    group_norm_modulated(groups, eps, x, (Some(w), Some(b)), Some((scale, shift)), out)
}

fn group_norm_modulated(
    groups: usize,
    eps: f32,
    x: &TensorRef,
    (w, b): (Option<&TensorRef>, Option<&TensorRef>),
    modulation: Option<(&TensorRef, &TensorRef)>,
    out: &mut TensorMut,
) -> Result<()> {
    let c = *x.shape.last().unwrap_or(&1);
    // (scale, shift, h, w) of the modulation maps and x's width, for the nearest lookup.
    let modulation = modulation.map(|(sc, sh)| (f32_in(sc), f32_in(sh), sc.shape[1], sc.shape[2]));
    let (xh, xw) = if x.shape.len() == 4 { (x.shape[1], x.shape[2]) } else { (1, 1) };
    let n = x.shape[0];
    let xd = f32_in(x);
    let wd = w.map(f32_in);
    let bd = b.map(f32_in);
    with_f32_out(out, |o| {
        if o.is_empty() || c == 0 {
            return Ok(());
        }
        let img = o.len() / n;
        let cg = c / groups;
        let chunk = c * min_rows(c);
        let cnt = (img / c * cg) as f64;
        // Per-slab partial sums, one row of `groups` per slab (parallel over slabs), then
        // summed in slab order so the result is deterministic.
        let mut partial = Scratch::<f64>::zeroed(img.div_ceil(chunk) * groups);
        let mut group_sums = |src: &[f32], f: &(dyn Fn(usize, f32) -> f64 + Sync), sums: &mut [f64]| {
            partial.par_chunks_mut(groups).zip(src.par_chunks(chunk)).for_each(|(acc, slab)| {
                acc.fill(0.0);
                for row in slab.chunks_exact(c) {
                    for (gi, a) in acc.iter_mut().enumerate() {
                        *a += row[gi * cg..][..cg].iter().map(|&v| f(gi, v)).sum::<f64>();
                    }
                }
            });
            sums.fill(0.0);
            for acc in partial.chunks_exact(groups) {
                sums.iter_mut().zip(acc).for_each(|(s, a)| *s += a);
            }
        };
        let (mut mean, mut var) = (Scratch::<f64>::zeroed(groups), Scratch::<f64>::zeroed(groups));
        // y = (x - m[c]) * a[c] + s[c] with per-channel mean, rstd*weight and bias, so the
        // inner loop is a contiguous channel vector.
        let (mut m, mut a, mut s) = (Scratch::zeroed(c), Scratch::zeroed(c), Scratch::zeroed(c));
        for (im, (dst, src)) in o.chunks_mut(img).zip(xd.chunks(img)).enumerate() {
            group_sums(src, &|_, v| v as f64, &mut mean);
            mean.iter_mut().for_each(|s| *s /= cnt);
            group_sums(src, &|gi, v| (v as f64 - mean[gi]).powi(2), &mut var);
            for ch in 0..c {
                let gi = ch / cg;
                let rstd = 1.0 / (var[gi] / cnt + eps as f64).sqrt();
                m[ch] = mean[gi] as f32;
                a[ch] = (rstd * wd.as_ref().map_or(1.0, |w| w[ch] as f64)) as f32;
                s[ch] = bd.as_ref().map_or(0.0, |b| b[ch]);
            }
            let (m, a, s) = (&*m, &*a, &*s);
            let modulation = modulation.as_ref();
            dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).enumerate().for_each(|(ci, (d, x))| {
                for (r, (dr, xr)) in d.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
                    for ((((d, &x), &m), &a), &s) in dr.iter_mut().zip(xr).zip(m).zip(a).zip(s) {
                        *d = (x - m) * a + s;
                    }
                    if let Some((sc, sh, mh, mw)) = modulation {
                        let pix = ci * chunk / c + r;
                        let (py, px) = (pix / xw, pix % xw);
                        let src =
                            ((im * mh + nearest_index(*mh, xh, py)) * mw + nearest_index(*mw, xw, px)) * c;
                        for ((d, &k), &t) in dr.iter_mut().zip(&sc[src..src + c]).zip(&sh[src..src + c]) {
                            *d = *d * k + t;
                        }
                    }
                }
            });
        }
        Ok(())
    })
}
