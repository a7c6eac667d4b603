//! Pointwise ops, casts, reductions, top-k and timestep embeddings against naive f64
//! references.

mod common;
use common::*;
use focus_graph::{ArgOp, BinaryOp, CmpOp, DType, Op, ReduceOp, UnaryOp};
use half::{bf16, f16};
use rand::Rng;

#[track_caller]
fn check(got: &[f32], want: &[f32], dt: DType, what: &str) {
    eprintln!("RELL2 {dt} {:.3e} {what}", rel_l2(got, want));
    assert_close(got, want, dt, what);
}

/// Index into `src` (shape `src`) for output multi-index `oi` under NumPy broadcasting.
fn bidx(oi: &[usize], src: &[usize]) -> usize {
    let off = oi.len() - src.len();
    let ix: Vec<usize> = src.iter().enumerate().map(|(d, &n)| if n == 1 { 0 } else { oi[off + d] }).collect();
    ravel(&ix, src)
}

fn bshape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            da.max(db)
        })
        .collect()
}

/// Naive permute of values: out[j] = x[perm-mapped index].
fn permute_vals(v: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let oshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out = (0..v.len())
        .map(|j| {
            let oi = unravel(j, &oshape);
            let mut xi = vec![0; shape.len()];
            for (k, &p) in perm.iter().enumerate() {
                xi[p] = oi[k];
            }
            v[ravel(&xi, shape)]
        })
        .collect();
    (out, oshape)
}

/// erf by its Maclaurin series (|z| < 2.5) or the Laplace continued fraction for erfc.
fn erf_ref(z: f64) -> f64 {
    if z.abs() < 2.5 {
        let (mut term, mut sum) = (z, z);
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let x = z.abs();
        let mut f = x;
        for k in (1..80).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        let erfc = (-x * x).exp() / std::f64::consts::PI.sqrt() / f;
        (1.0 - erfc).copysign(z)
    }
}

fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    match op {
        UnaryOp::Gelu => 0.5 * x * (1.0 + erf_ref(x / 2f64.sqrt())),
        UnaryOp::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
        UnaryOp::QuickGelu => x * sig(1.702 * x),
        UnaryOp::Silu => x * sig(x),
        UnaryOp::Sigmoid => sig(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Square => x * x,
    }
}

fn unary_input(op: UnaryOp, r: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => rand_vec(r, n, 0.05, 6.0),
        UnaryOp::Recip => {
            rand_vec(r, n, 0.2, 3.0).into_iter().map(|v| if r.gen_bool(0.5) { -v } else { v }).collect()
        }
        UnaryOp::Exp => rand_vec(r, n, -5.0, 5.0),
        _ => rand_vec(r, n, -6.0, 6.0),
    }
}

#[test]
fn unary_all_ops_dtypes_and_permuted_inputs() {
    let mut seed = 100;
    for op in UnaryOp::ALL {
        for dt in FLOATS {
            for shape in [vec![3, 17, 5], vec![], vec![40_003]] {
                seed += 1;
                let mut r = rng(seed);
                let n: usize = shape.iter().product();
                let x = round_trip(&unary_input(op, &mut r, n), dt);
                let out = run_op(&Op::Unary(op), &[&Owned::from_f32(&x, &shape, dt)]).unwrap();
                let want: Vec<f32> = x.iter().map(|&v| unary_ref(op, v as f64) as f32).collect();
                check(&out.to_f32(), &want, dt, &format!("{} {shape:?}", op.name()));
            }
            // Permuted input: the values a permute of a random [5,7,3] tensor produces.
            seed += 1;
            let mut r = rng(seed);
            let base = round_trip(&unary_input(op, &mut r, 105), dt);
            let (x, shape) = permute_vals(&base, &[5, 7, 3], &[2, 0, 1]);
            let out = run_op(&Op::Unary(op), &[&Owned::from_f32(&x, &shape, dt)]).unwrap();
            let want: Vec<f32> = x.iter().map(|&v| unary_ref(op, v as f64) as f32).collect();
            check(&out.to_f32(), &want, dt, &format!("{} permuted", op.name()));
        }
    }
}

