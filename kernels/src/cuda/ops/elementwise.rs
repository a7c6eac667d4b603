//! Unary, binary (broadcasting), comparison, where and cast: unary.cu, binary.cu, cast.cu.

use super::*;
use focus_graph::{BinaryOp, CmpOp, UnaryOp};

const MAX_RANK: usize = 8;

fn int_suffix(dt: DType) -> Option<&'static str> {
    match dt {
        DType::I32 => Some("i32"),
        DType::I64 => Some("i64"),
        DType::U8 => Some("u8"),
        _ => float_suffix(dt),
    }
}

fn cast_suffix(dt: DType) -> &'static str {
    match dt {
        DType::Bool => "bool",
        _ => int_suffix(dt).expect("every other dtype has a suffix"),
    }
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let n = out.numel();
    if n == 0 {
        return Ok(Vec::new());
    }
    let call = match op {
        Op::Unary(u) => {
            let s = float_kernel(op, out.dtype)?;
            let code = UnaryOp::ALL.iter().position(|x| x == u).expect("listed") as i32;
            let args = vec![Arg::Ptr(ins[0].ptr), Arg::Ptr(out.ptr), Arg::U64(n as u64), Arg::I32(code)];
            KernelCall::elementwise("unary.cu", format!("unary_{s}"), n, args)
        }
        Op::Glu { act } => {
            let s = float_kernel(op, out.dtype)?;
            let code = UnaryOp::ALL.iter().position(|x| x == act).expect("listed") as i32;
            let half = *out.shape.last().expect("rank >= 1");
            let args = vec![
                Arg::Ptr(ins[0].ptr),
                Arg::Ptr(out.ptr),
                Arg::U64((n / half) as u64),
                Arg::U64(half as u64),
                Arg::I32(code),
            ];
            KernelCall::elementwise("unary.cu", format!("glu_{s}"), n, args)
        }
        Op::Binary(_) | Op::Compare(_) => {
            let s = int_suffix(ins[0].dtype)
                .ok_or_else(|| unsupported(op, &format!("dtype {}", ins[0].dtype)))?;
            let (shape, st) = broadcast_layout(out.shape, &[ins[0].shape, ins[1].shape]);
            if shape.len() > MAX_RANK {
                return Err(unsupported(op, "more than 8 non-contiguous dims"));
            }
            let (entry, code) = match op {
                Op::Binary(b) => ("binary", BinaryOp::ALL.iter().position(|x| x == b)),
                Op::Compare(c) => ("compare", CmpOp::ALL.iter().position(|x| x == c)),
                _ => unreachable!("matched above"),
            };
            let args = vec![
                Arg::Ptr(ins[0].ptr),
                Arg::Ptr(ins[1].ptr),
                Arg::Ptr(out.ptr),
                Arg::U64(n as u64),
                Arg::I32(code.expect("listed") as i32),
                Arg::Bytes(rank_struct(shape.len(), &[&shape, &st[0], &st[1]])),
            ];
            KernelCall::elementwise("binary.cu", format!("{entry}_{s}"), n, args)
        }
        Op::Where => {
            let (shape, st) = broadcast_layout(out.shape, &[ins[0].shape, ins[1].shape, ins[2].shape]);
            if shape.len() > MAX_RANK {
                return Err(unsupported(op, "more than 8 non-contiguous dims"));
            }
            let args = vec![
                Arg::Ptr(ins[0].ptr),
                Arg::Ptr(ins[1].ptr),
                Arg::Ptr(ins[2].ptr),
                Arg::Ptr(out.ptr),
                Arg::U64(n as u64),
                Arg::Bytes(rank_struct(shape.len(), &[&shape, &st[0], &st[1], &st[2]])),
            ];
            KernelCall::elementwise("binary.cu", format!("where_{}", elem_suffix(out.dtype)), n, args)
        }
        Op::Cast { .. } if ins[0].dtype == out.dtype => {
            return Ok(vec![Call::Copy { src: ins[0].ptr, dst: out.ptr, bytes: out.bytes() }]);
        }
        Op::Cast { .. } => {
            let entry = format!("cast_{}_{}", cast_suffix(ins[0].dtype), cast_suffix(out.dtype));
            let args = vec![Arg::Ptr(ins[0].ptr), Arg::Ptr(out.ptr), Arg::U64(n as u64)];
            KernelCall::elementwise("cast.cu", entry, n, args)
        }
        _ => return Err(unsupported(op, "not an elementwise op")),
    };
    Ok(vec![Call::Kernel(call)])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        for u in UnaryOp::ALL {
            let positive = matches!(u, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip);
            let lo = if positive { 0.1 } else { -3.0 };
            let x = Input::uniform(dt, &[100_003], lo, 3.0);
            v.push(Case::new(format!("unary {} {dt}", u.name()), Op::Unary(u), vec![x]));
        }
        for b in BinaryOp::ALL {
            let lo = if matches!(b, BinaryOp::Pow | BinaryOp::Div) { 0.5 } else { -2.0 };
            let ins = vec![Input::uniform(dt, &[37, 1, 65], lo, 2.0), Input::uniform(dt, &[19, 65], lo, 2.0)];
            v.push(Case::new(format!("binary {} bcast {dt}", b.name()), Op::Binary(b), ins));
        }
        // Same shape: collapses to one dim.
        let ins = vec![
            Input::uniform(dt, &[3, 5, 7, 11], -1.0, 1.0),
            Input::uniform(dt, &[3, 5, 7, 11], -1.0, 1.0),
        ];
        v.push(Case::new(format!("binary add flat {dt}"), Op::Binary(BinaryOp::Add), ins));
        for c in CmpOp::ALL {
            // Small integers stored as floats so equality cases occur.
            let ins = vec![Input::ints(dt, &[37, 1, 65], -3, 3), Input::ints(dt, &[19, 65], -3, 3)];
            v.push(Case::new(format!("compare {} bcast {dt}", c.name()), Op::Compare(c), ins));
        }
        let ins = vec![
            Input::bools(&[5, 1, 33], 0.5),
            Input::uniform(dt, &[7, 33], -1.0, 1.0),
            Input::uniform(dt, &[5, 7, 1], -1.0, 1.0),
        ];
        v.push(Case::new(format!("where bcast {dt}"), Op::Where, ins));
    }
    for dt in [DType::I32, DType::I64, DType::U8] {
        for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min] {
            let ins = vec![Input::ints(dt, &[9, 1, 31], 0, 200), Input::ints(dt, &[4, 31], 0, 200)];
            v.push(Case::new(format!("binary {} {dt}", b.name()), Op::Binary(b), ins));
        }
        for c in CmpOp::ALL {
            let ins = vec![Input::ints(dt, &[9, 1, 31], 0, 5), Input::ints(dt, &[4, 31], 0, 5)];
            v.push(Case::new(format!("compare {} {dt}", c.name()), Op::Compare(c), ins));
        }
    }
    // The LLM's visibility mask: key positions [1, C] <= query positions [T, 1].
    let ins = vec![Input::ints(DType::I32, &[1, 300], 0, 299), Input::ints(DType::I32, &[17, 1], 0, 299)];
    v.push(Case::new("compare le mask i32", Op::Compare(CmpOp::Le), ins));
    let ins = vec![
        Input::bools(&[2, 1, 9], 0.3),
        Input::ints(DType::I64, &[2, 4, 9], -9, 9),
        Input::ints(DType::I64, &[1], 5, 5),
    ];
    v.push(Case::new("where i64", Op::Where, ins));
    let all = [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::Bool];
    for from in all {
        for to in all {
            if from == to {
                continue;
            }
            let x = if from.is_float() {
                // Halves of integers and fractions; exact zeros exercise → bool.
                Input::ints(from, &[1001], -300, 300)
            } else if from == DType::Bool {
                Input::bools(&[1001], 0.5)
            } else {
                Input::ints(from, &[1001], 0, 255)
            };
            v.push(Case::new(format!("cast {from} -> {to}"), Op::Cast { to }, vec![x]));
        }
        if from != DType::F32 {
            let x = Input::uniform(DType::F32, &[4099], -300.0, 300.0);
            v.push(Case::new(format!("cast f32 fractions -> {from}"), Op::Cast { to: from }, vec![x]));
        }
    }
    v
}

/// GLU: GEGLU (SDXL's feed-forward, 2×1280 wide) and SwiGLU, odd row counts.
pub fn glu_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        for (act, shape) in [(UnaryOp::Gelu, vec![2, 77, 2560]), (UnaryOp::Silu, vec![37, 2 * 333])] {
            let x = Input::uniform(dt, &shape, -3.0, 3.0);
            v.push(Case::new(format!("glu {} {shape:?} {dt}", act.name()), Op::Glu { act }, vec![x]));
        }
    }
    v
}
