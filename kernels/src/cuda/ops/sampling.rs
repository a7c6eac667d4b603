//! Resize, average pooling, grid_sample, multi-scale deformable attention (NHWC maps) and the
//! timestep embedding: one thread per output element (a warp per query and head for
//! deformable attention), with the CPU's coordinate arithmetic reproduced exactly.

use super::*;
use focus_graph::ResizeMode;

const FILE: &str = "sampling.cu";
/// Levels in the deformable-attention kernel's `Levels` struct (MAX_LEVELS in sampling.cu).
const MAX_LEVELS: usize = 8;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let call = match op {
        Op::Resize { mode, out: size, align_corners, antialias } => {
            resize(op, *mode, *size, *align_corners, *antialias, ins, out)?
        }
        Op::AvgPool2d { kernel, stride, padding, count_include_pad } => {
            avg_pool(op, *kernel, *stride, *padding, *count_include_pad, ins, out)?
        }
        Op::GridSample { align_corners } => grid_sample(op, *align_corners, ins, out)?,
        Op::MsDeformAttn { levels } => ms_deform_attn(op, levels, ins, out)?,
        Op::TimestepEmbedding { dim, flip_sin_to_cos, downscale_freq_shift, max_period } => {
            timestep(op, *dim, *flip_sin_to_cos, *downscale_freq_shift, *max_period, ins, out)?
        }
        _ => return Err(unsupported(op, "not a sampling op")),
    };
    Ok(call.into_iter().map(Call::Kernel).collect())
}

/// The `[N, H, W, C]` dims of a feature map.
fn nhwc(op: &Op, t: &DevTensor, what: &str) -> Result<[usize; 4], CudaError> {
    match *t.shape {
        [n, h, w, c] => Ok([n, h, w, c]),
        _ => Err(unsupported(op, &format!("{what} must be [N, H, W, C]"))),
    }
}

fn ints(op: &Op, vals: &[usize]) -> Result<Vec<Arg>, CudaError> {
    vals.iter().map(|&v| i32_arg(op, v, "size")).collect()
}

/// PyTorch's source/destination scale (f32, as the CPU reference computes it).
fn scale_of(inp: usize, out: usize, align_corners: bool) -> f32 {
    if align_corners {
        if out > 1 {
            (inp - 1) as f32 / (out - 1) as f32
        } else {
            0.0
        }
    } else {
        inp as f32 / out as f32
    }
}

fn resize(
    op: &Op,
    mode: ResizeMode,
    size: [usize; 2],
    align: bool,
    antialias: bool,
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let [x] = ins else { return Err(unsupported(op, "expects 1 input")) };
    let sfx = float_kernel(op, x.dtype)?;
    let [n, h, w, c] = nhwc(op, x, "x")?;
    let [ho, wo] = size;
    if out.dtype != x.dtype || out.shape != [n, ho, wo, c] {
        return Err(unsupported(op, "output shape/dtype"));
    }
    if h == 0 || w == 0 || ho == 0 || wo == 0 {
        return Err(unsupported(op, "empty spatial dims"));
    }
    if out.numel() == 0 {
        return Ok(None);
    }
    let mut args = vec![Arg::Ptr(x.ptr), Arg::Ptr(out.ptr)];
    args.extend(ints(op, &[n, h, w, c, ho, wo])?);
    let (entry, extra) = match mode {
        // Nearest ignores the flags (in/out scale), as the reference does.
        ResizeMode::Nearest => {
            args.extend([Arg::F32(h as f32 / ho as f32), Arg::F32(w as f32 / wo as f32)]);
            ("resize", [Arg::I32(0), Arg::I32(0)].to_vec())
        }
        _ => {
            args.extend([Arg::F32(scale_of(h, ho, align)), Arg::F32(scale_of(w, wo, align))]);
            let cubic = mode == ResizeMode::Bicubic;
            if antialias {
                ("resize_aa", vec![Arg::I32(cubic as i32)])
            } else {
                ("resize", vec![Arg::I32(1 + cubic as i32), Arg::I32(align as i32)])
            }
        }
    };
    args.extend(extra);
    Ok(Some(KernelCall::elementwise(FILE, format!("{entry}_{sfx}"), out.numel(), args)))
}

