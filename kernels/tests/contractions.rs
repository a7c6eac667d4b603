//! MatMul, Linear and Conv2d against naive f64 references.

mod common;
use common::*;
use focus_graph::{Conv2dParams, DType, Op};

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Flat index into a batch of shape `src` for multi-index `idx` over broadcast shape `dst`.
fn bcast_index(idx: &[usize], src: &[usize]) -> usize {
    let off = idx.len() - src.len();
    let st = strides(src);
    (0..src.len()).map(|i| if src[i] == 1 { 0 } else { idx[off + i] * st[i] }).sum()
}

fn ref_matmul(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    ta: bool,
    tb: bool,
) -> (Vec<f64>, Vec<usize>) {
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k) = if ta { (sa[ra - 1], sa[ra - 2]) } else { (sa[ra - 2], sa[ra - 1]) };
    let n = if tb { sb[rb - 2] } else { sb[rb - 1] };
    let (ba, bb) = (&sa[..ra - 2], &sb[..rb - 2]);
    let r = ba.len().max(bb.len());
    let dim = |s: &[usize], i: usize| if i < r - s.len() { 1 } else { s[i - (r - s.len())] };
    let batch: Vec<usize> = (0..r).map(|i| dim(ba, i).max(dim(bb, i))).collect();
    let nb: usize = batch.iter().product();
    let mut out = vec![0f64; nb * m * n];
    for bi in 0..nb {
        let idx = unravel(bi, &batch);
        let (oa, ob) = (bcast_index(&idx, ba) * m * k, bcast_index(&idx, bb) * k * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f64;
                for p in 0..k {
                    let x = if ta { a[oa + p * m + i] } else { a[oa + i * k + p] };
                    let y = if tb { b[ob + j * k + p] } else { b[ob + p * n + j] };
                    acc += x as f64 * y as f64;
                }
                out[(bi * m + i) * n + j] = acc;
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (out, shape)
}

#[test]
fn matmul_all_transposes_broadcast_dtypes() {
    // (batch a, batch b, m, k, n)
    type Case = (&'static [usize], &'static [usize], usize, usize, usize);
    let cases: [Case; 7] = [
        (&[], &[], 1, 1, 1),
        (&[], &[], 17, 33, 3),
        (&[3], &[3], 5, 17, 9),
        (&[2, 1], &[3], 4, 7, 6),
        (&[1], &[2, 3], 3, 65, 2),
        (&[4, 3], &[], 33, 16, 17),
        (&[2], &[], 65, 70, 66),
    ];
    let mut seed = 100;
    for dtype in FLOATS {
        for &(ba, bb, m, k, n) in &cases {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                seed += 2;
                let mut sa = ba.to_vec();
                sa.extend(if ta { [k, m] } else { [m, k] });
                let mut sb = bb.to_vec();
                sb.extend(if tb { [n, k] } else { [k, n] });
                let (a, av) = input(seed, &sa, dtype);
                let (b, bv) = input(seed + 1, &sb, dtype);
                let got = run_op(&Op::MatMul { trans_a: ta, trans_b: tb }, &[&a, &b]).unwrap();
                let (want, shape) = ref_matmul(&av, &sa, &bv, &sb, ta, tb);
                assert_eq!(got.shape, shape);
                check_f64(&got, &want, dtype, &format!("matmul {dtype:?} {sa:?}x{sb:?} ta={ta} tb={tb}"));
            }
        }
    }
}

/// Materialised transpose of the last two dims.
fn transpose_last2(v: &[f32], shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let r = shape.len();
    let (rows, cols) = (shape[r - 2], shape[r - 1]);
    let mut out = vec![0f32; v.len()];
    for (src, dst) in v.chunks(rows * cols).zip(out.chunks_mut(rows * cols)) {
        for i in 0..rows {
            for j in 0..cols {
                dst[j * rows + i] = src[i * cols + j];
            }
        }
    }
    let mut s = shape.to_vec();
    s.swap(r - 2, r - 1);
    (out, s)
}

