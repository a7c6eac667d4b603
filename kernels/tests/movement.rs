//! Movement and indexing ops against naive index arithmetic, on several dtypes
//! (compared exactly).

mod common;
use common::*;
use focus_graph::{DType, Op};
use rand::Rng;

const DTYPES: [DType; 6] = [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8];

/// Random values exactly representable in `dt`.
fn vals(seed: u64, n: usize, dt: DType) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| match dt {
            DType::U8 => r.gen_range(0..256) as f32,
            DType::Bool => r.gen_range(0..2) as f32,
            DType::I32 | DType::I64 => r.gen_range(-5000..5000) as f32,
            _ => round_trip(&[r.gen_range(-4.0f32..4.0)], dt)[0],
        })
        .collect()
}

/// Output where element j takes input element `map(out multi-index)`.
fn expect(x: &[f32], xs: &[usize], os: &[usize], map: impl Fn(&[usize]) -> Vec<usize>) -> Vec<f32> {
    (0..os.iter().product()).map(|j| x[ravel(&map(&unravel(j, os)), xs)]).collect()
}

#[test]
fn permute_all_dtypes_and_perms() {
    let cases: [(&[usize], &[usize]); 7] = [
        (&[3, 5, 7], &[2, 0, 1]),
        (&[3, 5, 7], &[1, 0, 2]),
        (&[3, 5, 7], &[0, 1, 2]),
        (&[2, 3, 1, 4, 5], &[4, 2, 0, 3, 1]),
        (&[1, 9, 1], &[2, 1, 0]),
        (&[129, 257], &[1, 0]),
        (&[64, 33, 40], &[1, 0, 2]),
    ];
    let mut seed = 10;
    for dt in DTYPES.iter().copied().chain([DType::Bool]) {
        for (xs, perm) in cases {
            seed += 1;
            let x = vals(seed, xs.iter().product(), dt);
            let out = run_op(&Op::Permute { perm: perm.to_vec() }, &[&Owned::from_f32(&x, xs, dt)]).unwrap();
            let os: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
            let want = expect(&x, xs, &os, |oi| {
                let mut xi = vec![0; xs.len()];
                for (k, &p) in perm.iter().enumerate() {
                    xi[p] = oi[k];
                }
                xi
            });
            assert_eq!(out.to_f32(), want, "permute {dt} {xs:?} {perm:?}");
        }
    }
}

#[test]
fn concat_slice_copy() {
    let mut seed = 100;
    for dt in DTYPES {
        for axis in 0..3 {
            seed += 1;
            let shapes: Vec<Vec<usize>> = [2usize, 0, 3, 1]
                .iter()
                .map(|&k| {
                    let mut s = vec![3, 4, 5];
                    s[axis] = k;
                    s
                })
                .collect();
            let xs: Vec<Vec<f32>> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| vals(seed * 10 + i as u64, s.iter().product(), dt))
                .collect();
            let owned: Vec<Owned> = xs.iter().zip(&shapes).map(|(v, s)| Owned::from_f32(v, s, dt)).collect();
            let refs: Vec<&Owned> = owned.iter().collect();
            let out = run_op(&Op::Concat { axis }, &refs).unwrap();
            let mut want = vec![];
            for j in 0..out.shape.iter().product() {
                let mut oi = unravel(j, &out.shape);
                let mut t = 0;
                while oi[axis] >= shapes[t][axis] {
                    oi[axis] -= shapes[t][axis];
                    t += 1;
                }
                want.push(xs[t][ravel(&oi, &shapes[t])]);
            }
            assert_eq!(out.to_f32(), want, "concat {dt} axis {axis}");

            // Slices of a [7, 8, 9] tensor along `axis`.
            let xsh = [7usize, 8, 9];
            let x = vals(seed + 5000, 504, dt);
            for (start, end, step) in [(0, xsh[axis], 1), (1, xsh[axis] - 1, 2), (2, xsh[axis], 3), (3, 3, 1)]
            {
                let op = Op::Slice { axis, start, end, step };
                let out = run_op(&op, &[&Owned::from_f32(&x, &xsh, dt)]).unwrap();
                let want = expect(&x, &xsh, &out.shape, |oi| {
                    let mut xi = oi.to_vec();
                    xi[axis] = start + oi[axis] * step;
                    xi
                });
                assert_eq!(out.to_f32(), want, "slice {dt} axis {axis} {start}..{end}:{step}");
            }
        }
        // Reshape is a byte copy.
        let x = vals(seed + 9000, 60, dt);
        let out =
            run_op(&Op::Reshape { shape: vec![5, 12] }, &[&Owned::from_f32(&x, &[3, 4, 5], dt)]).unwrap();
        assert_eq!(out.to_f32(), x, "reshape {dt}");
    }
}