#[test]
fn glu_gates_the_first_half_by_the_activated_second() {
    let mut seed = 900;
    for act in [UnaryOp::Gelu, UnaryOp::GeluTanh, UnaryOp::Silu, UnaryOp::QuickGelu, UnaryOp::Sigmoid] {
        for dt in FLOATS {
            for shape in [vec![3, 7, 10], vec![64, 2], vec![1, 2 * 1280]] {
                seed += 1;
                let mut r = rng(seed);
                let n: usize = shape.iter().product();
                let x = round_trip(&rand_vec(&mut r, n, -4.0, 4.0), dt);
                let out = run_op(&Op::Glu { act }, &[&Owned::from_f32(&x, &shape, dt)]).unwrap();
                let half = shape[shape.len() - 1] / 2;
                let want: Vec<f32> = x
                    .chunks(2 * half)
                    .flat_map(|row| {
                        (0..half).map(move |j| (row[j] as f64 * unary_ref(act, row[half + j] as f64)) as f32)
                    })
                    .collect();
                assert_eq!(out.shape[..shape.len() - 1], shape[..shape.len() - 1]);
                check(&out.to_f32(), &want, dt, &format!("glu {} {shape:?}", act.name()));
            }
        }
    }
}

#[test]
fn gelu_erf_pointwise_accuracy() {
    // Dense sweep: every element within ~1e-6 absolute of the exact-erf GELU.
    let x: Vec<f32> = (0..16001).map(|i| -8.0 + i as f32 * 0.001).collect();
    let out = run_op(&Op::Unary(UnaryOp::Gelu), &[&Owned::from_f32(&x, &[x.len()], DType::F32)]).unwrap();
    for (g, &v) in out.to_f32().iter().zip(&x) {
        let w = unary_ref(UnaryOp::Gelu, v as f64);
        assert!((*g as f64 - w).abs() <= 1e-6 + 2e-7 * w.abs(), "gelu({v}) = {g}, want {w}");
    }
    // The reference erf itself, at known values.
    assert!((erf_ref(0.5) - 0.520_499_877_813_046_5).abs() < 1e-14);
    assert!((erf_ref(3.0) - 0.999_977_909_503_001_4).abs() < 1e-14);
}

fn binary_ref(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Pow => a.powf(b),
    }
}

const BCAST_CASES: [(&[usize], &[usize]); 7] = [
    (&[3, 1, 5], &[4, 1]),
    (&[], &[2, 3]),
    (&[2, 3], &[]),
    (&[7], &[7]),
    (&[2, 1, 3, 1], &[1, 4, 1, 5]),
    (&[301, 257], &[257]),
    (&[1, 33], &[40, 1]),
];

#[test]
fn binary_float_broadcasting() {
    let mut seed = 1000;
    for op in BinaryOp::ALL {
        for dt in FLOATS {
            for (sa, sb) in BCAST_CASES {
                seed += 1;
                let mut r = rng(seed);
                let (na, nb) = (sa.iter().product(), sb.iter().product());
                let (a, b) = match op {
                    BinaryOp::Pow => (rand_vec(&mut r, na, 0.3, 2.5), rand_vec(&mut r, nb, -2.0, 2.0)),
                    BinaryOp::Div => (rand_vec(&mut r, na, -3.0, 3.0), rand_vec(&mut r, nb, 0.5, 2.0)),
                    _ => (rand_vec(&mut r, na, -3.0, 3.0), rand_vec(&mut r, nb, -3.0, 3.0)),
                };
                let (a, b) = (round_trip(&a, dt), round_trip(&b, dt));
                let out =
                    run_op(&Op::Binary(op), &[&Owned::from_f32(&a, sa, dt), &Owned::from_f32(&b, sb, dt)])
                        .unwrap();
                let os = bshape(sa, sb);
                assert_eq!(out.shape, os);
                let want: Vec<f32> = (0..os.iter().product())
                    .map(|i| {
                        let oi = unravel(i, &os);
                        binary_ref(op, a[bidx(&oi, sa)] as f64, b[bidx(&oi, sb)] as f64) as f32
                    })
                    .collect();
                check(&out.to_f32(), &want, dt, &format!("{} {sa:?} {sb:?}", op.name()));
            }
        }
    }
}