fn avg_pool(
    op: &Op,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let [x] = ins else { return Err(unsupported(op, "expects 1 input")) };
    let sfx = float_kernel(op, x.dtype)?;
    let [n, h, w, c] = nhwc(op, x, "x")?;
    let mut o = [0; 2];
    for i in 0..2 {
        let padded = [h, w][i] + 2 * padding[i];
        if kernel[i] == 0 || stride[i] == 0 || 2 * padding[i] > kernel[i] || padded < kernel[i] {
            return Err(unsupported(op, "window"));
        }
        o[i] = (padded - kernel[i]) / stride[i] + 1;
    }
    if out.dtype != x.dtype || out.shape != [n, o[0], o[1], c] {
        return Err(unsupported(op, "output shape/dtype"));
    }
    if out.numel() == 0 {
        return Ok(None);
    }
    let mut args = vec![Arg::Ptr(x.ptr), Arg::Ptr(out.ptr)];
    args.extend(ints(
        op,
        &[n, h, w, c, o[0], o[1], kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]],
    )?);
    args.push(Arg::I32(count_include_pad as i32));
    Ok(Some(KernelCall::elementwise(FILE, format!("avg_pool_{sfx}"), out.numel(), args)))
}

fn grid_sample(
    op: &Op,
    align: bool,
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let [x, grid] = ins else { return Err(unsupported(op, "expects 2 inputs")) };
    let sfx = float_kernel(op, x.dtype)?;
    let [n, h, w, c] = nhwc(op, x, "x")?;
    let [gn, ho, wo, two] = nhwc(op, grid, "grid")?;
    if grid.dtype != x.dtype || gn != n || two != 2 || out.dtype != x.dtype || out.shape != [n, ho, wo, c] {
        return Err(unsupported(op, "grid/output shape or dtype"));
    }
    if out.numel() == 0 {
        return Ok(None);
    }
    let mut args = vec![Arg::Ptr(x.ptr), Arg::Ptr(grid.ptr), Arg::Ptr(out.ptr)];
    args.extend(ints(op, &[n, h, w, c, ho, wo])?);
    args.push(Arg::I32(align as i32));
    Ok(Some(KernelCall::elementwise(FILE, format!("grid_sample_{sfx}"), out.numel(), args)))
}

/// `struct Levels` of sampling.cu: count, heights, widths and first flattened positions (i32).
fn levels_struct(levels: &[[usize; 2]]) -> Vec<u8> {
    let mut start = 0;
    let mut starts = Vec::new();
    for l in levels {
        starts.push(start);
        start += l[0] * l[1];
    }
    let mut b = (levels.len() as i32).to_le_bytes().to_vec();
    for field in [levels.iter().map(|l| l[0]).collect(), levels.iter().map(|l| l[1]).collect(), starts] {
        let field: Vec<usize> = field;
        for i in 0..MAX_LEVELS {
            b.extend((field.get(i).copied().unwrap_or(0) as i32).to_le_bytes());
        }
    }
    b
}

fn ms_deform_attn(
    op: &Op,
    levels: &[[usize; 2]],
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let [value, loc, weights] = ins else { return Err(unsupported(op, "expects 3 inputs")) };
    let sfx = float_kernel(op, value.dtype)?;
    if levels.len() > MAX_LEVELS {
        return Err(unsupported(op, &format!("{} levels (at most {MAX_LEVELS})", levels.len())));
    }
    let s: usize = levels.iter().map(|l| l[0] * l[1]).sum();
    let (&[n, sv, hh, dh], &[ln, q, lh, nl, np, two]) = (value.shape, loc.shape) else {
        return Err(unsupported(op, "value must be [N, S, Hh, Dh] and loc [N, Q, Hh, L, P, 2]"));
    };
    let fits = sv == s
        && ln == n
        && lh == hh
        && nl == levels.len()
        && two == 2
        && weights.shape == [n, q, hh, nl, np]
        && loc.dtype == value.dtype
        && weights.dtype == value.dtype
        && out.dtype == value.dtype
        && out.shape == [n, q, hh * dh];
    if !fits {
        return Err(unsupported(op, "inputs inconsistent with the levels"));
    }
    let nqh = n * q * hh;
    if nqh == 0 || dh == 0 {
        return Ok(None);
    }
    let mut args = vec![Arg::Ptr(value.ptr), Arg::Ptr(loc.ptr), Arg::Ptr(weights.ptr), Arg::Ptr(out.ptr)];
    args.push(Arg::U64(nqh as u64));
    args.extend(ints(op, &[q, s, hh, dh, np])?);
    args.push(Arg::Bytes(levels_struct(levels)));
    // One warp per (n, q, head).
    Ok(Some(KernelCall::elementwise(FILE, format!("ms_deform_attn_{sfx}"), nqh * 32, args)))
}