#[test]
fn pad_constant_per_dtype() {
    let mut seed = 200;
    for dt in DTYPES.iter().copied().chain([DType::Bool]) {
        for (xs, pads, value) in [
            (vec![3usize, 4], vec![(1usize, 2usize), (0, 3)], 1.5f32),
            (vec![2, 3, 5], vec![(0, 0), (2, 1), (1, 1)], -7.25),
            (vec![4], vec![(3, 0)], 0.0),
        ] {
            seed += 1;
            let x = vals(seed, xs.iter().product(), dt);
            let op = Op::Pad { pads: pads.clone(), value };
            let out = run_op(&op, &[&Owned::from_f32(&x, &xs, dt)]).unwrap();
            // The pad value as the dtype holds it: ints truncate, bool is != 0.
            let pv = match dt {
                DType::Bool => (value != 0.0) as u8 as f32,
                DType::U8 => value.trunc() as i64 as u8 as f32,
                DType::I32 | DType::I64 => value.trunc(),
                _ => round_trip(&[value], dt)[0],
            };
            let want: Vec<f32> = (0..out.shape.iter().product())
                .map(|j| {
                    let oi = unravel(j, &out.shape);
                    let inside = oi.iter().zip(&pads).zip(&xs).all(|((&o, p), &n)| o >= p.0 && o < p.0 + n);
                    if inside {
                        let xi: Vec<usize> = oi.iter().zip(&pads).map(|(&o, p)| o - p.0).collect();
                        x[ravel(&xi, &xs)]
                    } else {
                        pv
                    }
                })
                .collect();
            assert_eq!(out.to_f32(), want, "pad {dt} {xs:?} {pads:?}");
        }
    }
}

#[test]
fn pixel_shuffle_and_unshuffle() {
    let mut seed = 300;
    for dt in DTYPES {
        for (n, h, w, c, r) in [(2usize, 3usize, 5usize, 3usize, 2usize), (1, 2, 4, 2, 3), (1, 16, 24, 8, 2)]
        {
            seed += 1;
            let xs = [n, h, w, c * r * r];
            let x = vals(seed, xs.iter().product(), dt);
            let out = run_op(&Op::PixelShuffle { r }, &[&Owned::from_f32(&x, &xs, dt)]).unwrap();
            assert_eq!(out.shape, vec![n, h * r, w * r, c]);
            // out(b, y, x, ch) = in(b, y / r, x / r, ch*r*r + (y % r)*r + x % r)
            let want = expect(&x, &xs, &out.shape, |oi| {
                vec![oi[0], oi[1] / r, oi[2] / r, oi[3] * r * r + (oi[1] % r) * r + oi[2] % r]
            });
            assert_eq!(out.to_f32(), want, "pixel_shuffle {dt} r {r}");
            // Unshuffle inverts it.
            let back = run_op(&Op::PixelUnshuffle { r }, &[&out]).unwrap();
            assert_eq!(back.shape, xs.to_vec());
            assert_eq!(back.to_f32(), x, "pixel_unshuffle {dt} r {r}");
            // And matches its own formula on a fresh input.
            let ys = [n, h * r, w * r, c];
            let y = vals(seed + 50, ys.iter().product(), dt);
            let out = run_op(&Op::PixelUnshuffle { r }, &[&Owned::from_f32(&y, &ys, dt)]).unwrap();
            let want = expect(&y, &ys, &out.shape, |oi| {
                let (ch, i, j) = (oi[3] / (r * r), (oi[3] / r) % r, oi[3] % r);
                vec![oi[0], oi[1] * r + i, oi[2] * r + j, ch]
            });
            assert_eq!(out.to_f32(), want, "pixel_unshuffle formula {dt} r {r}");
        }
    }
}