#[test]
fn binary_permuted_input() {
    let mut r = rng(77);
    let base = rand_vec(&mut r, 4 * 6 * 5, -2.0, 2.0);
    let (a, sa) = permute_vals(&base, &[4, 6, 5], &[1, 2, 0]);
    let b = rand_vec(&mut r, 5, -2.0, 2.0);
    let out = run_op(
        &Op::Binary(BinaryOp::Mul),
        &[&Owned::from_f32(&a, &sa, DType::F32), &Owned::from_f32(&b, &[5, 1], DType::F32)],
    )
    .unwrap();
    let want: Vec<f32> = (0..a.len()).map(|i| a[i] * b[unravel(i, &sa)[1]]).collect();
    check(&out.to_f32(), &want, DType::F32, "mul permuted");
}

fn int_owned(v: &[i64], shape: &[usize], dt: DType) -> Owned {
    match dt {
        DType::U8 => Owned { dtype: dt, shape: shape.to_vec(), data: v.iter().map(|&x| x as u8).collect() },
        _ => Owned::from_i64(v, shape, dt),
    }
}

fn wrap(v: i64, dt: DType) -> i64 {
    match dt {
        DType::I32 => v as i32 as i64,
        DType::U8 => v as u8 as i64,
        _ => v,
    }
}

#[test]
fn binary_int_exact() {
    let mut seed = 2000;
    for dt in [DType::I32, DType::I64, DType::U8] {
        let (lo, hi): (i64, i64) = match dt {
            DType::I32 => (-100_000, 100_000),
            DType::I64 => (-(1 << 40), 1 << 40),
            _ => (0, 256),
        };
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min] {
            for (sa, sb) in BCAST_CASES {
                seed += 1;
                let mut r = rng(seed);
                let a: Vec<i64> = (0..sa.iter().product()).map(|_| r.gen_range(lo..hi)).collect();
                let b: Vec<i64> = (0..sb.iter().product()).map(|_| r.gen_range(lo..hi)).collect();
                let out = run_op(&Op::Binary(op), &[&int_owned(&a, sa, dt), &int_owned(&b, sb, dt)]).unwrap();
                let os = bshape(sa, sb);
                let want: Vec<i64> = (0..os.iter().product())
                    .map(|i| {
                        let oi = unravel(i, &os);
                        let (x, y) = (a[bidx(&oi, sa)], b[bidx(&oi, sb)]);
                        let v = match op {
                            BinaryOp::Add => x.wrapping_add(y),
                            BinaryOp::Sub => x.wrapping_sub(y),
                            BinaryOp::Mul => x.wrapping_mul(y),
                            BinaryOp::Max => x.max(y),
                            _ => x.min(y),
                        };
                        wrap(v, dt)
                    })
                    .collect();
                assert_eq!(out.to_i64(), want, "{} {dt} {sa:?} {sb:?}", op.name());
            }
        }
    }
}