fn timestep(
    op: &Op,
    dim: usize,
    flip: bool,
    shift: f32,
    max_period: f32,
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let [t] = ins else { return Err(unsupported(op, "expects 1 input")) };
    let sfx = float_kernel(op, t.dtype)?;
    let &[n] = t.shape else { return Err(unsupported(op, "timesteps must be [N]")) };
    if out.dtype != DType::F32 || out.shape != [n, dim] || dim == 0 {
        return Err(unsupported(op, "output must be f32 [N, dim]"));
    }
    if n == 0 {
        return Ok(None);
    }
    // -ln(max_period) rounded to f32, as the reference computes it on the host side.
    let neg_log = -(max_period as f64).ln() as f32;
    let args = vec![
        Arg::Ptr(t.ptr),
        Arg::Ptr(out.ptr),
        Arg::U64(n as u64),
        i32_arg(op, dim, "dim")?,
        Arg::I32(flip as i32),
        Arg::F32(shift),
        Arg::F32(neg_log),
    ];
    Ok(Some(KernelCall::elementwise(FILE, format!("timestep_embedding_{sfx}"), out.numel(), args)))
}

pub fn cases() -> Vec<Case> {
    use DType::{BF16, F16, F32};
    let mut v = Vec::new();
    let rs =
        |mode, out: [usize; 2], align_corners, antialias| Op::Resize { mode, out, align_corners, antialias };
    let img = |dt: DType, h: usize, w: usize| vec![Input::uniform(dt, &[2, h, w, 3], -1.0, 1.0)];
    // Down 64x48 → 37x29, up 16x12 → 37x29, and mixed (up in H, down in W).
    let sizes = [("down", 64, 48), ("up", 16, 12), ("mixed", 20, 48)];
    for (what, h, w) in sizes {
        v.push(Case::new(
            format!("resize nearest {what} f32"),
            rs(ResizeMode::Nearest, [37, 29], false, false),
            img(F32, h, w),
        ));
        for (mode, m) in [(ResizeMode::Bilinear, "bilinear"), (ResizeMode::Bicubic, "bicubic")] {
            for align in [false, true] {
                for aa in [false, true] {
                    v.push(Case::new(
                        format!("resize {m} {what} align={align} aa={aa} f32"),
                        rs(mode, [37, 29], align, aa),
                        img(F32, h, w),
                    ));
                }
            }
        }
    }
    v.extend([
        Case::new(
            "resize nearest down bf16",
            rs(ResizeMode::Nearest, [37, 29], false, false),
            img(BF16, 64, 48),
        ),
        Case::new(
            "resize bilinear down aa bf16",
            rs(ResizeMode::Bilinear, [37, 29], false, true),
            img(BF16, 64, 48),
        ),
        Case::new(
            "resize bicubic up bf16",
            rs(ResizeMode::Bicubic, [37, 29], false, false),
            img(BF16, 16, 12),
        ),
        Case::new(
            "resize bicubic down aa f16",
            rs(ResizeMode::Bicubic, [37, 29], true, true),
            img(F16, 64, 48),
        ),
        Case::new(
            "resize bilinear align to 1x1",
            rs(ResizeMode::Bilinear, [1, 1], true, false),
            img(F32, 9, 7),
        ),
        Case::new(
            "resize bicubic align aa to 1x1",
            rs(ResizeMode::Bicubic, [1, 1], true, true),
            img(F32, 9, 7),
        ),
        Case::new(
            "resize vit 1024 -> 252 bicubic aa f32",
            rs(ResizeMode::Bicubic, [252, 252], false, true),
            vec![Input::uniform(F32, &[1, 1024, 1024, 3], 0.0, 1.0)],
        ),
        Case::new(
            "resize vit 1024 -> 448 bilinear aa bf16",
            rs(ResizeMode::Bilinear, [448, 448], false, true),
            vec![Input::uniform(BF16, &[1, 1024, 1024, 3], 0.0, 1.0)],
        ),
        Case::new(
            "resize feature map 32 -> 64 bilinear bf16",
            rs(ResizeMode::Bilinear, [64, 64], false, false),
            vec![Input::uniform(BF16, &[1, 32, 32, 256], -1.0, 1.0)],
        ),
    ]);

    let pool = |k: [usize; 2], s: [usize; 2], p: [usize; 2], cip: bool| Op::AvgPool2d {
        kernel: k,
        stride: s,
        padding: p,
        count_include_pad: cip,
    };
    v.extend([
        Case::new(
            "avg_pool 3x3 s2 p1 cip f32",
            pool([3, 3], [2, 2], [1, 1], true),
            vec![Input::uniform(F32, &[2, 17, 19, 5], -1.0, 1.0)],
        ),
        Case::new(
            "avg_pool 3x3 s2 p1 no-cip f32",
            pool([3, 3], [2, 2], [1, 1], false),
            vec![Input::uniform(F32, &[2, 17, 19, 5], -1.0, 1.0)],
        ),
        Case::new(
            "avg_pool 2x2 s2 bf16",
            pool([2, 2], [2, 2], [0, 0], true),
            vec![Input::uniform(BF16, &[2, 16, 16, 64], -1.0, 1.0)],
        ),
        Case::new(
            "avg_pool 3x2 s1,2 p1 no-cip f16",
            pool([3, 2], [1, 2], [1, 1], false),
            vec![Input::uniform(F16, &[1, 9, 11, 3], -1.0, 1.0)],
        ),
    ]);

    let gs = |align_corners| Op::GridSample { align_corners };
    let gs_in = |dt: DType| {
        vec![Input::uniform(dt, &[2, 13, 17, 6], -1.0, 1.0), Input::uniform(dt, &[2, 9, 11, 2], -1.3, 1.3)]
    };
    v.extend([
        Case::new("grid_sample f32", gs(false), gs_in(F32)),
        Case::new("grid_sample align f32", gs(true), gs_in(F32)),
        Case::new("grid_sample bf16", gs(false), gs_in(BF16)),
        Case::new("grid_sample align f16", gs(true), gs_in(F16)),
    ]);

    let msda = |dt: DType, levels: &[[usize; 2]], n: usize, q: usize, hh: usize, dh: usize, p: usize| {
        let s = levels.iter().map(|l| l[0] * l[1]).sum();
        let l = levels.len();
        Case::new(
            format!("ms_deform_attn L{l} Q{q} Hh{hh} Dh{dh} P{p} {dt}"),
            Op::MsDeformAttn { levels: levels.to_vec() },
            vec![
                Input::uniform(dt, &[n, s, hh, dh], -1.0, 1.0),
                // Some sampling points fall outside the maps (zero padding).
                Input::uniform(dt, &[n, q, hh, l, p, 2], -0.05, 1.05),
                Input::uniform(dt, &[n, q, hh, l, p], 0.0, 1.0),
            ],
        )
    };
    let m2f = [[16, 16], [8, 8], [4, 4]];
    v.extend([
        msda(F32, &m2f, 2, 100, 8, 32, 4),
        msda(BF16, &m2f, 2, 100, 8, 32, 4),
        msda(F32, &[[5, 7], [3, 2]], 1, 13, 3, 40, 3),
        msda(F16, &[[5, 7], [3, 2]], 1, 13, 3, 40, 3),
    ]);

    let te = |dim, flip_sin_to_cos, downscale_freq_shift| Op::TimestepEmbedding {
        dim,
        flip_sin_to_cos,
        downscale_freq_shift,
        max_period: 10000.0,
    };
    v.extend([
        Case::new("timestep 320 flip", te(320, true, 0.0), vec![Input::uniform(F32, &[5], 0.0, 1000.0)]),
        Case::new(
            "timestep 320 no flip shift 1",
            te(320, false, 1.0),
            vec![Input::uniform(F32, &[5], 0.0, 1000.0)],
        ),
        Case::new("timestep 33 bf16", te(33, false, 1.0), vec![Input::uniform(BF16, &[3], 0.0, 1000.0)]),
        Case::new("timestep 256 f16", te(256, true, 0.0), vec![Input::uniform(F16, &[4], 0.0, 1000.0)]),
    ]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::sources::{entry_points, SOURCES};

    const FAKE: Scratch = Scratch { ptr: 0x7000_0000, bytes: 0, flag: 0x7f00_0000 };

    fn plan_shapes(op: &Op, ins: &[(DType, Vec<usize>)]) -> Result<Vec<Call>, String> {
        let ins: Vec<(DType, &[usize])> = ins.iter().map(|(dt, s)| (*dt, s.as_slice())).collect();
        crate::cuda::check::plan_op_offline(op, &ins)
    }

    #[test]
    fn every_case_plans_valid_launches() {
        let src = SOURCES.iter().find(|s| s.0 == FILE).expect("sampling.cu registered").1;
        let entries = entry_points(src);
        for c in cases() {
            let ins: Vec<(DType, Vec<usize>)> = c.inputs.iter().map(|i| (i.dtype, i.shape.clone())).collect();
            let calls = plan_shapes(&c.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(calls.len(), 1, "{}", c.name);
            let Call::Kernel(k) = &calls[0] else { panic!("{}: not a kernel", c.name) };
            assert_eq!(k.file, FILE);
            assert!(entries.contains(&k.entry), "{}: no entry {}", c.name, k.entry);
        }
    }

    #[test]
    fn resize_scales_and_modes() {
        assert_eq!(scale_of(64, 37, false), 64.0 / 37.0);
        assert_eq!(scale_of(64, 37, true), 63.0 / 36.0);
        assert_eq!(scale_of(9, 1, true), 0.0);
        let plan_resize = |mode, align, aa| {
            let op = Op::Resize { mode, out: [5, 7], align_corners: align, antialias: aa };
            match &plan_shapes(&op, &[(DType::F32, vec![1, 10, 14, 2])]).unwrap()[0] {
                Call::Kernel(k) => (k.entry.clone(), k.args[8..].to_vec()),
                _ => unreachable!(),
            }
        };
        assert_eq!(
            plan_resize(ResizeMode::Nearest, false, false),
            ("resize_f32".into(), vec![Arg::F32(2.0), Arg::F32(2.0), Arg::I32(0), Arg::I32(0)])
        );
        assert_eq!(
            plan_resize(ResizeMode::Bicubic, true, false),
            ("resize_f32".into(), vec![Arg::F32(9.0 / 4.0), Arg::F32(13.0 / 6.0), Arg::I32(2), Arg::I32(1)])
        );
        assert_eq!(
            plan_resize(ResizeMode::Bilinear, false, true),
            ("resize_aa_f32".into(), vec![Arg::F32(2.0), Arg::F32(2.0), Arg::I32(0)])
        );
    }

    #[test]
    fn levels_packing() {
        let b = levels_struct(&[[16, 16], [8, 4]]);
        assert_eq!(b.len(), 4 * (1 + 3 * MAX_LEVELS));
        let word = |i: usize| i32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(
            [word(0), word(1), word(2), word(9), word(10), word(17), word(18)],
            [2, 16, 8, 16, 4, 0, 256]
        );
    }

    #[test]
    fn unsupported_configurations() {
        let err = |op: Op, ins: &[(DType, Vec<usize>)], out: (DType, Vec<usize>)| {
            let devs: Vec<DevTensor> =
                ins.iter().map(|(dt, sh)| DevTensor { dtype: *dt, shape: sh, ptr: 0x1000 }).collect();
            let out = DevTensor { dtype: out.0, shape: &out.1, ptr: 0x2000 };
            matches!(super::super::plan(&op, &devs, &out, FAKE), Err(CudaError::Unsupported { .. }))
        };
        let nine = vec![[1, 1]; 9];
        let ins = [
            (DType::F32, vec![1, 9, 1, 4]),
            (DType::F32, vec![1, 2, 1, 9, 1, 2]),
            (DType::F32, vec![1, 2, 1, 9, 1]),
        ];
        assert!(err(Op::MsDeformAttn { levels: nine }, &ins, (DType::F32, vec![1, 2, 4])));
        let rs =
            Op::Resize { mode: ResizeMode::Bilinear, out: [4, 4], align_corners: false, antialias: false };
        assert!(err(rs.clone(), &[(DType::I32, vec![1, 8, 8, 1])], (DType::I32, vec![1, 4, 4, 1])));
        assert!(err(rs, &[(DType::F32, vec![8, 8, 1])], (DType::F32, vec![4, 4, 1])));
        let te = Op::TimestepEmbedding {
            dim: 8,
            flip_sin_to_cos: false,
            downscale_freq_shift: 1.0,
            max_period: 1e4,
        };
        assert!(err(te, &[(DType::F32, vec![3])], (DType::F16, vec![3, 8])));
        let gs = Op::GridSample { align_corners: false };
        let ins = [(DType::F32, vec![1, 4, 4, 2]), (DType::BF16, vec![1, 3, 3, 2])];
        assert!(err(gs, &ins, (DType::F32, vec![1, 3, 3, 2])));
    }
}
