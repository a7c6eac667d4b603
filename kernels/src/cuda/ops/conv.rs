//! General 2-D convolution (`kernels/cuda/conv.cu`): an implicit GEMM per group with M = N·Ho·Wo
//! output pixels, N = Cout/groups, K = KH·KW·Cin/groups, the im2col rows gathered on the fly.
//! f16/bf16 run on tensor cores (mma.sync, f32 accumulation): 16-byte cp.async staging when
//! Cin/groups is a multiple of 8 and x, w are 16-byte aligned, a per-element gather otherwise
//! (the 3-channel stem). f32 runs the SIMT kernel. Depthwise convolutions normally go to
//! `conv_dw`, but any `groups` is computed correctly here.

use super::*;
use focus_graph::{Conv2dParams, ResizeMode};

const FILE: &str = "conv.cu";
/// Tensor-core k tile, pipeline depth and shared row pitch in 16-bit elements (conv.cu `TC_*`).
const TC_BK: usize = 32;
const TC_STAGES: usize = 3;
const TC_LDS: usize = TC_BK + 8;
/// Tensor-core block tiles (BM rows, BN columns), largest first; a warp computes 64×32.
const TC_TILES: [(usize, usize); 3] = [(128, 128), (128, 64), (64, 64)];
/// SIMT kernel: 64×64 tiles, 256 threads.
const SIMT_TILE: usize = 64;
/// Blocks a launch should have before a larger tile pays: about one wave on an H100 (132 SMs).
const MIN_BLOCKS: usize = 132;

/// conv.cu `ConvGeo`, field for field (21 ints).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Geo {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    ho: usize,
    wo: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    groups: usize,
    cg: usize,
    cog: usize,
    m: usize,
    kg: usize,
    /// log2 of the nearest upsampling of x read by the taps (0: none).
    up: usize,
}

impl Geo {
    /// Geometry of `x [N,H,W,Cin] * w [Cout,KH,KW,Cin/g] -> out [N,Ho,Wo,Cout]`, checked against the
    /// op's rules and the kernels' 32-bit indexing.
    /// With `up`, x is read nearest-upsampled by `2^up` (its output extents are checked
    /// against the upsampled image).
    fn new(
        p: &Conv2dParams,
        x: &[usize],
        w: &[usize],
        out: &[usize],
        bias: Option<&[usize]>,
        up: usize,
    ) -> Result<Self, String> {
        let (&[n, h, wd, cin], &[cout, kh, kw, ci], &[on, ho, wo, oc]) = (x, w, out) else {
            return Err(format!("x {x:?}, weight {w:?} and output {out:?} must all have rank 4"));
        };
        if up > 4 {
            return Err(format!("upsampling by 2^{up}"));
        }
        let (vh, vw) = (h << up, wd << up);
        let g = p.groups;
        if g == 0 || cin % g != 0 || cout % g != 0 || ci * g != cin {
            return Err(format!("groups {g} do not fit x {x:?} and weight {w:?}"));
        }
        if p.stride.contains(&0) || p.dilation.contains(&0) || kh == 0 || kw == 0 {
            return Err("stride, dilation and kernel size must be >= 1".into());
        }
        let out_len = |len: usize, k: usize, ax: usize| {
            let (padded, eff) = (len + 2 * p.padding[ax], p.dilation[ax] * (k - 1) + 1);
            (padded >= eff).then(|| (padded - eff) / p.stride[ax] + 1)
        };
        if (on, oc, Some(ho), Some(wo)) != (n, cout, out_len(vh, kh, 0), out_len(vw, kw, 1)) {
            return Err(format!("output {out:?} does not match x {x:?}, weight {w:?} and {p:?}"));
        }
        if bias.is_some_and(|b| b != [cout]) {
            return Err(format!("bias {bias:?} must be [{cout}]"));
        }
        let max = i32::MAX as usize;
        let numel = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if [x, w, out].iter().any(|s| numel(s).is_none_or(|e| e > max)) {
            return Err("tensors of 2^31 or more elements (the kernels index in 32 bits)".into());
        }
        // Padded extents below 2^30 keep every tap coordinate, and the past-the-end row
        // sentinel (-2^30) plus any tap offset, inside i32.
        let geo_max = 1usize << 30;
        if vh + 2 * p.padding[0] >= geo_max || vw + 2 * p.padding[1] >= geo_max {
            return Err("padded input extent of 2^30 or more".into());
        }
        let geo = Geo {
            n,
            h,
            w: wd,
            cin,
            ho,
            wo,
            cout,
            kh,
            kw,
            sh: p.stride[0],
            sw: p.stride[1],
            ph: p.padding[0],
            pw: p.padding[1],
            dh: p.dilation[0],
            dw: p.dilation[1],
            groups: g,
            cg: ci,
            cog: cout / g,
            m: n * ho * wo,
            kg: kh * kw * ci,
            up,
        };
        if geo.fields().iter().any(|&v| v > max) {
            return Err("convolution parameters exceed i32".into());
        }
        Ok(geo)
    }