fn cmp_ref(op: CmpOp, a: f64, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

#[test]
fn compare_float_int_bool() {
    let mut seed = 3000;
    for op in CmpOp::ALL {
        for dt in [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::Bool] {
            for (sa, sb) in BCAST_CASES {
                seed += 1;
                let mut r = rng(seed);
                // Few distinct values so equality is common.
                let pick = |r: &mut rand::rngs::StdRng, n: usize| -> Vec<f32> {
                    (0..n)
                        .map(|_| match dt {
                            DType::Bool => r.gen_range(0..2) as f32,
                            DType::U8 => r.gen_range(0..4) as f32,
                            d if d.is_float() => r.gen_range(-3..3) as f32 * 0.5,
                            _ => r.gen_range(-3..3) as f32,
                        })
                        .collect()
                };
                let mut a = pick(&mut r, sa.iter().product());
                let b = pick(&mut r, sb.iter().product());
                if dt == DType::F32 && !a.is_empty() {
                    a[0] = f32::NAN;
                }
                let out =
                    run_op(&Op::Compare(op), &[&Owned::from_f32(&a, sa, dt), &Owned::from_f32(&b, sb, dt)])
                        .unwrap();
                let os = bshape(sa, sb);
                let want: Vec<i64> = (0..os.iter().product())
                    .map(|i| {
                        let oi = unravel(i, &os);
                        cmp_ref(op, a[bidx(&oi, sa)] as f64, b[bidx(&oi, sb)] as f64) as i64
                    })
                    .collect();
                assert_eq!(out.dtype, DType::Bool);
                assert_eq!(out.to_i64(), want, "{} {dt} {sa:?} {sb:?}", op.name());
            }
        }
    }
}

#[test]
fn where_broadcast_any_dtype() {
    let cases: [(&[usize], &[usize], &[usize]); 4] = [
        (&[3, 1, 5], &[4, 1], &[]),
        (&[], &[2, 3], &[2, 3]),
        (&[6, 1], &[1, 7], &[6, 7]),
        (&[200, 301], &[301], &[200, 1]),
    ];
    let mut seed = 4000;
    for dt in [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::Bool] {
        for (sc, sa, sb) in cases {
            seed += 1;
            let mut r = rng(seed);
            let c: Vec<bool> = (0..sc.iter().product()).map(|_| r.gen_bool(0.5)).collect();
            let gen = |r: &mut rand::rngs::StdRng, n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| match dt {
                        DType::Bool => r.gen_range(0..2) as f32,
                        DType::U8 => r.gen_range(0..256) as f32,
                        d if d.is_float() => r.gen_range(-5.0..5.0),
                        _ => r.gen_range(-1000..1000) as f32,
                    })
                    .collect()
            };
            let a = round_trip(&gen(&mut r, sa.iter().product()), dt);
            let b = round_trip(&gen(&mut r, sb.iter().product()), dt);
            let out = run_op(
                &Op::Where,
                &[&Owned::from_bool(&c, sc), &Owned::from_f32(&a, sa, dt), &Owned::from_f32(&b, sb, dt)],
            )
            .unwrap();
            let os = bshape(sc, &bshape(sa, sb));
            let want: Vec<f32> = (0..os.iter().product())
                .map(|i| {
                    let oi = unravel(i, &os);
                    if c[bidx(&oi, sc)] {
                        a[bidx(&oi, sa)]
                    } else {
                        b[bidx(&oi, sb)]
                    }
                })
                .collect();
            assert_eq!(out.to_f32(), want, "where {dt} {sc:?} {sa:?} {sb:?}");
        }
    }
}

/// Expected cast of an exact source value `v` (f64 holds every test value exactly).
fn cast_ref(v: f64, to: DType) -> Vec<u8> {
    let t = v.trunc() as i64;
    match to {
        DType::F32 => (v as f32).to_le_bytes().to_vec(),
        DType::F16 => f16::from_f64(v).to_le_bytes().to_vec(),
        DType::BF16 => bf16::from_f64(v).to_le_bytes().to_vec(),
        DType::I32 => (t as i32).to_le_bytes().to_vec(),
        DType::I64 => t.to_le_bytes().to_vec(),
        DType::U8 => vec![t as u8],
        DType::Bool => vec![(v != 0.0) as u8],
    }
}

#[test]
fn cast_every_pair() {
    let mut seed = 5000;
    for from in DType::ALL {
        for to in DType::ALL {
            seed += 1;
            let mut r = rng(seed);
            let n = 257;
            let vals: Vec<f64> = (0..n)
                .map(|i| match from {
                    DType::Bool => (i % 2) as f64,
                    DType::U8 => r.gen_range(0..256) as f64,
                    DType::I32 | DType::I64 => r.gen_range(-70_000i64..70_000) as f64,
                    _ if i < 8 => [0.0, -0.0, 0.5, -0.5, 2.7, -2.7, 255.9, -300.25][i],
                    _ => r.gen_range(-400.0..400.0),
                })
                .collect();
            let x = match from {
                DType::I32 | DType::I64 => {
                    Owned::from_i64(&vals.iter().map(|&v| v as i64).collect::<Vec<_>>(), &[n], from)
                }
                _ => Owned::from_f32(&vals.iter().map(|&v| v as f32).collect::<Vec<_>>(), &[n], from),
            };
            // The exact values the source holds after its own rounding.
            let src: Vec<f64> = x.to_f32().iter().map(|&v| v as f64).collect();
            let out = run_op(&Op::Cast { to }, &[&x]).unwrap();
            let want: Vec<u8> = src.iter().flat_map(|&v| cast_ref(v, to)).collect();
            assert_eq!(out.data, want, "cast {from} -> {to}");
        }
    }
}

