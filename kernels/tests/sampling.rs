//! Resize, pooling, VQ lookup, grid sampling and deformable attention against direct
//! (non-separable, f64) evaluations of the PyTorch formulas.

mod common;
use common::*;
use focus_graph::{DType, Op, ResizeMode};

#[track_caller]
fn check(got: &[f32], want: &[f32], dt: DType, what: &str) {
    eprintln!("RELL2 {dt} {:.3e} {what}", rel_l2(got, want));
    assert_close(got, want, dt, what);
}

/// Keys cubic convolution kernel W(d) with parameter a.
fn keys(d: f64, a: f64) -> f64 {
    let d = d.abs();
    if d <= 1.0 {
        (a + 2.0) * d.powi(3) - (a + 3.0) * d * d + 1.0
    } else if d < 2.0 {
        a * d.powi(3) - 5.0 * a * d * d + 8.0 * a * d - 4.0 * a
    } else {
        0.0
    }
}

/// Weights over all `inp` source positions for output position `o` along one axis.
fn axis_weights(mode: ResizeMode, align: bool, aa: bool, inp: usize, out: usize, o: usize) -> Vec<f64> {
    let mut w = vec![0.0; inp];
    let last = inp as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last) as usize;
    let scale = if align {
        if out > 1 {
            (inp - 1) as f64 / (out - 1) as f64
        } else {
            0.0
        }
    } else {
        inp as f64 / out as f64
    };
    match mode {
        ResizeMode::Nearest => {
            // PyTorch computes this in f32: floor(o * (float)in/out).
            let s = ((o as f32) * (inp as f32 / out as f32)).floor() as i64;
            w[clamp(s)] = 1.0;
        }
        _ if aa => {
            // PIL-style: filter stretched by the downscale factor, centred on scale*(o+0.5),
            // evaluated at pixel centres j+0.5, normalised to sum 1.
            let stretch = scale.max(1.0);
            let center = scale * (o as f64 + 0.5);
            for (j, wj) in w.iter_mut().enumerate() {
                let d = (j as f64 + 0.5 - center) / stretch;
                *wj = if mode == ResizeMode::Bilinear { (1.0 - d.abs()).max(0.0) } else { keys(d, -0.5) };
            }
            let s: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= s);
        }
        ResizeMode::Bilinear => {
            let src = if align { scale * o as f64 } else { (scale * (o as f64 + 0.5) - 0.5).max(0.0) };
            let i0 = src.floor();
            let l = src - i0;
            w[clamp(i0 as i64)] += 1.0 - l;
            w[clamp(i0 as i64 + 1)] += l;
        }
        ResizeMode::Bicubic => {
            let src = if align { scale * o as f64 } else { scale * (o as f64 + 0.5) - 0.5 };
            let i0 = src.floor();
            let t = src - i0;
            for m in -1..=2i64 {
                w[clamp(i0 as i64 + m)] += keys(t - m as f64, -0.75);
            }
        }
    }
    w
}

fn resize_ref(
    x: &[f32],
    [n, h, wd, c]: [usize; 4],
    [ho, wo]: [usize; 2],
    mode: ResizeMode,
    align: bool,
    aa: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; n * ho * wo * c];
    for oy in 0..ho {
        let wy = axis_weights(mode, align, aa, h, ho, oy);
        for ox in 0..wo {
            let wx = axis_weights(mode, align, aa, wd, wo, ox);
            for b in 0..n {
                for ch in 0..c {
                    let mut s = 0.0;
                    for iy in 0..h {
                        for ix in 0..wd {
                            s += wy[iy] * wx[ix] * x[((b * h + iy) * wd + ix) * c + ch] as f64;
                        }
                    }
                    out[((b * ho + oy) * wo + ox) * c + ch] = s as f32;
                }
            }
        }
    }
    out
}