#[test]
fn matmul_permuted_inputs_match_transpose_flags() {
    let (sa, sb) = ([3usize, 17, 33], [3usize, 33, 9]);
    let a = rand_vec(&mut rng(7), 3 * 17 * 33, -1.0, 1.0);
    let b = rand_vec(&mut rng(8), 3 * 33 * 9, -1.0, 1.0);
    let (at, sat) = transpose_last2(&a, &sa);
    let (bt, sbt) = transpose_last2(&b, &sb);
    let mm = |ta, tb, a: &[f32], sa: &[usize], b: &[f32], sb: &[usize]| {
        let (a, b) = (Owned::from_f32(a, sa, DType::F32), Owned::from_f32(b, sb, DType::F32));
        run_op(&Op::MatMul { trans_a: ta, trans_b: tb }, &[&a, &b]).unwrap().to_f32()
    };
    let base = mm(false, false, &a, &sa, &b, &sb);
    let routes = [
        mm(true, false, &at, &sat, &b, &sb),
        mm(false, true, &a, &sa, &bt, &sbt),
        mm(true, true, &at, &sat, &bt, &sbt),
    ];
    for r in &routes {
        assert!(rel_l2(r, &base) <= 1e-6, "route differs: {:.2e}", rel_l2(r, &base));
    }
}

#[test]
fn linear_with_and_without_bias() {
    // [3, 601]: a few rows over several 256-wide blocks of a half-precision weight (the GEMV).
    let cases: [(&[usize], usize); 5] =
        [(&[17], 5), (&[2, 3, 17], 9), (&[1, 33], 1), (&[65, 40], 33), (&[3, 601], 7)];
    let mut seed = 300;
    for dtype in FLOATS {
        for &(xs, n) in &cases {
            for with_bias in [false, true] {
                seed += 3;
                let k = *xs.last().unwrap();
                let (x, xv) = input(seed, xs, dtype);
                let (w, wv) = input(seed + 1, &[n, k], dtype);
                let (b, bv) = input(seed + 2, &[n], dtype);
                let ins: Vec<&Owned> = if with_bias { vec![&x, &w, &b] } else { vec![&x, &w] };
                let got = run_op(&Op::Linear, &ins).unwrap();
                let rows = xv.len() / k;
                let mut want = vec![0f64; rows * n];
                for r in 0..rows {
                    for j in 0..n {
                        let mut acc = if with_bias { bv[j] as f64 } else { 0.0 };
                        for p in 0..k {
                            acc += xv[r * k + p] as f64 * wv[j * k + p] as f64;
                        }
                        want[r * n + j] = acc;
                    }
                }
                check_f64(&got, &want, dtype, &format!("linear {dtype:?} x{xs:?} n={n} bias={with_bias}"));
            }
        }
    }
}

#[test]
fn gated_linear_is_act_of_one_projection_times_the_other() {
    use focus_graph::UnaryOp;
    let cases: [(&[usize], usize, UnaryOp); 3] =
        [(&[1, 24], 7, UnaryOp::Silu), (&[2, 3, 17], 9, UnaryOp::Gelu), (&[5, 40], 33, UnaryOp::QuickGelu)];
    let mut seed = 700;
    for dtype in FLOATS {
        for &(xs, n, act) in &cases {
            for with_bias in [false, true] {
                seed += 5;
                let k = *xs.last().unwrap();
                let (x, xv) = input(seed, xs, dtype);
                let (wg, wgv) = input(seed + 1, &[n, k], dtype);
                let (wu, wuv) = input(seed + 2, &[n, k], dtype);
                let (bg, bgv) = input(seed + 3, &[n], dtype);
                let (bu, buv) = input(seed + 4, &[n], dtype);
                let ins: Vec<&Owned> =
                    if with_bias { vec![&x, &wg, &wu, &bg, &bu] } else { vec![&x, &wg, &wu] };
                let got = run_op(&Op::GatedLinear { act }, &ins).unwrap();
                let f = |v: f64| match act {
                    UnaryOp::Silu => v / (1.0 + (-v).exp()),
                    UnaryOp::QuickGelu => v / (1.0 + (-1.702 * v).exp()),
                    _ => 0.5 * v * (1.0 + erf_series(v / std::f64::consts::SQRT_2)),
                };
                let rows = xv.len() / k;
                let mut want = vec![0f64; rows * n];
                for r in 0..rows {
                    for j in 0..n {
                        let dot = |w: &[f32], b: f64| {
                            (0..k).map(|p| xv[r * k + p] as f64 * w[j * k + p] as f64).sum::<f64>() + b
                        };
                        let (bgj, buj) = if with_bias { (bgv[j] as f64, buv[j] as f64) } else { (0.0, 0.0) };
                        want[r * n + j] = f(dot(&wgv, bgj)) * dot(&wuv, buj);
                    }
                }
                check_f64(
                    &got,
                    &want,
                    dtype,
                    &format!("gated_linear {act:?} {dtype:?} x{xs:?} n={n} bias={with_bias}"),
                );
            }
        }
    }
}