#[test]
fn reduce_axes_keepdim_dtypes() {
    let shape = [4usize, 5, 6];
    let axes_sets: [&[usize]; 6] = [&[0], &[1], &[2], &[0, 2], &[1, 2], &[0, 1, 2]];
    let mut seed = 6000;
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
        for dt in FLOATS {
            for axes in axes_sets {
                for keepdim in [false, true] {
                    seed += 1;
                    let mut r = rng(seed);
                    let base = round_trip(&rand_vec(&mut r, 120, -2.0, 3.0), dt);
                    // Alternate plain and permuted inputs.
                    let (x, xs) = if seed % 2 == 0 {
                        (base, shape.to_vec())
                    } else {
                        permute_vals(&base, &[6, 4, 5], &[1, 2, 0])
                    };
                    let out = run_op(
                        &Op::Reduce { op, axes: axes.to_vec(), keepdim },
                        &[&Owned::from_f32(&x, &xs, dt)],
                    )
                    .unwrap();
                    let kshape: Vec<usize> =
                        (0..3).map(|d| if axes.contains(&d) { 1 } else { xs[d] }).collect();
                    let nk: usize = kshape.iter().product();
                    let want: Vec<f32> = (0..nk)
                        .map(|o| {
                            let oi = unravel(o, &kshape);
                            let mut vals = vec![];
                            for (i, &v) in x.iter().enumerate() {
                                let xi = unravel(i, &xs);
                                if (0..3).all(|d| axes.contains(&d) || xi[d] == oi[d]) {
                                    vals.push(v as f64);
                                }
                            }
                            let s: f64 = vals.iter().sum();
                            (match op {
                                ReduceOp::Sum => s,
                                ReduceOp::Mean => s / vals.len() as f64,
                                ReduceOp::Max => vals.iter().cloned().fold(f64::MIN, f64::max),
                                ReduceOp::Min => vals.iter().cloned().fold(f64::MAX, f64::min),
                            }) as f32
                        })
                        .collect();
                    let oshape: Vec<usize> = if keepdim {
                        kshape.clone()
                    } else {
                        (0..3).filter(|d| !axes.contains(d)).map(|d| xs[d]).collect()
                    };
                    assert_eq!(out.shape, oshape);
                    check(&out.to_f32(), &want, dt, &format!("reduce {op:?} {axes:?} {keepdim}"));
                }
            }
        }
    }
    // NaN propagates through max.
    let x = [1.0, f32::NAN, 3.0, 0.0];
    let out = run_op(
        &Op::Reduce { op: ReduceOp::Max, axes: vec![1], keepdim: false },
        &[&Owned::from_f32(&x, &[2, 2], DType::F32)],
    )
    .unwrap()
    .to_f32();
    assert!(out[0].is_nan() && out[1] == 3.0);
}