#[test]
fn resize_modes_up_down_align_antialias() {
    let mut seed = 10;
    let sizes: [([usize; 4], [usize; 2]); 5] = [
        ([2, 5, 7, 3], [11, 16]), // up
        ([1, 13, 17, 2], [4, 6]), // down (non-integer factors)
        ([1, 12, 16, 3], [6, 4]), // down (integer factors)
        ([1, 6, 9, 2], [13, 4]),  // mixed
        ([1, 4, 5, 1], [1, 1]),   // single output pixel
    ];
    for (xs, o) in sizes {
        for (mode, align, aa) in [
            (ResizeMode::Nearest, false, false),
            (ResizeMode::Bilinear, false, false),
            (ResizeMode::Bilinear, true, false),
            (ResizeMode::Bilinear, false, true),
            (ResizeMode::Bilinear, true, true),
            (ResizeMode::Bicubic, false, false),
            (ResizeMode::Bicubic, true, false),
            (ResizeMode::Bicubic, false, true),
            (ResizeMode::Bicubic, true, true),
        ] {
            for dt in FLOATS {
                seed += 1;
                let mut r = rng(seed);
                let x = round_trip(&rand_vec(&mut r, xs.iter().product(), -1.0, 1.0), dt);
                let op = Op::Resize { mode, out: o, align_corners: align, antialias: aa };
                let out = run_op(&op, &[&Owned::from_f32(&x, &xs, dt)]).unwrap();
                let want = resize_ref(&x, xs, o, mode, align, aa);
                check(
                    &out.to_f32(),
                    &want,
                    dt,
                    &format!("resize {mode:?} align {align} aa {aa} {xs:?}->{o:?}"),
                );
            }
        }
    }
}

#[test]
fn resize_known_values() {
    // 2x bilinear upsample of [0, 1] (align_corners=False): PyTorch gives [0, .25, .75, 1].
    let op = Op::Resize { mode: ResizeMode::Bilinear, out: [1, 4], align_corners: false, antialias: false };
    let out = run_op(&op, &[&Owned::from_f32(&[0.0, 1.0], &[1, 1, 2, 1], DType::F32)]).unwrap();
    assert_eq!(out.to_f32(), vec![0.0, 0.25, 0.75, 1.0]);
    // Antialiased bilinear 4 -> 2 averages with a triangle of width 4: weights 1/8, 3/8, 3/8, 1/8
    // clipped at the border: output 0 uses taps 0..3 with weights (3,3,1)/7.
    let op = Op::Resize { mode: ResizeMode::Bilinear, out: [1, 2], align_corners: false, antialias: true };
    let out = run_op(&op, &[&Owned::from_f32(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 4, 1], DType::F32)]).unwrap();
    let want = [(3.0 * 1.0 + 3.0 * 2.0 + 3.0) / 7.0, (2.0 + 3.0 * 3.0 + 3.0 * 4.0) / 7.0];
    check(&out.to_f32(), &want, DType::F32, "aa known");
    // Nearest 3 -> 5 picks floor(o * 0.6): [0, 0, 1, 1, 2].
    let op = Op::Resize { mode: ResizeMode::Nearest, out: [1, 5], align_corners: false, antialias: false };
    let out = run_op(&op, &[&Owned::from_f32(&[10.0, 20.0, 30.0], &[1, 1, 3, 1], DType::F32)]).unwrap();
    assert_eq!(out.to_f32(), vec![10.0, 10.0, 20.0, 20.0, 30.0]);
}

#[test]
fn avg_pool_padding_modes() {
    let mut seed = 100;
    for dt in FLOATS {
        for (xs, k, s, p) in [
            ([2usize, 7, 9, 3], [3usize, 3usize], [2usize, 2usize], [1usize, 1usize]),
            ([1, 8, 8, 2], [2, 2], [2, 2], [0, 0]),
            ([1, 5, 6, 4], [3, 2], [1, 3], [1, 1]),
        ] {
            for cip in [true, false] {
                seed += 1;
                let mut r = rng(seed);
                let x = round_trip(&rand_vec(&mut r, xs.iter().product(), -2.0, 2.0), dt);
                let op = Op::AvgPool2d { kernel: k, stride: s, padding: p, count_include_pad: cip };
                let out = run_op(&op, &[&Owned::from_f32(&x, &xs, dt)]).unwrap();
                let [n, h, w, c] = xs;
                let (ho, wo) = (out.shape[1], out.shape[2]);
                let mut want = vec![0f32; n * ho * wo * c];
                for b in 0..n {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            for ch in 0..c {
                                let (mut sum, mut cnt) = (0f64, 0);
                                for ky in 0..k[0] {
                                    for kx in 0..k[1] {
                                        let iy = (oy * s[0] + ky) as i64 - p[0] as i64;
                                        let ix = (ox * s[1] + kx) as i64 - p[1] as i64;
                                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                            sum +=
                                                x[((b * h + iy as usize) * w + ix as usize) * c + ch] as f64;
                                            cnt += 1;
                                        }
                                    }
                                }
                                let div = if cip { k[0] * k[1] } else { cnt };
                                want[((b * ho + oy) * wo + ox) * c + ch] = (sum / div as f64) as f32;
                            }
                        }
                    }
                }
                check(&out.to_f32(), &want, dt, &format!("avg_pool {xs:?} k{k:?} s{s:?} p{p:?} cip {cip}"));
            }
        }
    }
}