    fn fields(&self) -> [usize; 21] {
        let g = self;
        [
            g.n, g.h, g.w, g.cin, g.ho, g.wo, g.cout, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
            g.groups, g.cg, g.cog, g.m, g.kg, g.up,
        ]
    }

    /// The by-value `ConvGeo` argument (all fields checked to fit i32 in `new`).
    fn bytes(&self) -> Vec<u8> {
        self.fields().iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()
    }
}

/// The tensor-core tile for a problem: the largest that still gives `MIN_BLOCKS` blocks (a
/// 128-column tile only when a group has more than 64 output channels), else the smallest.
fn tc_tile(m: usize, cog: usize, groups: usize) -> (usize, usize) {
    let blocks = |(bm, bn): (usize, usize)| m.div_ceil(bm) * cog.div_ceil(bn) * groups;
    TC_TILES
        .into_iter()
        .filter(|&(_, bn)| bn <= 64 || cog > 64)
        .find(|&t| blocks(t) >= MIN_BLOCKS)
        .unwrap_or(TC_TILES[TC_TILES.len() - 1])
}

/// Dynamic shared memory of the tensor-core kernel with tile `(bm, bn)`: the staged A and B
/// tiles of every pipeline stage, 16-bit elements.
fn tc_smem(bm: usize, bn: usize) -> usize {
    TC_STAGES * (bm + bn) * TC_LDS * 2
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    plan_up(op, ins, out, 0)
}