#[test]
fn multi_linear_writes_each_projection_as_its_own_block() {
    let cases: [(&[usize], &[usize]); 3] =
        [(&[1, 1, 24], &[16, 8, 8]), (&[3, 17], &[5, 9]), (&[2, 2, 12], &[7])];
    let mut seed = 900;
    for dtype in FLOATS {
        for &(xs, ns) in &cases {
            for with_bias in [false, true] {
                seed += 10;
                let k = *xs.last().unwrap();
                let rows = xs.iter().product::<usize>() / k;
                let (x, xv) = input(seed, xs, dtype);
                let ws: Vec<_> =
                    ns.iter().enumerate().map(|(i, &n)| input(seed + 1 + i as u64, &[n, k], dtype)).collect();
                let bs: Vec<_> =
                    ns.iter().enumerate().map(|(i, &n)| input(seed + 5 + i as u64, &[n], dtype)).collect();
                let mut ins: Vec<&Owned> = vec![&x];
                ins.extend(ws.iter().map(|w| &w.0));
                if with_bias {
                    ins.extend(bs.iter().map(|b| &b.0));
                }
                let got = run_op(&Op::MultiLinear { parts: ns.len() }, &ins).unwrap();
                let mut want = Vec::new();
                for (p, &n) in ns.iter().enumerate() {
                    for r in 0..rows {
                        for j in 0..n {
                            let b = if with_bias { bs[p].1[j] as f64 } else { 0.0 };
                            want.push(
                                b + (0..k)
                                    .map(|q| xv[r * k + q] as f64 * ws[p].1[j * k + q] as f64)
                                    .sum::<f64>(),
                            );
                        }
                    }
                }
                check_f64(
                    &got,
                    &want,
                    dtype,
                    &format!("multi_linear {dtype:?} x{xs:?} n={ns:?} bias={with_bias}"),
                );
            }
        }
    }
}