fn vq_ref(x: &[f32], cb: &[f32], d: usize) -> Vec<(usize, Vec<f64>)> {
    x.chunks(d)
        .map(|row| {
            let dist: Vec<f64> = cb
                .chunks(d)
                .map(|c| row.iter().zip(c).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum())
                .collect();
            let mut best = 0;
            for (k, &v) in dist.iter().enumerate() {
                if v < dist[best] {
                    best = k;
                }
            }
            (best, dist)
        })
        .collect()
}

#[test]
fn vq_nearest_random_dtypes_and_large_codebook() {
    let mut seed = 200;
    for dt in FLOATS {
        for (xs, k, d) in
            [(vec![5usize, 7, 8], 300usize, 8usize), (vec![64, 32], 4096, 32), (vec![16, 32], 98304, 32)]
        {
            if k == 98304 && dt != DType::F32 {
                continue;
            }
            seed += 1;
            let mut r = rng(seed);
            let x = round_trip(&rand_vec(&mut r, xs.iter().product(), -1.0, 1.0), dt);
            let cb = round_trip(&rand_vec(&mut r, k * d, -1.0, 1.0), dt);
            let out =
                run_op(&Op::VqNearest, &[&Owned::from_f32(&x, &xs, dt), &Owned::from_f32(&cb, &[k, d], dt)])
                    .unwrap();
            assert_eq!(out.shape, xs[..xs.len() - 1].to_vec());
            for (i, (g, (want, dist))) in out.to_i64().iter().zip(vq_ref(&x, &cb, d)).enumerate() {
                let g = *g as usize;
                // Exact match, unless the two true distances agree to f32 rounding.
                assert!(
                    g == want || (dist[g] - dist[want]).abs() <= 1e-6 * dist[want].max(1e-6),
                    "row {i}: got {g} ({}) want {want} ({}) {dt} K={k}",
                    dist.get(g).copied().unwrap_or(f64::NAN),
                    dist[want]
                );
            }
        }
    }
}

#[test]
fn vq_ties_resolve_to_lowest_index() {
    let d = 4;
    let mut r = rng(300);
    let mut cb = rand_vec(&mut r, 50 * d, -1.0, 1.0);
    // Rows 7, 20 and 41 are identical; x sits exactly on them.
    let dup: Vec<f32> = cb[20 * d..21 * d].to_vec();
    cb[7 * d..8 * d].copy_from_slice(&dup);
    cb[41 * d..42 * d].copy_from_slice(&dup);
    // Rows 33 and 12 are equidistant (exactly) from y = (3, 3, 3, 3).
    cb[33 * d..34 * d].copy_from_slice(&[4.0, 3.0, 3.0, 3.0]);
    cb[12 * d..13 * d].copy_from_slice(&[3.0, 2.0, 3.0, 3.0]);
    // A row near the duplicates, not on them.
    let mut near = dup.clone();
    near[0] += 1e-3;
    let mut x = dup.clone();
    x.extend([3.0f32; 4]);
    x.extend(&near);
    let out = run_op(
        &Op::VqNearest,
        &[&Owned::from_f32(&x, &[3, d], DType::F32), &Owned::from_f32(&cb, &[50, d], DType::F32)],
    )
    .unwrap();
    assert_eq!(out.to_i64(), vec![7, 12, 7]);
}

/// grid_sample reference: bilinear, zero padding, f64.
fn grid_sample_ref(
    x: &[f32],
    [n, h, w, c]: [usize; 4],
    g: &[f32],
    ho: usize,
    wo: usize,
    align: bool,
) -> Vec<f32> {
    let un = |v: f64, size: usize| {
        if align {
            (v + 1.0) / 2.0 * (size as f64 - 1.0)
        } else {
            ((v + 1.0) * size as f64 - 1.0) / 2.0
        }
    };
    let mut out = vec![0f32; n * ho * wo * c];
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                let gi = ((b * ho + oy) * wo + ox) * 2;
                let (px, py) = (un(g[gi] as f64, w), un(g[gi + 1] as f64, h));
                let (x0, y0) = (px.floor(), py.floor());
                for ch in 0..c {
                    let mut s = 0.0;
                    for (dx, dy) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
                        let (xi, yi) = (x0 + dx, y0 + dy);
                        let wt = (1.0 - (px - xi).abs()) * (1.0 - (py - yi).abs());
                        if xi >= 0.0 && yi >= 0.0 && xi < w as f64 && yi < h as f64 {
                            s += wt * x[((b * h + yi as usize) * w + xi as usize) * c + ch] as f64;
                        }
                    }
                    out[((b * ho + oy) * wo + ox) * c + ch] = s as f32;
                }
            }
        }
    }
    out
}

