//! Softmax, LayerNorm, RMSNorm, GroupNorm and SpatialNorm against naive f64 references.

mod common;
use common::*;
use focus_graph::{DType, Op};
use half::{bf16, f16};

#[test]
fn softmax_every_axis() {
    let shapes: [&[usize]; 4] = [&[1], &[3, 17], &[2, 33, 5], &[4, 1, 3, 65]];
    let mut seed = 10;
    for dtype in FLOATS {
        for shape in shapes {
            for axis in 0..shape.len() {
                seed += 1;
                // Wide range so max-subtraction matters (exp(80) overflows nothing, exp(100) would in f32 sums).
                let (x, xv) = input_in(seed, shape, dtype, -60.0, 90.0);
                let got = run_op(&Op::Softmax { axis }, &[&x]).unwrap();
                let len = shape[axis];
                let inner: usize = shape[axis + 1..].iter().product();
                let mut want = vec![0f64; xv.len()];
                for o in 0..xv.len() / (len * inner) {
                    for i in 0..inner {
                        let at = |j: usize| (o * len + j) * inner + i;
                        let m = (0..len).map(|j| xv[at(j)] as f64).fold(f64::MIN, f64::max);
                        let s: f64 = (0..len).map(|j| (xv[at(j)] as f64 - m).exp()).sum();
                        for j in 0..len {
                            want[at(j)] = (xv[at(j)] as f64 - m).exp() / s;
                        }
                    }
                }
                check_f64(&got, &want, dtype, &format!("softmax {shape:?} axis {axis}"));
            }
        }
    }
}

#[test]
fn layer_norm_affine_variants() {
    let shapes: [&[usize]; 4] = [&[1, 1], &[3, 17], &[2, 5, 33], &[65]];
    let mut seed = 100;
    for dtype in FLOATS {
        for shape in shapes {
            for (with_w, with_b) in [(false, false), (true, false), (true, true)] {
                seed += 3;
                let c = *shape.last().unwrap();
                // Offset mean so a one-pass variance would lose precision.
                let (x, xv) = input_in(seed, shape, dtype, 3.0, 5.0);
                let (w, wv) = input_in(seed + 1, &[c], dtype, -2.0, 2.0);
                let (b, bv) = input_in(seed + 2, &[c], dtype, -1.0, 1.0);
                let mut ins = vec![&x];
                if with_w {
                    ins.push(&w);
                }
                if with_b {
                    ins.push(&b);
                }
                let eps = 1e-5;
                let got = run_op(&Op::LayerNorm { eps }, &ins).unwrap();
                let mut want = vec![0f64; xv.len()];
                for (r, row) in xv.chunks(c).enumerate() {
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
                    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
                    for i in 0..c {
                        let mut y = (row[i] as f64 - mean) / (var + eps as f64).sqrt();
                        if with_w {
                            y *= wv[i] as f64;
                        }
                        if with_b {
                            y += bv[i] as f64;
                        }
                        want[r * c + i] = y;
                    }
                }
                check_f64(&got, &want, dtype, &format!("layer_norm {shape:?} w={with_w} b={with_b}"));
            }
        }
    }
}

