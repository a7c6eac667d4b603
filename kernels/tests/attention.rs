//! Attention and RoPE against naive f64 references.

mod common;
use common::*;
use focus_graph::{DType, Op, RopeKind};
use rand::Rng;

/// Mask values as the reference sees them.
enum RefMask {
    None,
    Bool(Vec<bool>, Vec<usize>),
    Add(Vec<f32>, Vec<usize>),
}

/// Index into a mask of shape `ms` broadcast to [B, Hq, Tq, Tk].
fn mask_at(ms: &[usize], idx: [usize; 4]) -> usize {
    let off = 4 - ms.len();
    let mut flat = 0;
    for (d, &len) in ms.iter().enumerate() {
        let i = if len == 1 { 0 } else { idx[off + d] };
        flat = flat * len + i;
    }
    flat
}

/// q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv] -> [B,Tq,Hq,Dv].
#[allow(clippy::too_many_arguments)]
fn ref_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (b, tq, tk, hq, hkv, d, dv): (usize, usize, usize, usize, usize, usize, usize),
    mask: &RefMask,
    causal: bool,
    scale: f32,
) -> Vec<f64> {
    let mut out = vec![0f64; b * tq * hq * dv];
    for bi in 0..b {
        for h in 0..hq {
            let hk = h / (hq / hkv);
            for i in 0..tq {
                let mut s = vec![f64::NEG_INFINITY; tk];
                for (j, sj) in s.iter_mut().enumerate() {
                    if causal && j as isize > i as isize + tk as isize - tq as isize {
                        continue;
                    }
                    let mut dot = 0f64;
                    for c in 0..d {
                        dot += q[((bi * tq + i) * hq + h) * d + c] as f64
                            * k[((bi * tk + j) * hkv + hk) * d + c] as f64;
                    }
                    let mut x = dot * scale as f64;
                    match mask {
                        RefMask::None => {}
                        RefMask::Bool(m, ms) => {
                            if !m[mask_at(ms, [bi, h, i, j])] {
                                continue;
                            }
                        }
                        RefMask::Add(m, ms) => x += m[mask_at(ms, [bi, h, i, j])] as f64,
                    }
                    *sj = x;
                }
                let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if mx == f64::NEG_INFINITY {
                    continue; // fully masked: zeros
                }
                let p: Vec<f64> = s.iter().map(|&x| (x - mx).exp()).collect();
                let sum: f64 = p.iter().sum();
                for c in 0..dv {
                    let o: f64 = (0..tk).map(|j| p[j] * v[((bi * tk + j) * hkv + hk) * dv + c] as f64).sum();
                    out[((bi * tq + i) * hq + h) * dv + c] = o / sum;
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
enum MaskKind {
    None,
    Bool,
    /// Additive in f32.
    AddF32,
    /// Additive in q's dtype.
    AddSame,
}

struct Case {
    dims: (usize, usize, usize, usize, usize, usize, usize),
    causal: bool,
    mask: MaskKind,
    mask_shape: Vec<usize>,
}

fn run_case(seed: u64, dtype: DType, c: &Case, what: &str) -> Vec<f32> {
    let (b, tq, tk, hq, hkv, d, dv) = c.dims;
    let (q, qv) = input(seed, &[b, tq, hq, d], dtype);
    let (k, kv) = input(seed + 1, &[b, tk, hkv, d], dtype);
    let (v, vv) = input(seed + 2, &[b, tk, hkv, dv], dtype);
    let mn: usize = c.mask_shape.iter().product();
    let mut r = rng(seed + 3);
    let (mask, rmask) = match c.mask {
        MaskKind::None => (None, RefMask::None),
        MaskKind::Bool => {
            let m: Vec<bool> = (0..mn).map(|_| r.gen_bool(0.7)).collect();
            (Some(Owned::from_bool(&m, &c.mask_shape)), RefMask::Bool(m, c.mask_shape.clone()))
        }
        MaskKind::AddF32 | MaskKind::AddSame => {
            let mdt = if matches!(c.mask, MaskKind::AddF32) { DType::F32 } else { dtype };
            let m: Vec<f32> = (0..mn)
                .map(|_| if r.gen_bool(0.2) { f32::NEG_INFINITY } else { r.gen_range(-3.0..3.0) })
                .collect();
            let mv = round_trip(&m, mdt);
            (Some(Owned::from_f32(&m, &c.mask_shape, mdt)), RefMask::Add(mv, c.mask_shape.clone()))
        }
    };
    let scale = 1.0 / (d.max(1) as f32).sqrt();
    let op = Op::Attention { causal: c.causal, scale };
    let mut ins = vec![&q, &k, &v];
    if let Some(m) = &mask {
        ins.push(m);
    }
    let got = run_op(&op, &ins).unwrap();
    let want = ref_attention(&qv, &kv, &vv, c.dims, &rmask, c.causal, scale);
    check_f64(&got, &want, dtype, what);
    got.to_f32()
}

#[test]
fn attention_masks_causal_gqa() {
    let case = |dims, causal, mask, mask_shape: &[usize]| Case {
        dims,
        causal,
        mask,
        mask_shape: mask_shape.to_vec(),
    };
    let cases = [
        ("plain", case((2, 17, 17, 4, 4, 8, 8), false, MaskKind::None, &[])),
        ("single", case((1, 1, 1, 1, 1, 1, 1), false, MaskKind::None, &[])),
        ("causal square, > blocks", case((1, 150, 150, 2, 1, 16, 16), true, MaskKind::None, &[])),
        ("causal tq<tk gqa dv!=d", case((2, 3, 200, 6, 2, 12, 5), true, MaskKind::None, &[])),
        ("causal tq<tk long", case((1, 70, 300, 2, 2, 8, 3), true, MaskKind::None, &[])),
        ("bool full", case((2, 9, 33, 4, 2, 8, 8), false, MaskKind::Bool, &[2, 4, 9, 33])),
        ("bool [B,1,1,Tk]", case((2, 5, 140, 2, 1, 8, 4), false, MaskKind::Bool, &[2, 1, 1, 140])),
        ("add f32 [1,1,Tq,Tk]", case((2, 65, 65, 3, 3, 8, 8), true, MaskKind::AddF32, &[1, 1, 65, 65])),
        ("add same dtype [Tq,Tk]", case((1, 7, 131, 4, 4, 8, 8), false, MaskKind::AddSame, &[7, 131])),
        ("add f32 [B,1,1,Tk] gqa", case((2, 4, 17, 4, 1, 8, 6), false, MaskKind::AddF32, &[2, 1, 1, 17])),
        // Broadcast along keys: whole rows kept or dropped (a finite per-row bias cancels out).
        ("bool [1,Hq,Tq,1]", case((2, 6, 140, 4, 2, 8, 8), false, MaskKind::Bool, &[1, 4, 6, 1])),
        ("add f32 [B,1,Tq,1]", case((2, 6, 9, 2, 2, 8, 8), true, MaskKind::AddF32, &[2, 1, 6, 1])),
    ];
    let mut seed = 1000;
    for dtype in FLOATS {
        for (what, c) in &cases {
            seed += 4;
            run_case(seed, dtype, c, &format!("attention {what}"));
        }
    }
}

#[test]
fn varlen_attention_matches_block_diagonal_mask() {
    // Packed sequences straddling the 64-row query blocks and 128-key tiles; the naive reference
    // sees them as a block-diagonal boolean mask.
    let lens: [&[usize]; 3] = [&[1, 63, 64, 65, 130, 3], &[326], &[7, 200, 5, 1, 1, 9]];
    let mut seed = 5000;
    for dtype in FLOATS {
        for seqlens in lens {
            for (causal, (b, hq, hkv, d, dv)) in [(false, (2, 4, 2, 16, 8)), (true, (1, 3, 3, 8, 12))] {
                seed += 4;
                let t: usize = seqlens.iter().sum();
                let (q, qv) = input(seed, &[b, t, hq, d], dtype);
                let (k, kv) = input(seed + 1, &[b, t, hkv, d], dtype);
                let (v, vv) = input(seed + 2, &[b, t, hkv, dv], dtype);
                let seg: Vec<usize> = seqlens.iter().enumerate().flat_map(|(s, &l)| vec![s; l]).collect();
                let m: Vec<bool> = (0..t * t).map(|x| seg[x / t] == seg[x % t]).collect();
                let scale = 1.0 / (d as f32).sqrt();
                let op = Op::VarlenAttention { causal, scale, seqlens: seqlens.to_vec() };
                let got = run_op(&op, &[&q, &k, &v]).unwrap();
                let dims = (b, t, t, hq, hkv, d, dv);
                let want = ref_attention(&qv, &kv, &vv, dims, &RefMask::Bool(m, vec![t, t]), causal, scale);
                check_f64(&got, &want, dtype, &format!("varlen attention {seqlens:?} causal={causal}"));
            }
        }
    }
}

#[test]
fn varlen_attention_rejects_bad_lengths() {
    use focus_graph::infer::{infer, In};
    let q = In { shape: &[1, 10, 2, 8], dtype: DType::F32 };
    let kv = In { shape: &[1, 12, 2, 8], dtype: DType::F32 };
    for (seqlens, ins) in [(vec![4, 5], [q, q, q]), (vec![0, 10], [q, q, q]), (vec![4, 6], [q, kv, kv])] {
        let op = Op::VarlenAttention { causal: false, scale: 1.0, seqlens };
        let err = infer(&op, &ins).expect_err("bad packed sequences accepted");
        assert!(err.contains("sequence") || err.contains("keys"), "{err}");
    }
    let op = Op::VarlenAttention { causal: false, scale: 1.0, seqlens: vec![4, 6] };
    assert_eq!(infer(&op, &[q, q, q]).unwrap().0, vec![1, 10, 2, 8]);
}

#[test]
fn attention_fully_masked_rows_are_zero() {
    let (b, tq, tk, h, d) = (1, 4, 150, 2, 8);
    let (q, _) = input(1, &[b, tq, h, d], DType::F32);
    let (k, _) = input(2, &[b, tk, h, d], DType::F32);
    let (v, _) = input(3, &[b, tk, h, d], DType::F32);
    // Row 2 of every head masked out (bool), and a -inf additive row.
    let mut m = vec![true; tq * tk];
    m[2 * tk..3 * tk].fill(false);
    let bm = Owned::from_bool(&m, &[1, 1, tq, tk]);
    let af: Vec<f32> = m.iter().map(|&x| if x { 0.0 } else { f32::NEG_INFINITY }).collect();
    let am = Owned::from_f32(&af, &[tq, tk], DType::F32);
    for mask in [&bm, &am] {
        let out = run_op(&Op::Attention { causal: false, scale: 0.3 }, &[&q, &k, &v, mask]).unwrap().to_f32();
        for (idx, x) in out.iter().enumerate() {
            let row = idx / (h * d);
            if row == 2 {
                assert_eq!(*x, 0.0, "masked row must be zero");
            } else {
                assert!(x.is_finite() && *x != 0.0);
            }
        }
    }
    // Causal with Tq > Tk: the first Tq - Tk queries see no key.
    let c = Case { dims: (1, 5, 3, 2, 2, 4, 4), causal: true, mask: MaskKind::None, mask_shape: vec![] };
    let out = run_case(7, DType::F32, &c, "attention causal tq>tk");
    assert!(out[..2 * 2 * 4].iter().all(|&x| x == 0.0));
    // No keys at all.
    let c = Case { dims: (1, 3, 0, 2, 2, 4, 4), causal: false, mask: MaskKind::None, mask_shape: vec![] };
    assert!(run_case(8, DType::F32, &c, "attention tk=0").iter().all(|&x| x == 0.0));
}

/// Permutes a row-major tensor: out dim i is input dim perm[i].
fn permute(v: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let r = shape.len();
    let mut st = vec![1; r];
    for i in (0..r - 1).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    let os: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut out = vec![0f32; v.len()];
    for (o, x) in out.iter_mut().enumerate() {
        let (mut rem, mut src) = (o, 0);
        for i in (0..r).rev() {
            src += (rem % os[i]) * st[perm[i]];
            rem /= os[i];
        }
        *x = v[src];
    }
    (out, os)
}

#[test]
fn attention_permuted_inputs() {
    // Heads-major [B, H, T, D] tensors permuted to the op's [B, T, H, D] layout; the reference
    // reads the heads-major originals directly.
    let (b, tq, tk, h, d) = (2, 70, 130, 3, 8);
    let qh = rand_vec(&mut rng(41), b * h * tq * d, -1.0, 1.0);
    let kh = rand_vec(&mut rng(42), b * h * tk * d, -1.0, 1.0);
    let vh = rand_vec(&mut rng(43), b * h * tk * d, -1.0, 1.0);
    let (q, qs) = permute(&qh, &[b, h, tq, d], &[0, 2, 1, 3]);
    let (k, ks) = permute(&kh, &[b, h, tk, d], &[0, 2, 1, 3]);
    let (v, vs) = permute(&vh, &[b, h, tk, d], &[0, 2, 1, 3]);
    let scale = 0.35;
    let (q, k, v) = (
        Owned::from_f32(&q, &qs, DType::F32),
        Owned::from_f32(&k, &ks, DType::F32),
        Owned::from_f32(&v, &vs, DType::F32),
    );
    let got = run_op(&Op::Attention { causal: true, scale }, &[&q, &k, &v]).unwrap();
    let mut want = vec![0f64; b * tq * h * d];
    for bi in 0..b {
        for hh in 0..h {
            let base_q = (bi * h + hh) * tq * d;
            let base_k = (bi * h + hh) * tk * d;
            for i in 0..tq {
                let lim = i + tk - tq;
                let s: Vec<f64> = (0..=lim)
                    .map(|j| {
                        (0..d)
                            .map(|c| qh[base_q + i * d + c] as f64 * kh[base_k + j * d + c] as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let mx = s.iter().copied().fold(f64::MIN, f64::max);
                let p: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let sum: f64 = p.iter().sum();
                for c in 0..d {
                    let o: f64 = p.iter().enumerate().map(|(j, pj)| pj * vh[base_k + j * d + c] as f64).sum();
                    want[((bi * tq + i) * h + hh) * d + c] = o / sum;
                }
            }
        }
    }
    check_f64(&got, &want, DType::F32, "attention permuted");
}

/// Reference RoPE in f64. `angle(t, i)` gives the angle of pair (i, i + D/2).
fn ref_rope(x: &[f32], t: usize, h: usize, d: usize, angle: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let half = d / 2;
    let mut out = vec![0f64; x.len()];
    for (row, (src, dst)) in x.chunks(d).zip(out.chunks_mut(d)).enumerate() {
        let ti = (row / h) % t;
        // out = x * cos(emb) + rotate_half(x) * sin(emb), emb = cat(angles, angles).
        for i in 0..d {
            let a = angle(ti, i % half);
            let rot = if i < half { -(src[i + half] as f64) } else { src[i - half] as f64 };
            dst[i] = src[i] as f64 * a.cos() + rot * a.sin();
        }
    }
    out
}

#[test]
fn rope_1d_small_positions() {
    let (t, h, d, theta) = (9, 3, 16, 10000f32);
    let mut seed = 2000;
    for dtype in FLOATS {
        for pdt in [DType::I32, DType::I64] {
            seed += 2;
            let (x, xv) = input(seed, &[2, t, h, d], dtype);
            let pos: Vec<i64> = (0..t as i64).map(|i| 3 * i + 1).collect();
            let p = Owned::from_i64(&pos, &[t], pdt);
            let got = run_op(&Op::Rope { kind: RopeKind::OneD, theta }, &[&x, &p]).unwrap();
            let want = ref_rope(&xv, t, h, d, |ti, i| {
                pos[ti] as f64 * (theta as f64).powf(-2.0 * i as f64 / d as f64)
            });
            check_f64(&got, &want, dtype, &format!("rope_1d pos {pdt:?}"));
        }
    }
}

#[test]
fn rope_1d_large_positions_match_f32_angles() {
    // PyTorch forms angles in f32: inv_freq = 1 / theta^(arange(0, D, 2) / D), angle = pos * inv_freq.
    // At positions ~1e5 that rounding dominates, so the reference reproduces it.
    let (t, h, d, theta) = (5, 2, 64, 1_000_000f32);
    let (x, xv) = input(77, &[t, h, d], DType::F32);
    let pos: Vec<i64> = vec![0, 4095, 32767, 100_003, 131_071];
    let p = Owned::from_i64(&pos, &[t], DType::I64);
    let got = run_op(&Op::Rope { kind: RopeKind::OneD, theta }, &[&x, &p]).unwrap();
    let want = ref_rope(&xv, t, h, d, |ti, i| {
        let e = (2 * i) as f32 / d as f32;
        let inv = 1.0f32 / (theta as f64).powf(e as f64) as f32;
        (pos[ti] as f32 * inv) as f64
    });
    check_f64(&got, &want, DType::F32, "rope_1d large positions");
}

#[test]
fn rope_2d_vision() {
    let (t, h, d, theta) = (7, 2, 16, 10000f32);
    let f = d / 4;
    let mut seed = 3000;
    for dtype in FLOATS {
        seed += 2;
        let (x, xv) = input(seed, &[t, h, d], dtype);
        let mut r = rng(seed + 1);
        let pos: Vec<i64> = (0..2 * t).map(|_| r.gen_range(0..24)).collect();
        let p = Owned::from_i64(&pos, &[t, 2], DType::I64);
        let got = run_op(&Op::Rope { kind: RopeKind::TwoD, theta }, &[&x, &p]).unwrap();
        // angles = [row * f_0.., col * f_0..], f_j = theta^(-j/F).
        let want = ref_rope(&xv, t, h, d, |ti, i| {
            let (axis, j) = if i < f { (0, i) } else { (1, i - f) };
            pos[2 * ti + axis] as f64 * (theta as f64).powf(-(j as f64) / f as f64)
        });
        check_f64(&got, &want, dtype, "rope_2d");
    }
}