#[test]
fn grid_sample_align_and_padding() {
    let mut seed = 400;
    for dt in FLOATS {
        for align in [false, true] {
            for (xs, ho, wo) in [([2usize, 5usize, 7usize, 3usize], 4usize, 6usize), ([1, 9, 4, 5], 11, 3)] {
                seed += 1;
                let mut r = rng(seed);
                let x = round_trip(&rand_vec(&mut r, xs.iter().product(), -1.0, 1.0), dt);
                // Some samples fall outside [-1, 1] to exercise the zero padding.
                let g = round_trip(&rand_vec(&mut r, xs[0] * ho * wo * 2, -1.3, 1.3), dt);
                let op = Op::GridSample { align_corners: align };
                let out = run_op(
                    &op,
                    &[&Owned::from_f32(&x, &xs, dt), &Owned::from_f32(&g, &[xs[0], ho, wo, 2], dt)],
                )
                .unwrap();
                let want = grid_sample_ref(&x, xs, &g, ho, wo, align);
                check(&out.to_f32(), &want, dt, &format!("grid_sample align {align} {xs:?}"));
            }
        }
    }
}

#[test]
fn ms_deform_attn_matches_grid_sample_formulation() {
    let levels = vec![[4usize, 5usize], [2, 3], [1, 1]];
    let (n, q, hh, dh, p) = (2usize, 3usize, 2usize, 4usize, 3usize);
    let nl = levels.len();
    let s: usize = levels.iter().map(|l| l[0] * l[1]).sum();
    let mut seed = 500;
    for dt in FLOATS {
        seed += 1;
        let mut r = rng(seed);
        let v = round_trip(&rand_vec(&mut r, n * s * hh * dh, -1.0, 1.0), dt);
        let loc = round_trip(&rand_vec(&mut r, n * q * hh * nl * p * 2, -0.1, 1.1), dt);
        let wts = round_trip(&rand_vec(&mut r, n * q * hh * nl * p, 0.0, 1.0), dt);
        let op = Op::MsDeformAttn { levels: levels.clone() };
        let out = run_op(
            &op,
            &[
                &Owned::from_f32(&v, &[n, s, hh, dh], dt),
                &Owned::from_f32(&loc, &[n, q, hh, nl, p, 2], dt),
                &Owned::from_f32(&wts, &[n, q, hh, nl, p], dt),
            ],
        )
        .unwrap();
        // As ms_deform_attn_core_pytorch: per level and head, grid_sample (align_corners=False)
        // of the [h_l, w_l, Dh] value map at grid 2*loc-1, weighted and summed.
        let mut want = vec![0f32; n * q * hh * dh];
        let mut start = 0;
        for (l, &[lh, lw]) in levels.iter().enumerate() {
            for b in 0..n {
                for head in 0..hh {
                    let mut img = vec![0f32; lh * lw * dh];
                    for pos in 0..lh * lw {
                        for e in 0..dh {
                            img[pos * dh + e] = v[((b * s + start + pos) * hh + head) * dh + e];
                        }
                    }
                    let mut grid = vec![0f32; q * p * 2];
                    for qi in 0..q {
                        for pi in 0..p {
                            for t in 0..2 {
                                let li = (((((b * q + qi) * hh + head) * nl + l) * p + pi) * 2) + t;
                                grid[(qi * p + pi) * 2 + t] = 2.0 * loc[li] - 1.0;
                            }
                        }
                    }
                    let sampled = grid_sample_ref(&img, [1, lh, lw, dh], &grid, q, p, false);
                    for qi in 0..q {
                        for pi in 0..p {
                            let wv = wts[(((b * q + qi) * hh + head) * nl + l) * p + pi];
                            for e in 0..dh {
                                want[((b * q + qi) * hh + head) * dh + e] +=
                                    wv * sampled[(qi * p + pi) * dh + e];
                            }
                        }
                    }
                }
            }
            start += lh * lw;
        }
        check(&out.to_f32(), &want, dt, "ms_deform_attn");
    }
}
