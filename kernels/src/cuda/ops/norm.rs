//! RMSNorm, LayerNorm (last axis) and channels-last GroupNorm (norm.cu), one block per row or
//! per (group, image), statistics in f32.

use super::*;

fn opt(ins: &[DevTensor], i: usize) -> Arg {
    Arg::Ptr(ins.get(i).map_or(0, |t| t.ptr))
}

fn block(grid: (u32, u32, u32)) -> KernelCall {
    KernelCall { file: "norm.cu", entry: String::new(), grid, block: (256, 1, 1), smem: 0, args: Vec::new() }
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let x = &ins[0];
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    if ins[1..].iter().any(|t| t.dtype != x.dtype) {
        return Err(unsupported(op, "weight and bias must have the input's dtype"));
    }
    let cols = *x.shape.last().expect("rank >= 1");
    let rows = x.numel() / cols;
    let rows_u32 = u32::try_from(rows).map_err(|_| unsupported(op, "too many rows"))?;
    let mut k = match op {
        Op::RmsNorm { eps } => {
            let mut k = block((rows_u32, 1, 1));
            k.entry = format!("rms_norm_{s}");
            k.args = vec![
                Arg::Ptr(x.ptr),
                opt(ins, 1),
                Arg::Ptr(out.ptr),
                i32_arg(op, cols, "cols")?,
                Arg::F32(*eps),
            ];
            k
        }
        Op::LayerNorm { eps } => {
            let mut k = block((rows_u32, 1, 1));
            k.entry = format!("layer_norm_{s}");
            k.args = vec![
                Arg::Ptr(x.ptr),
                opt(ins, 1),
                opt(ins, 2),
                Arg::Ptr(out.ptr),
                i32_arg(op, cols, "cols")?,
                Arg::F32(*eps),
            ];
            k
        }
        Op::GroupNorm { groups, eps } => {
            let n = x.shape[0];
            let spatial = x.numel() / (n * cols);
            let mut k = block((*groups as u32, n as u32, 1));
            k.entry = format!("group_norm_{s}");
            k.args = vec![
                Arg::Ptr(x.ptr),
                opt(ins, 1),
                opt(ins, 2),
                Arg::Ptr(out.ptr),
                i32_arg(op, spatial, "spatial size")?,
                i32_arg(op, cols, "channels")?,
                i32_arg(op, *groups, "groups")?,
                Arg::F32(*eps),
                Arg::I32(0),
            ];
            k
        }
        _ => return Err(unsupported(op, "not a norm")),
    };
    k.block = (if cols < 256 && !matches!(op, Op::GroupNorm { .. }) { 128 } else { 256 }, 1, 1);
    Ok(vec![Call::Kernel(k)])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let x = || Input::uniform(dt, &[67, 999], -2.0, 3.0);
        let w = || Input::uniform(dt, &[999], 0.5, 1.5);
        let b = || Input::uniform(dt, &[999], -0.5, 0.5);
        v.push(Case::new(format!("rms_norm {dt}"), Op::RmsNorm { eps: 1e-6 }, vec![x(), w()]));
        v.push(Case::new(format!("rms_norm no weight {dt}"), Op::RmsNorm { eps: 1e-6 }, vec![x()]));
        v.push(Case::new(format!("layer_norm {dt}"), Op::LayerNorm { eps: 1e-5 }, vec![x(), w(), b()]));
        let qk = Input::uniform(dt, &[2, 37, 16, 128], -2.0, 2.0);
        let qw = Input::uniform(dt, &[128], 0.5, 1.5);
        v.push(Case::new(format!("rms_norm per head {dt}"), Op::RmsNorm { eps: 1e-6 }, vec![qk, qw]));
        let x = Input::uniform(dt, &[2, 13, 11, 96], -2.0, 3.0);
        let (w, b) = (Input::uniform(dt, &[96], 0.5, 1.5), Input::uniform(dt, &[96], -0.5, 0.5));
        v.push(Case::new(
            format!("group_norm 32 {dt}"),
            Op::GroupNorm { groups: 32, eps: 1e-6 },
            vec![x, w, b],
        ));
        let x = Input::uniform(dt, &[1, 64, 64, 320], -2.0, 3.0);
        v.push(Case::new(format!("group_norm unet {dt}"), Op::GroupNorm { groups: 32, eps: 1e-5 }, vec![x]));
    }
    v
}