/// erf by its Maclaurin series in f64 (cancellation stays below 1e-6 for |x| < 6; ±1 beyond).
fn erf_series(x: f64) -> f64 {
    if x.abs() >= 6.0 {
        return x.signum();
    }
    let mut sum = x;
    let mut term = x;
    let x2 = x * x;
    for n in 1..200 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

/// Direct convolution, NHWC x, [Cout, KH, KW, Cin/g] weight.
fn ref_conv(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    b: Option<&[f32]>,
    p: &Conv2dParams,
) -> Vec<f64> {
    let (n, h, wd, cin) = (xs[0], xs[1], xs[2], xs[3]);
    let (co, kh, kw, cg) = (ws[0], ws[1], ws[2], ws[3]);
    let cog = co / p.groups;
    let ho = (h + 2 * p.padding[0] - p.dilation[0] * (kh - 1) - 1) / p.stride[0] + 1;
    let wo = (wd + 2 * p.padding[1] - p.dilation[1] * (kw - 1) - 1) / p.stride[1] + 1;
    let mut out = vec![0f64; n * ho * wo * co];
    for img in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                for oc in 0..co {
                    let g = oc / cog;
                    let mut acc = b.map_or(0.0, |b| b[oc] as f64);
                    for ty in 0..kh {
                        for tx in 0..kw {
                            let iy = (oy * p.stride[0] + ty * p.dilation[0]) as isize - p.padding[0] as isize;
                            let ix = (ox * p.stride[1] + tx * p.dilation[1]) as isize - p.padding[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for c in 0..cg {
                                let xv = x[((img * h + iy as usize) * wd + ix as usize) * cin + g * cg + c];
                                let wv = w[((oc * kh + ty) * kw + tx) * cg + c];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((img * ho + oy) * wo + ox) * co + oc] = acc;
                }
            }
        }
    }
    out
}

fn conv_case(
    seed: u64,
    dtype: DType,
    xs: [usize; 4],
    ws: [usize; 4],
    p: Conv2dParams,
    bias: bool,
    what: &str,
) {
    let (x, xv) = input(seed, &xs, dtype);
    let (w, wv) = input(seed + 1, &ws, dtype);
    let (b, bv) = input(seed + 2, &[ws[0]], dtype);
    let ins: Vec<&Owned> = if bias { vec![&x, &w, &b] } else { vec![&x, &w] };
    let got = run_op(&Op::Conv2d(p.clone()), &ins).unwrap();
    let want = ref_conv(&xv, &xs, &wv, &ws, bias.then_some(&bv[..]), &p);
    check_f64(&got, &want, dtype, &format!("conv {what} {dtype:?} bias={bias}"));
}

fn params(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: [stride; 2], padding: [padding; 2], dilation: [dilation; 2], groups }
}

#[test]
fn conv2d_paths() {
    let cases: Vec<(&str, [usize; 4], [usize; 4], Conv2dParams)> = vec![
        ("3x3 s2 p1", [2, 9, 11, 6], [4, 3, 3, 6], params(2, 1, 1, 1)),
        ("3x3 dil2 p2", [1, 10, 7, 5], [3, 3, 3, 5], params(1, 2, 2, 1)),
        (
            "grouped 3x2 asym",
            [2, 8, 9, 6],
            [9, 3, 2, 2],
            Conv2dParams { stride: [1, 2], padding: [1, 0], dilation: [1, 2], groups: 3 },
        ),
        ("depthwise 7x7 p3", [1, 12, 13, 17], [17, 7, 7, 1], params(1, 3, 1, 17)),
        ("depthwise 3x3 s2", [2, 9, 8, 33], [33, 3, 3, 1], params(2, 1, 1, 33)),
        ("depthwise x2 multiplier", [1, 7, 6, 3], [6, 3, 3, 1], params(1, 1, 1, 3)),
        ("1x1", [2, 5, 7, 17], [3, 1, 1, 17], params(1, 0, 1, 1)),
        ("1x1 grouped", [1, 4, 5, 6], [4, 1, 1, 3], params(1, 0, 1, 2)),
        ("1x1 s2", [1, 7, 9, 5], [8, 1, 1, 5], params(2, 0, 1, 1)),
        ("1x1 single pixel", [3, 1, 1, 1], [1, 1, 1, 1], params(1, 0, 1, 1)),
        ("no input channels", [1, 4, 5, 0], [2, 3, 3, 0], params(1, 1, 1, 1)),
    ];
    let mut seed = 500;
    for dtype in FLOATS {
        for (what, xs, ws, p) in &cases {
            for bias in [false, true] {
                seed += 3;
                conv_case(seed, dtype, *xs, *ws, p.clone(), bias, what);
            }
        }
    }
}

#[test]
fn conv2d_im2col_chunks() {
    // A row of im2col is wider than the chunk budget, so every output row is its own chunk.
    conv_case(900, DType::F32, [1, 4, 1100, 128], [3, 5, 5, 128], params(1, 2, 1, 1), true, "chunked");
}