#[test]
fn arg_reduce_ties_and_nan() {
    let shape = [3usize, 7, 4];
    let mut seed = 7000;
    for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
        for dt in FLOATS {
            for axis in 0..3 {
                for keepdim in [false, true] {
                    seed += 1;
                    let mut r = rng(seed);
                    // Small integer values: plenty of ties.
                    let x: Vec<f32> = (0..84).map(|_| r.gen_range(-2..3) as f32).collect();
                    let out =
                        run_op(&Op::ArgReduce { op, axis, keepdim }, &[&Owned::from_f32(&x, &shape, dt)])
                            .unwrap();
                    let mut rs = shape.to_vec();
                    rs[axis] = 1;
                    let want: Vec<i64> = (0..rs.iter().product())
                        .map(|o| {
                            let mut xi = unravel(o, &rs);
                            let mut best = 0;
                            for k in 0..shape[axis] {
                                xi[axis] = k;
                                let v = x[ravel(&xi, &shape)];
                                xi[axis] = best;
                                let bv = x[ravel(&xi, &shape)];
                                let better = if op == ArgOp::ArgMax { v > bv } else { v < bv };
                                if better {
                                    best = k;
                                }
                            }
                            best as i64
                        })
                        .collect();
                    assert_eq!(out.to_i64(), want, "{op:?} {dt} axis {axis}");
                }
            }
        }
    }
    // NaN is the extreme for both: the first NaN wins.
    let x = [1.0, f32::NAN, 5.0, f32::NAN, -1.0];
    for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
        let out =
            run_op(&Op::ArgReduce { op, axis: 0, keepdim: false }, &[&Owned::from_f32(&x, &[5], DType::F32)])
                .unwrap();
        assert_eq!(out.to_i64(), vec![1]);
    }
}

#[test]
fn top_k_order_and_ties() {
    let shape = [4usize, 9, 3];
    let mut seed = 8000;
    for dt in FLOATS {
        for axis in 0..3 {
            for k in [1, 2, shape[axis]] {
                seed += 1;
                let mut r = rng(seed);
                let x: Vec<f32> = (0..108).map(|_| r.gen_range(-3..4) as f32 * 0.5).collect();
                let out = run_op(&Op::TopK { k, axis }, &[&Owned::from_f32(&x, &shape, dt)]).unwrap();
                let mut os = shape.to_vec();
                os[axis] = k;
                let mut want = vec![0i64; os.iter().product()];
                let mut ls = shape.to_vec();
                ls[axis] = 1;
                for l in 0..ls.iter().product() {
                    let mut xi = unravel(l, &ls);
                    let mut line: Vec<(f32, usize)> = (0..shape[axis])
                        .map(|t| {
                            xi[axis] = t;
                            (x[ravel(&xi, &shape)], t)
                        })
                        .collect();
                    // Stable sort by descending value keeps lower indices first on ties.
                    line.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
                    for (t, p) in line.iter().take(k).enumerate() {
                        xi[axis] = t;
                        want[ravel(&xi, &os)] = p.1 as i64;
                    }
                }
                assert_eq!(out.to_i64(), want, "topk {dt} axis {axis} k {k}");
            }
        }
    }
}

#[test]
fn timestep_embedding_matches_diffusers() {
    let mut seed = 9000;
    for dim in [2usize, 7, 32, 321] {
        for flip in [false, true] {
            for shift in [0.0f32, 1.0] {
                seed += 1;
                let mut r = rng(seed);
                let t: Vec<f32> = (0..5).map(|_| r.gen_range(0.0f32..1000.0).floor()).collect();
                let op = Op::TimestepEmbedding {
                    dim,
                    flip_sin_to_cos: flip,
                    downscale_freq_shift: shift,
                    max_period: 10000.0,
                };
                let out = run_op(&op, &[&Owned::from_f32(&t, &[5], DType::F32)]).unwrap();
                let half = dim / 2;
                let mut want = vec![0f32; 5 * dim];
                for (n, &tv) in t.iter().enumerate() {
                    for i in 0..half {
                        // diffusers works in f32: exponent, exp and t * freq are f32 values.
                        let e = (-(10000f64.ln()) as f32) * i as f32 / (half as f32 - shift);
                        let f = (e as f64).exp() as f32;
                        let arg = (tv * f) as f64;
                        let (s, c) = (arg.sin() as f32, arg.cos() as f32);
                        want[n * dim + i] = if flip { c } else { s };
                        want[n * dim + half + i] = if flip { s } else { c };
                    }
                }
                check(&out.to_f32(), &want, DType::F32, &format!("timestep dim {dim} flip {flip}"));
            }
        }
    }
}