/// A nearest ×2^k upsample (`resize`, whose output is the conv's x) and the convolution `conv`
/// reading it, as one launch that reads the small image (`ins`: its x, then weight and bias).
pub(super) fn plan_upsampled(
    resize: &Op,
    conv: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Vec<Call>, CudaError> {
    let Op::Resize { mode: ResizeMode::Nearest, out: [oh, ow], align_corners: false, antialias: false } =
        *resize
    else {
        return Err(unsupported(resize, "only plain nearest resizes fuse into a convolution"));
    };
    let x = &ins[0];
    let (h, w) = (x.shape.get(1).copied().unwrap_or(0), x.shape.get(2).copied().unwrap_or(0));
    let factor = oh.checked_div(h).unwrap_or(0);
    if h == 0 || w == 0 || oh != factor * h || ow != factor * w || !factor.is_power_of_two() || factor < 2 {
        return Err(unsupported(resize, &format!("{h}x{w} -> {oh}x{ow} is not a power-of-two upsampling")));
    }
    plan_up(conv, ins, out, factor.trailing_zeros() as usize)
}

fn plan_up(op: &Op, ins: &[DevTensor], out: &DevTensor, up: usize) -> Result<Vec<Call>, CudaError> {
    let Op::Conv2d(p) = op else {
        return Err(unsupported(op, "not a convolution"));
    };
    let [x, w, rest @ ..] = ins else {
        return Err(unsupported(op, "expects x, weight and an optional bias"));
    };
    if rest.len() > 1 {
        return Err(unsupported(op, "expects x, weight and an optional bias"));
    }
    let bias = rest.first().filter(|b| b.ptr != 0);
    let sfx = float_kernel(op, x.dtype)?;
    if w.dtype != x.dtype || out.dtype != x.dtype || bias.is_some_and(|b| b.dtype != x.dtype) {
        return Err(unsupported(op, "x, weight, bias and output dtypes differ"));
    }
    let geo = Geo::new(p, x.shape, w.shape, out.shape, bias.map(|b| b.shape), up)
        .map_err(|why| unsupported(op, &why))?;
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let (entry, (bm, bn), threads, smem) = if x.dtype == DType::F32 {
        (format!("conv_simt_{sfx}"), (SIMT_TILE, SIMT_TILE), 256, 0)
    } else {
        let vec = geo.cg.is_multiple_of(8) && x.ptr.is_multiple_of(16) && w.ptr.is_multiple_of(16);
        let (bm, bn) = tc_tile(geo.m, geo.cog, geo.groups);
        let mode = if vec { "vec" } else { "gather" };
        (format!("conv_tc_{bm}x{bn}_{mode}_{sfx}"), (bm, bn), (bm / 64) * (bn / 32) * 32, tc_smem(bm, bn))
    };
    let grid = |v: usize| u32::try_from(v).map_err(|_| unsupported(op, "grid exceeds u32"));
    Ok(vec![Call::Kernel(KernelCall {
        file: FILE,
        entry,
        grid: (grid(geo.m.div_ceil(bm))?, grid(geo.cog.div_ceil(bn))?, grid(geo.groups)?),
        block: (threads as u32, 1, 1),
        smem: smem as u32,
        args: vec![
            Arg::Ptr(x.ptr),
            Arg::Ptr(w.ptr),
            Arg::Ptr(bias.map_or(0, |b| b.ptr)),
            Arg::Ptr(out.ptr),
            Arg::Bytes(geo.bytes()),
        ],
    })])
}

/// (name, x [N,H,W,Cin], Cout, [KH,KW], params, with bias).
type Shape = (&'static str, [usize; 4], usize, [usize; 2], Conv2dParams, bool);

fn params(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> Conv2dParams {
    Conv2dParams { stride, padding, dilation, groups }
}

fn shapes() -> Vec<Shape> {
    let same3 = || params([1, 1], [1, 1], [1, 1], 1);
    vec![
        ("3x3 s1 p1", [2, 17, 19, 64], 96, [3, 3], same3(), true),
        ("3x3 s2 p1", [1, 33, 31, 128], 160, [3, 3], params([2, 2], [1, 1], [1, 1], 1), true),
        ("1x1", [1, 16, 16, 320], 640, [1, 1], Conv2dParams::default(), true),
        ("stem 4x4 s4", [1, 64, 64, 3], 192, [4, 4], params([4, 4], [0, 0], [1, 1], 1), true),
        ("stem 4x4 s4 512px", [1, 512, 512, 3], 192, [4, 4], params([4, 4], [0, 0], [1, 1], 1), true),
        ("downsample 2x2 s2", [1, 24, 24, 192], 384, [2, 2], params([2, 2], [0, 0], [1, 1], 1), true),
        ("grouped g4 3x3", [2, 13, 11, 64], 96, [3, 3], params([1, 1], [1, 1], [1, 1], 4), true),
        ("grouped g3 cg3", [1, 11, 13, 9], 12, [3, 3], params([1, 1], [1, 1], [1, 1], 3), true),
        ("dilation 2", [1, 20, 18, 32], 48, [3, 3], params([1, 1], [2, 2], [2, 2], 1), true),
        ("3x5 s2x1 p1x2 d1x2", [1, 19, 23, 24], 40, [3, 5], params([2, 1], [1, 2], [1, 2], 1), true),
        ("no bias", [1, 15, 15, 48], 64, [3, 3], same3(), false),
        ("odd cout 77", [1, 12, 14, 40], 77, [3, 3], same3(), true),
        ("cout 3", [1, 20, 20, 32], 3, [3, 3], same3(), true),
        ("cin 12", [2, 10, 9, 12], 40, [3, 3], same3(), true),
        ("unet 3x3 64->384", [2, 64, 64, 64], 384, [3, 3], same3(), true),
        ("vae 3x3 64->64", [1, 128, 136, 64], 64, [3, 3], same3(), true),
        ("conv_in 3x3 3->64", [1, 128, 136, 3], 64, [3, 3], same3(), true),
    ]
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        for (name, x, cout, [kh, kw], p, bias) in shapes() {
            let cg = x[3] / p.groups;
            // Weights ~ 1/sqrt(K) keep outputs O(1) whatever the reduction length.
            let s = 1.0 / ((kh * kw * cg) as f32).sqrt();
            let mut inputs =
                vec![Input::uniform(dt, &x, -1.0, 1.0), Input::uniform(dt, &[cout, kh, kw, cg], -s, s)];
            if bias {
                inputs.push(Input::uniform(dt, &[cout], -0.5, 0.5));
            }
            v.push(Case::new(format!("conv2d {name} {dt}"), Op::Conv2d(p), inputs));
        }
        // UNet/VAE upsample blocks: nearest ×2 then a 3x3 conv, fused (ops::plan_chain); and ×4
        // into a strided conv.
        for (x, cout, factor, p) in [
            ([2, 9, 11, 64], 96, 2, params([1, 1], [1, 1], [1, 1], 1)),
            ([1, 5, 7, 12], 20, 4, params([2, 2], [1, 1], [1, 1], 1)),
        ] {
            let s = 1.0 / ((9 * x[3]) as f32).sqrt();
            let resize = Op::Resize {
                mode: ResizeMode::Nearest,
                out: [x[1] * factor, x[2] * factor],
                align_corners: false,
                antialias: false,
            };
            let w = Input::uniform(dt, &[cout, 3, 3, x[3]], -s, s);
            let b = Input::uniform(dt, &[cout], -0.5, 0.5);
            let name = format!("upsample x{factor} + conv2d 3x3 {x:?} -> {cout} {dt}");
            v.push(Case::chain(
                name,
                resize,
                vec![Input::uniform(dt, &x, -1.0, 1.0)],
                Op::Conv2d(p),
                vec![w, b],
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::sources::{entry_points, SOURCES};
    use focus_graph::infer::{infer, In};
    use std::collections::BTreeSet;

    fn conv_entries() -> BTreeSet<String> {
        let src = SOURCES.iter().find(|(f, _)| *f == FILE).expect("conv.cu registered").1;
        entry_points(src).into_iter().collect()
    }

    /// Plan `op` on fake, 256-byte aligned device pointers (`x_off` added to x's).
    fn plan_shapes(op: &Op, dt: DType, shapes: &[Vec<usize>], x_off: u64) -> Result<Vec<Call>, CudaError> {
        let ins: Vec<In> = shapes.iter().map(|s| In { shape: s, dtype: dt }).collect();
        let (out_shape, out_dt) = infer(op, &ins).expect("valid case");
        let devs: Vec<DevTensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| DevTensor {
                dtype: dt,
                shape: s,
                ptr: ((i as u64 + 1) << 32) + x_off * (i == 0) as u64,
            })
            .collect();
        let out = DevTensor { dtype: out_dt, shape: &out_shape, ptr: 9 << 32 };
        plan(op, &devs, &out, Scratch { ptr: 0, bytes: 0, flag: 0 })
    }

    fn kernel(calls: &[Call]) -> &KernelCall {
        match calls {
            [Call::Kernel(k)] => k,
            _ => panic!("expected one kernel launch, got {calls:?}"),
        }
    }

    #[test]
    fn every_case_plans_to_valid_launches_covering_every_kernel() {
        let entries = conv_entries();
        let mut used = BTreeSet::new();
        for case in cases().into_iter().filter(|c| c.then.is_none()) {
            let shapes: Vec<Vec<usize>> = case.inputs.iter().map(|i| i.shape.clone()).collect();
            let calls = plan_shapes(&case.op, case.inputs[0].dtype, &shapes, 0).unwrap();
            let k = kernel(&calls);
            k.validate().unwrap();
            assert!(entries.contains(&k.entry), "{}: no entry point {}", case.name, k.entry);
            assert!(
                matches!(&k.args[..], [Arg::Ptr(_), Arg::Ptr(_), Arg::Ptr(_), Arg::Ptr(_), Arg::Bytes(b)] if b.len() == 84)
            );
            let has_bias = matches!(k.args[2], Arg::Ptr(p) if p != 0);
            assert_eq!(has_bias, shapes.len() == 3, "{}", case.name);
            used.insert(k.entry.clone());
        }
        assert_eq!(used, entries, "cases leave kernels untested");
    }

    #[test]
    fn path_and_launch_shape() {
        let op = Op::Conv2d(params([1, 1], [1, 1], [1, 1], 1));
        let shapes = [vec![2, 64, 64, 64], vec![384, 3, 3, 64], vec![384]];
        let calls = plan_shapes(&op, DType::BF16, &shapes, 0).unwrap();
        let k = kernel(&calls);
        assert_eq!(k.entry, "conv_tc_128x128_vec_bf16");
        assert_eq!((k.grid, k.block, k.smem), ((64, 3, 1), (256, 1, 1), 61440));
        // A 2-byte aligned x cannot take 16-byte copies.
        let calls = plan_shapes(&op, DType::F16, &shapes, 2).unwrap();
        assert_eq!(kernel(&calls).entry, "conv_tc_128x128_gather_f16");
        let calls = plan_shapes(&op, DType::F32, &shapes, 0).unwrap();
        let k = kernel(&calls);
        assert_eq!(
            (k.entry.as_str(), k.grid, k.block, k.smem),
            ("conv_simt_f32", (128, 6, 1), (256, 1, 1), 0)
        );
    }

    #[test]
    fn tiles_and_shared_memory() {
        assert_eq!(tc_tile(8192, 384, 1), (128, 128));
        assert_eq!(tc_tile(8192, 256, 1), (128, 64)); // 64x2 = 128 blocks of 128x128: too few
        assert_eq!(tc_tile(17408, 64, 1), (128, 64));
        assert_eq!(tc_tile(256, 640, 1), (64, 64));
        assert_eq!(tc_tile(16384, 192, 1), (128, 128));
        assert_eq!(tc_tile(100_000, 3, 1), (128, 64));
        assert_eq!((tc_smem(128, 128), tc_smem(128, 64), tc_smem(64, 64)), (61440, 46080, 30720));
        assert!(TC_TILES
            .iter()
            .all(|&(bm, bn)| tc_smem(bm, bn) as u32 <= crate::cuda::launch::MAX_SMEM_OPT_IN));
    }

    #[test]
    fn geometry_packing() {
        let p = params([2, 1], [1, 2], [1, 2], 2);
        let geo = Geo::new(&p, &[2, 9, 10, 8], &[6, 3, 5, 4], &[2, 5, 6, 6], Some(&[6]), 0).unwrap();
        assert_eq!((geo.cg, geo.cog, geo.m, geo.kg), (4, 3, 60, 60));
        let b = geo.bytes();
        let ints: Vec<i32> = b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(ints, [2, 9, 10, 8, 5, 6, 6, 3, 5, 2, 1, 1, 2, 1, 2, 2, 4, 3, 60, 60, 0]);
        // Wrong output extent, wrong bias length.
        assert!(Geo::new(&p, &[2, 9, 10, 8], &[6, 3, 5, 4], &[2, 5, 7, 6], None, 0).is_err());
        assert!(Geo::new(&p, &[2, 9, 10, 8], &[6, 3, 5, 4], &[2, 5, 6, 6], Some(&[3]), 0).is_err());
        // Upsampled ×2: the output extent follows the 18x20 virtual image.
        let geo = Geo::new(&p, &[2, 9, 10, 8], &[6, 3, 5, 4], &[2, 9, 16, 6], None, 1).unwrap();
        assert_eq!((geo.h, geo.w, geo.up), (9, 10, 1));
        assert!(Geo::new(&p, &[2, 9, 10, 8], &[6, 3, 5, 4], &[2, 5, 6, 6], None, 1).is_err());
    }

    #[test]
    fn unsupported_and_empty() {
        let op = Op::Conv2d(Conv2dParams::default());
        let is_unsupported =
            |r: Result<Vec<Call>, CudaError>| matches!(r, Err(CudaError::Unsupported { .. }));
        let ok = [vec![1, 4, 4, 8], vec![16, 1, 1, 8]];
        // Integer tensors.
        let (x, w) = (ok[0].as_slice(), ok[1].as_slice());
        let dev = |dtype, shape| DevTensor { dtype, shape, ptr: 1 << 32 };
        let out_shape = [1, 4, 4, 16];
        let s = Scratch { ptr: 0, bytes: 0, flag: 0 };
        let ints = [dev(DType::I32, x), dev(DType::I32, w)];
        assert!(is_unsupported(plan(&op, &ints, &dev(DType::I32, &out_shape), s)));
        // Mixed dtypes.
        let mixed = [dev(DType::F16, x), dev(DType::F32, w)];
        assert!(is_unsupported(plan(&op, &mixed, &dev(DType::F16, &out_shape), s)));
        // 2^31 input elements.
        let big = [1 << 16, 1 << 8, 1 << 4, 8];
        let big_out = [1 << 16, 1 << 8, 1 << 4, 16];
        let huge = [dev(DType::BF16, &big), dev(DType::BF16, w)];
        assert!(is_unsupported(plan(&op, &huge, &dev(DType::BF16, &big_out), s)));
        // Nothing to compute: no launch.
        let empty = [vec![0, 4, 4, 8], vec![16, 1, 1, 8]];
        assert!(plan_shapes(&op, DType::F16, &empty, 0).unwrap().is_empty());
        assert!(plan_shapes(&op, DType::F16, &ok, 0).is_ok());
    }
}
