//! Softmax over any axis (softmax.cu): a block per row when the axis is innermost, a thread
//! per column otherwise.

use super::*;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let Op::Softmax { axis } = op else { return Err(unsupported(op, "not softmax")) };
    let x = &ins[0];
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    let (outer, len, inner) = split3(x.shape, *axis);
    let call = if inner == 1 {
        let rows = u32::try_from(outer).map_err(|_| unsupported(op, "too many rows"))?;
        KernelCall {
            file: "softmax.cu",
            entry: format!("softmax_rows_{s}"),
            grid: (rows, 1, 1),
            block: (if len <= 128 { 128 } else { 256 }, 1, 1),
            smem: 0,
            args: vec![Arg::Ptr(x.ptr), Arg::Ptr(out.ptr), i32_arg(op, len, "axis length")?],
        }
    } else {
        KernelCall::elementwise(
            "softmax.cu",
            format!("softmax_cols_{s}"),
            outer * inner,
            vec![
                Arg::Ptr(x.ptr),
                Arg::Ptr(out.ptr),
                Arg::U64(outer as u64),
                i32_arg(op, len, "axis length")?,
                Arg::U64(inner as u64),
            ],
        )
    };
    Ok(vec![Call::Kernel(call)])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let x = Input::uniform(dt, &[37, 1001], -8.0, 8.0);
        v.push(Case::new(format!("softmax rows {dt}"), Op::Softmax { axis: 1 }, vec![x]));
        let x = Input::uniform(dt, &[5, 77, 9], -8.0, 8.0);
        v.push(Case::new(format!("softmax middle axis {dt}"), Op::Softmax { axis: 1 }, vec![x]));
        let x = Input::uniform(dt, &[2, 16, 100, 100], -8.0, 8.0);
        v.push(Case::new(format!("softmax scores {dt}"), Op::Softmax { axis: 3 }, vec![x]));
    }
    v
}