fn round_to(v: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

#[test]
fn rms_norm_with_and_without_weight() {
    let shapes: [&[usize]; 3] = [&[1, 3], &[4, 17], &[2, 3, 65]];
    let mut seed = 200;
    for dtype in FLOATS {
        for shape in shapes {
            for with_w in [false, true] {
                seed += 2;
                let c = *shape.last().unwrap();
                let (x, xv) = input_in(seed, shape, dtype, -3.0, 3.0);
                let (w, wv) = input_in(seed + 1, &[c], dtype, -2.0, 2.0);
                let ins = if with_w { vec![&x, &w] } else { vec![&x] };
                let eps = 1e-6;
                let got = run_op(&Op::RmsNorm { eps }, &ins).unwrap();
                let mut want = vec![0f64; xv.len()];
                for (r, row) in xv.chunks(c).enumerate() {
                    let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c as f64;
                    for i in 0..c {
                        // HF Qwen2: normalised value is cast to the input dtype before the weight.
                        let y = round_to(row[i] as f64 / (ms + eps as f64).sqrt(), dtype);
                        want[r * c + i] = if with_w { y * wv[i] as f64 } else { y };
                    }
                }
                check_f64(&got, &want, dtype, &format!("rms_norm {shape:?} w={with_w}"));
                if dtype != DType::F32 {
                    // The tolerance cannot see the intermediate rounding, but exact matches can:
                    // nearly every element equals the reference rounded to the dtype.
                    let g = got.to_f32();
                    let off = g.iter().zip(&want).filter(|(g, w)| **g as f64 != round_to(**w, dtype)).count();
                    assert!(off * 50 <= g.len(), "rms_norm {dtype:?}: {off}/{} elements differ", g.len());
                }
            }
        }
    }
}

#[test]
fn group_norm_channels_last() {
    // (shape [N, ..., C], groups)
    let cases: [(&[usize], usize); 5] =
        [(&[1, 3], 1), (&[2, 5, 6], 3), (&[2, 4, 7, 12], 4), (&[1, 9, 9, 33], 11), (&[3, 2, 2, 3, 8], 8)];
    let mut seed = 300;
    for dtype in FLOATS {
        for (shape, groups) in cases {
            for (with_w, with_b) in [(false, false), (true, false), (true, true)] {
                seed += 3;
                let c = *shape.last().unwrap();
                let (x, xv) = input_in(seed, shape, dtype, 1.0, 4.0);
                let (w, wv) = input_in(seed + 1, &[c], dtype, -2.0, 2.0);
                let (b, bv) = input_in(seed + 2, &[c], dtype, -1.0, 1.0);
                let ins = match (with_w, with_b) {
                    (true, true) => vec![&x, &w, &b],
                    (true, false) => vec![&x, &w],
                    _ => vec![&x],
                };
                let eps = 1e-5;
                let got = run_op(&Op::GroupNorm { groups, eps }, &ins).unwrap();
                let n = shape[0];
                let per = xv.len() / n;
                let cg = c / groups;
                let mut want = vec![0f64; xv.len()];
                for img in 0..n {
                    for g in 0..groups {
                        let idx: Vec<usize> = (0..per / c)
                            .flat_map(|s| (0..cg).map(move |j| img * per + s * c + g * cg + j))
                            .collect();
                        let cnt = idx.len() as f64;
                        let mean = idx.iter().map(|&i| xv[i] as f64).sum::<f64>() / cnt;
                        let var = idx.iter().map(|&i| (xv[i] as f64 - mean).powi(2)).sum::<f64>() / cnt;
                        for &i in &idx {
                            let ch = i % c;
                            let mut y = (xv[i] as f64 - mean) / (var + eps as f64).sqrt();
                            if with_w {
                                y *= wv[ch] as f64;
                            }
                            if with_b {
                                y += bv[ch] as f64;
                            }
                            want[i] = y;
                        }
                    }
                }
                check_f64(
                    &got,
                    &want,
                    dtype,
                    &format!("group_norm {shape:?} g={groups} w={with_w} b={with_b}"),
                );
            }
        }
    }
}

#[test]
fn spatial_norm_modulates_at_the_nearest_pixel() {
    // (x [N, H, W, C], modulation h × w, groups): equal, integer (MoVQ's ×2…×16) and
    // non-integer ratios.
    let cases: [([usize; 4], [usize; 2], usize); 4] = [
        ([1, 4, 4, 8], [4, 4], 2),
        ([2, 8, 12, 12], [2, 3], 4),
        ([1, 7, 9, 6], [3, 4], 3),
        ([1, 16, 16, 4], [1, 1], 1),
    ];
    let nearest = |inp: usize, out: usize, i: usize| -> usize {
        (((i as f32) * (inp as f32 / out as f32)).floor() as usize).min(inp - 1)
    };
    let mut seed = 900;
    for dtype in FLOATS {
        for (shape, [mh, mw], groups) in cases {
            seed += 5;
            let [n, h, w, c] = shape;
            let (x, xv) = input_in(seed, &shape, dtype, -1.0, 3.0);
            let (wt, wv) = input_in(seed + 1, &[c], dtype, 0.5, 1.5);
            let (b, bv) = input_in(seed + 2, &[c], dtype, -0.5, 0.5);
            let (sc, scv) = input_in(seed + 3, &[n, mh, mw, c], dtype, -2.0, 2.0);
            let (sh, shv) = input_in(seed + 4, &[n, mh, mw, c], dtype, -1.0, 1.0);
            let eps = 1e-6;
            let got = run_op(&Op::SpatialNorm { groups, eps }, &[&x, &wt, &b, &sc, &sh]).unwrap();
            let cg = c / groups;
            let mut want = vec![0f64; xv.len()];
            for img in 0..n {
                for g in 0..groups {
                    let at = |p: usize, j: usize| (img * h * w + p) * c + g * cg + j;
                    let vals: Vec<f64> = (0..h * w)
                        .flat_map(|p| (0..cg).map(move |j| at(p, j)))
                        .map(|i| xv[i] as f64)
                        .collect();
                    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                    for p in 0..h * w {
                        let src = (img * mh + nearest(mh, h, p / w)) * mw + nearest(mw, w, p % w);
                        for j in 0..cg {
                            let ch = g * cg + j;
                            let y = (xv[at(p, j)] as f64 - mean) / (var + eps as f64).sqrt() * wv[ch] as f64
                                + bv[ch] as f64;
                            want[at(p, j)] = y * scv[src * c + ch] as f64 + shv[src * c + ch] as f64;
                        }
                    }
                }
            }
            check_f64(&got, &want, dtype, &format!("spatial_norm {shape:?} from {mh}x{mw} g={groups}"));
        }
    }
}