#[test]
fn index_select_shapes_dtypes_and_bounds() {
    let xs = [4usize, 5, 3];
    let mut seed = 400;
    for dt in DTYPES.iter().copied().chain([DType::Bool]) {
        for axis in 0..3 {
            for ishape in [vec![], vec![4], vec![2, 3]] {
                for idt in [DType::I32, DType::I64] {
                    seed += 1;
                    let mut r = rng(seed);
                    let x = vals(seed + 7, 60, dt);
                    let idx: Vec<i64> =
                        (0..ishape.iter().product()).map(|_| r.gen_range(0..xs[axis] as i64)).collect();
                    let op = Op::IndexSelect { axis };
                    let out =
                        run_op(&op, &[&Owned::from_f32(&x, &xs, dt), &Owned::from_i64(&idx, &ishape, idt)])
                            .unwrap();
                    let mut os = xs[..axis].to_vec();
                    os.extend(&ishape);
                    os.extend(&xs[axis + 1..]);
                    assert_eq!(out.shape, os);
                    let k = ishape.len();
                    let want = expect(&x, &xs, &os, |oi| {
                        let j = ravel(&oi[axis..axis + k], &ishape);
                        let mut xi = oi[..axis].to_vec();
                        xi.push(idx[j] as usize);
                        xi.extend(&oi[axis + k..]);
                        xi
                    });
                    assert_eq!(out.to_f32(), want, "index_select {dt} axis {axis} idx {ishape:?}");
                }
            }
        }
    }
    // Out of range and negative indices are errors, not panics.
    let x = Owned::from_f32(&[0.0; 12], &[3, 4], DType::F32);
    for bad in [4i64, -1, i64::MAX, i64::MIN] {
        let err = run_op(&Op::IndexSelect { axis: 1 }, &[&x, &Owned::from_i64(&[0, bad], &[2], DType::I64)]);
        assert!(
            matches!(err, Err(focus_kernels::KernelError::IndexOutOfRange { index, len: 4, .. }) if index == bad),
            "{bad}: {:?}",
            err.as_ref().err()
        );
    }
}

#[test]
fn take_along_axis_and_bounds() {
    let xs = [3usize, 4, 5];
    let mut seed = 500;
    for dt in DTYPES {
        for axis in 0..3 {
            for m in [1usize, 2, 6] {
                seed += 1;
                let mut r = rng(seed);
                let x = vals(seed + 3, 60, dt);
                let mut is = xs.to_vec();
                is[axis] = m;
                let idx: Vec<i64> =
                    (0..is.iter().product()).map(|_| r.gen_range(0..xs[axis] as i64)).collect();
                let op = Op::TakeAlongAxis { axis };
                let out =
                    run_op(&op, &[&Owned::from_f32(&x, &xs, dt), &Owned::from_i64(&idx, &is, DType::I64)])
                        .unwrap();
                let want = expect(&x, &xs, &is, |oi| {
                    let mut xi = oi.to_vec();
                    xi[axis] = idx[ravel(oi, &is)] as usize;
                    xi
                });
                assert_eq!(out.to_f32(), want, "take_along_axis {dt} axis {axis} m {m}");
            }
        }
    }
    let x = Owned::from_f32(&[0.0; 6], &[2, 3], DType::F32);
    for bad in [3i64, -2] {
        let err = run_op(
            &Op::TakeAlongAxis { axis: 1 },
            &[&x, &Owned::from_i64(&[0, 1, bad, 0], &[2, 2], DType::I32)],
        );
        assert!(
            matches!(err, Err(focus_kernels::KernelError::IndexOutOfRange { .. })),
            "{bad}: {:?}",
            err.as_ref().err()
        );
    }
}
