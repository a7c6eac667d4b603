//! Shape and dtype inference: every op's rule, checked when a node is added.
//! Errors are plain strings; the builder wraps them with the op kind, node index and name.

use crate::dtype::DType;
use crate::op::*;
use crate::shape::{broadcast_shapes, Shape};

/// One input as seen by inference.
#[derive(Clone, Copy)]
pub struct In<'a> {
    pub shape: &'a [usize],
    pub dtype: DType,
}

type R = Result<(Vec<usize>, DType), String>;

fn sh(s: &[usize]) -> Shape {
    Shape::from(s)
}

fn arity(ins: &[In], lo: usize, hi: usize) -> Result<(), String> {
    if ins.len() < lo || ins.len() > hi {
        let want = if lo == hi { format!("{lo}") } else { format!("{lo}..={hi}") };
        return Err(format!("expects {want} inputs, got {}", ins.len()));
    }
    Ok(())
}

fn float(x: In, what: &str) -> Result<(), String> {
    if !x.dtype.is_float() {
        return Err(format!("{what} must be a float dtype, got {}", x.dtype));
    }
    Ok(())
}

fn int_index(x: In, what: &str) -> Result<(), String> {
    if !matches!(x.dtype, DType::I32 | DType::I64) {
        return Err(format!("{what} must be i32 or i64, got {}", x.dtype));
    }
    Ok(())
}

fn same_dtype(a: In, b: In, what: &str) -> Result<(), String> {
    if a.dtype != b.dtype {
        return Err(format!("{what}: dtypes differ ({} vs {})", a.dtype, b.dtype));
    }
    Ok(())
}

fn vec_of(x: In, n: usize, what: &str) -> Result<(), String> {
    if x.shape != [n] {
        return Err(format!("{what} must be [{n}], got {}", sh(x.shape)));
    }
    Ok(())
}

/// Checks attention's `q [B,Tq,Hq,D]`, `k [B,Tk,Hkv,D]`, `v [B,Tk,Hkv,Dv]`; returns `(B, Tq, Hq, Tk)`.
fn qkv(ins: &[In]) -> Result<(usize, usize, usize, usize), String> {
    let (q, k, v) = (ins[0], ins[1], ins[2]);
    float(q, "q")?;
    same_dtype(q, k, "q/k")?;
    same_dtype(q, v, "q/v")?;
    rank(q, 4, "q [B,Tq,Hq,D]")?;
    rank(k, 4, "k [B,Tk,Hkv,D]")?;
    rank(v, 4, "v [B,Tk,Hkv,Dv]")?;
    let (b, tq, hq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (tk, hkv) = (k.shape[1], k.shape[2]);
    if k.shape[0] != b || v.shape[0] != b || k.shape[3] != d || v.shape[1] != tk || v.shape[2] != hkv {
        return Err(format!("incompatible q {} k {} v {}", sh(q.shape), sh(k.shape), sh(v.shape)));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(format!("query heads {hq} not a multiple of kv heads {hkv}"));
    }
    Ok((b, tq, hq, tk))
}

fn rank(x: In, r: usize, what: &str) -> Result<(), String> {
    if x.shape.len() != r {
        return Err(format!("{what} must have rank {r}, got {}", sh(x.shape)));
    }
    Ok(())
}

fn axis_ok(axis: usize, r: usize) -> Result<(), String> {
    if axis >= r {
        return Err(format!("axis {axis} out of range for rank {r}"));
    }
    Ok(())
}

/// Infer the output shape and dtype of a non-leaf op.
pub fn infer(op: &Op, ins: &[In]) -> R {
    match op {
        Op::WriteSlice { axis } => {
            arity(ins, 3, 3)?;
            let (dst, src, off) = (ins[0], ins[1], ins[2]);
            same_dtype(dst, src, "write_slice")?;
            int_index(off, "offset")?;
            vec_of(off, 1, "offset")?;
            axis_ok(*axis, dst.shape.len())?;
            let fits = src.shape.len() == dst.shape.len()
                && src
                    .shape
                    .iter()
                    .zip(dst.shape)
                    .enumerate()
                    .all(|(i, (s, d))| if i == *axis { s <= d } else { s == d });
            if !fits {
                return Err(format!(
                    "src {} does not fit dst {} along axis {axis}",
                    sh(src.shape),
                    sh(dst.shape)
                ));
            }
            Ok((dst.shape.to_vec(), dst.dtype))
        }
        Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::State { .. } => {
            Err("leaf ops are created by the builder, not inferred".into())
        }
        Op::MatMul { trans_a, trans_b } => {
            arity(ins, 2, 2)?;
            let (a, b) = (ins[0], ins[1]);
            float(a, "a")?;
            same_dtype(a, b, "matmul")?;
            if a.shape.len() < 2 || b.shape.len() < 2 {
                return Err(format!("inputs need rank >= 2: a {} b {}", sh(a.shape), sh(b.shape)));
            }
            let (ra, rb) = (a.shape.len(), b.shape.len());
            let (m, ka) = if *trans_a {
                (a.shape[ra - 1], a.shape[ra - 2])
            } else {
                (a.shape[ra - 2], a.shape[ra - 1])
            };
            let (kb, n) = if *trans_b {
                (b.shape[rb - 1], b.shape[rb - 2])
            } else {
                (b.shape[rb - 2], b.shape[rb - 1])
            };
            if ka != kb {
                return Err(format!(
                    "inner dims differ: a {} (trans {trans_a}) k={ka} vs b {} (trans {trans_b}) k={kb}",
                    sh(a.shape),
                    sh(b.shape)
                ));
            }
            let batch = broadcast_shapes(&a.shape[..ra - 2], &b.shape[..rb - 2])
                .ok_or_else(|| format!("batch dims do not broadcast: a {} b {}", sh(a.shape), sh(b.shape)))?;
            let mut out = batch;
            out.extend([m, n]);
            Ok((out, a.dtype))
        }
        Op::Linear => {
            arity(ins, 2, 3)?;
            let (x, w) = (ins[0], ins[1]);
            float(x, "x")?;
            same_dtype(x, w, "linear weight")?;
            rank(w, 2, "weight")?;
            let k = *x.shape.last().ok_or("x must have rank >= 1")?;
            if w.shape[1] != k {
                return Err(format!(
                    "x {} last dim {k} != weight {} in-features {}",
                    sh(x.shape),
                    sh(w.shape),
                    w.shape[1]
                ));
            }
            if let Some(b) = ins.get(2) {
                same_dtype(x, *b, "linear bias")?;
                vec_of(*b, w.shape[0], "bias")?;
            }
            let mut out = x.shape.to_vec();
            *out.last_mut().unwrap() = w.shape[0];
            Ok((out, x.dtype))
        }
        Op::GatedLinear { .. } => {
            if ins.len() != 3 && ins.len() != 5 {
                return Err(format!(
                    "expects x, w_gate, w_up and optionally both biases, got {} inputs",
                    ins.len()
                ));
            }
            let x = ins[0];
            float(x, "x")?;
            let k = *x.shape.last().ok_or("x must have rank >= 1")?;
            for (w, what) in [(ins[1], "w_gate"), (ins[2], "w_up")] {
                same_dtype(x, w, what)?;
                rank(w, 2, what)?;
                if w.shape[1] != k || w.shape != ins[1].shape {
                    return Err(format!(
                        "x {} (in-features {k}) with w_gate {} and w_up {}",
                        sh(x.shape),
                        sh(ins[1].shape),
                        sh(ins[2].shape)
                    ));
                }
            }
            let n = ins[1].shape[0];
            for (b, what) in ins[3..].iter().zip(["b_gate", "b_up"]) {
                same_dtype(x, *b, what)?;
                vec_of(*b, n, what)?;
            }
            let mut out = x.shape.to_vec();
            *out.last_mut().unwrap() = n;
            Ok((out, x.dtype))
        }
        Op::MultiLinear { parts } => {
            let p = *parts;
            if p == 0 || (ins.len() != 1 + p && ins.len() != 1 + 2 * p) {
                return Err(format!(
                    "expects x, {p} weights and optionally {p} biases, got {} inputs",
                    ins.len()
                ));
            }
            let x = ins[0];
            float(x, "x")?;
            let k = *x.shape.last().ok_or("x must have rank >= 1")?;
            let rows = x.shape.iter().product::<usize>() / k.max(1);
            let mut total = 0;
            for (i, w) in ins[1..=p].iter().enumerate() {
                same_dtype(x, *w, "weight")?;
                rank(*w, 2, "weight")?;
                if w.shape[1] != k {
                    return Err(format!(
                        "x {} last dim {k} != weight {i} {} in-features",
                        sh(x.shape),
                        sh(w.shape)
                    ));
                }
                if let Some(b) = ins.get(1 + p + i) {
                    same_dtype(x, *b, "bias")?;
                    vec_of(*b, w.shape[0], "bias")?;
                }
                total += w.shape[0];
            }
            Ok((vec![rows * total], x.dtype))
        }
        Op::Conv2d(p) => {
            arity(ins, 2, 3)?;
            let (x, w) = (ins[0], ins[1]);
            float(x, "x")?;
            same_dtype(x, w, "conv weight")?;
            rank(x, 4, "x (NHWC)")?;
            rank(w, 4, "weight (O,KH,KW,I/g)")?;
            let g = p.groups;
            let (n, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            let (co, kh, kw, ci) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
            if g == 0 || c % g != 0 || co % g != 0 {
                return Err(format!("groups {g} must divide in {c} and out {co} channels"));
            }
            if ci * g != c {
                return Err(format!(
                    "weight {} expects {} input channels per group, x {} has {c}/{g}",
                    sh(w.shape),
                    ci,
                    sh(x.shape)
                ));
            }
            if p.stride.contains(&0) || p.dilation.contains(&0) {
                return Err("stride and dilation must be >= 1".into());
            }
            let out_dim = |i: usize, k: usize, len: usize| -> Result<usize, String> {
                let eff = p.dilation[i] * (k - 1) + 1;
                let padded = len + 2 * p.padding[i];
                if k == 0 || padded < eff {
                    return Err(format!(
                        "kernel {} (dilated {eff}) larger than padded input {padded} (x {})",
                        sh(w.shape),
                        sh(x.shape)
                    ));
                }
                Ok((padded - eff) / p.stride[i] + 1)
            };
            let ho = out_dim(0, kh, h)?;
            let wo = out_dim(1, kw, wd)?;
            if let Some(b) = ins.get(2) {
                same_dtype(x, *b, "conv bias")?;
                vec_of(*b, co, "bias")?;
            }
            Ok((vec![n, ho, wo, co], x.dtype))
        }
        Op::Unary(_) => {
            arity(ins, 1, 1)?;
            float(ins[0], "x")?;
            Ok((ins[0].shape.to_vec(), ins[0].dtype))
        }
        Op::Glu { .. } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            float(x, "x")?;
            match x.shape.last() {
                Some(&c) if c % 2 == 0 => {
                    let mut out = x.shape.to_vec();
                    *out.last_mut().expect("rank >= 1") = c / 2;
                    Ok((out, x.dtype))
                }
                _ => Err(format!("the last axis of {} must have an even length", sh(x.shape))),
            }
        }
        Op::Binary(b) => {
            arity(ins, 2, 2)?;
            let (x, y) = (ins[0], ins[1]);
            same_dtype(x, y, b.name())?;
            if x.dtype == DType::Bool {
                return Err("arithmetic on bool is not defined; cast first".into());
            }
            if x.dtype.is_int() && matches!(b, BinaryOp::Pow | BinaryOp::Div) {
                return Err(format!("{} needs a float dtype, got {}", b.name(), x.dtype));
            }
            let out = broadcast_shapes(x.shape, y.shape)
                .ok_or_else(|| format!("shapes do not broadcast: {} vs {}", sh(x.shape), sh(y.shape)))?;
            Ok((out, x.dtype))
        }
        Op::Compare(c) => {
            arity(ins, 2, 2)?;
            let (x, y) = (ins[0], ins[1]);
            same_dtype(x, y, c.name())?;
            let out = broadcast_shapes(x.shape, y.shape)
                .ok_or_else(|| format!("shapes do not broadcast: {} vs {}", sh(x.shape), sh(y.shape)))?;
            Ok((out, DType::Bool))
        }
        Op::Where => {
            arity(ins, 3, 3)?;
            let (c, a, b) = (ins[0], ins[1], ins[2]);
            if c.dtype != DType::Bool {
                return Err(format!("condition must be bool, got {}", c.dtype));
            }
            same_dtype(a, b, "where branches")?;
            let ab = broadcast_shapes(a.shape, b.shape);
            let out = ab.and_then(|ab| broadcast_shapes(c.shape, &ab)).ok_or_else(|| {
                format!("shapes do not broadcast: cond {} a {} b {}", sh(c.shape), sh(a.shape), sh(b.shape))
            })?;
            Ok((out, a.dtype))
        }
        Op::Cast { to } => {
            arity(ins, 1, 1)?;
            Ok((ins[0].shape.to_vec(), *to))
        }
        Op::Reduce { axes, keepdim, .. } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            float(x, "x")?;
            if axes.is_empty() {
                return Err("reduce needs at least one axis".into());
            }
            for w in axes.windows(2) {
                if w[0] >= w[1] {
                    return Err(format!("axes {axes:?} must be sorted and unique"));
                }
            }
            for &a in axes {
                axis_ok(a, x.shape.len())?;
            }
            let mut out = Vec::new();
            for (i, &d) in x.shape.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdim {
                        out.push(1);
                    }
                } else {
                    out.push(d);
                }
            }
            Ok((out, x.dtype))
        }
        Op::ArgReduce { axis, keepdim, .. } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            float(x, "x")?;
            axis_ok(*axis, x.shape.len())?;
            if x.shape[*axis] == 0 {
                return Err(format!("cannot reduce empty axis {axis} of {}", sh(x.shape)));
            }
            let mut out = x.shape.to_vec();
            if *keepdim {
                out[*axis] = 1;
            } else {
                out.remove(*axis);
            }
            Ok((out, DType::I64))
        }
        Op::Softmax { axis } => {
            arity(ins, 1, 1)?;
            float(ins[0], "x")?;
            axis_ok(*axis, ins[0].shape.len())?;
            Ok((ins[0].shape.to_vec(), ins[0].dtype))
        }
        Op::LayerNorm { .. } | Op::RmsNorm { .. } => {
            let max = if matches!(op, Op::LayerNorm { .. }) { 3 } else { 2 };
            arity(ins, 1, max)?;
            let x = ins[0];
            float(x, "x")?;
            let c = *x.shape.last().ok_or("x must have rank >= 1")?;
            for (i, p) in ins[1..].iter().enumerate() {
                float(*p, if i == 0 { "weight" } else { "bias" })?;
                vec_of(*p, c, if i == 0 { "weight" } else { "bias" })?;
            }
            Ok((x.shape.to_vec(), x.dtype))
        }
        Op::GroupNorm { groups, .. } => {
            arity(ins, 1, 3)?;
            let x = ins[0];
            float(x, "x")?;
            if x.shape.len() < 2 {
                return Err(format!("x must be [N, ..., C], got {}", sh(x.shape)));
            }
            let c = *x.shape.last().unwrap();
            if *groups == 0 || !c.is_multiple_of(*groups) {
                return Err(format!("groups {groups} must divide channels {c}"));
            }
            for p in &ins[1..] {
                float(*p, "affine")?;
                vec_of(*p, c, "weight/bias")?;
            }
            Ok((x.shape.to_vec(), x.dtype))
        }
        Op::SpatialNorm { groups, .. } => {
            arity(ins, 5, 5)?;
            let x = ins[0];
            float(x, "x")?;
            let [n, _, _, c] = x.shape[..] else {
                return Err(format!("x must be [N, H, W, C], got {}", sh(x.shape)));
            };
            if *groups == 0 || !c.is_multiple_of(*groups) {
                return Err(format!("groups {groups} must divide channels {c}"));
            }
            for (p, what) in ins[1..3].iter().zip(["weight", "bias"]) {
                float(*p, what)?;
                vec_of(*p, c, what)?;
            }
            for (m, what) in ins[3..].iter().zip(["scale", "shift"]) {
                if m.dtype != x.dtype {
                    return Err(format!("{what} must be {} like x, got {}", x.dtype, m.dtype));
                }
                match m.shape[..] {
                    [mn, mh, mw, mc] if mn == n && mc == c && mh > 0 && mw > 0 => {}
                    _ => return Err(format!("{what} must be [{n}, h, w, {c}], got {}", sh(m.shape))),
                }
            }
            if ins[3].shape != ins[4].shape {
                return Err(format!("scale {} and shift {} differ", sh(ins[3].shape), sh(ins[4].shape)));
            }
            Ok((x.shape.to_vec(), x.dtype))
        }
        Op::Rope { kind, .. } => {
            arity(ins, 2, 2)?;
            let (x, pos) = (ins[0], ins[1]);
            float(x, "x")?;
            int_index(pos, "positions")?;
            if x.shape.len() < 3 {
                return Err(format!("x must be [..., T, H, D], got {}", sh(x.shape)));
            }
            let r = x.shape.len();
            let (t, d) = (x.shape[r - 3], x.shape[r - 1]);
            match kind {
                RopeKind::OneD => {
                    if d % 2 != 0 {
                        return Err(format!("head dim {d} must be even"));
                    }
                    if pos.shape != [t] {
                        return Err(format!("positions must be [{t}], got {}", sh(pos.shape)));
                    }
                }
                RopeKind::TwoD => {
                    if d % 4 != 0 {
                        return Err(format!("head dim {d} must be a multiple of 4"));
                    }
                    if pos.shape != [t, 2] {
                        return Err(format!("positions must be [{t},2], got {}", sh(pos.shape)));
                    }
                }
            }
            Ok((x.shape.to_vec(), x.dtype))
        }
        Op::Attention { .. } => {
            arity(ins, 3, 4)?;
            let (q, v) = (ins[0], ins[2]);
            let (b, tq, hq, tk) = qkv(ins)?;
            if let Some(m) = ins.get(3) {
                if m.dtype != DType::Bool && m.dtype != q.dtype && m.dtype != DType::F32 {
                    return Err(format!("mask must be bool or float, got {}", m.dtype));
                }
                let full = [b, hq, tq, tk];
                if broadcast_shapes(m.shape, &full).as_deref() != Some(&full[..]) {
                    return Err(format!(
                        "mask {} does not broadcast to [B,Hq,Tq,Tk] {}",
                        sh(m.shape),
                        sh(&full)
                    ));
                }
            }
            Ok((vec![b, tq, hq, v.shape[3]], q.dtype))
        }
        Op::VarlenAttention { seqlens, .. } => {
            arity(ins, 3, 3)?;
            let (q, v) = (ins[0], ins[2]);
            let (b, t, hq, tk) = qkv(ins)?;
            if tk != t {
                return Err(format!("packed sequences need as many keys as queries, got {tk} and {t}"));
            }
            if seqlens.contains(&0) || seqlens.iter().sum::<usize>() != t {
                return Err(format!("sequence lengths {seqlens:?} must be positive and sum to T = {t}"));
            }
            Ok((vec![b, t, hq, v.shape[3]], q.dtype))
        }
        Op::IndexSelect { axis } => {
            arity(ins, 2, 2)?;
            let (x, idx) = (ins[0], ins[1]);
            int_index(idx, "index")?;
            axis_ok(*axis, x.shape.len())?;
            let mut out = x.shape[..*axis].to_vec();
            out.extend_from_slice(idx.shape);
            out.extend_from_slice(&x.shape[axis + 1..]);
            Ok((out, x.dtype))
        }
        Op::TakeAlongAxis { axis } => {
            arity(ins, 2, 2)?;
            let (x, idx) = (ins[0], ins[1]);
            int_index(idx, "index")?;
            axis_ok(*axis, x.shape.len())?;
            if idx.shape.len() != x.shape.len()
                || idx.shape.iter().zip(x.shape).enumerate().any(|(i, (a, b))| i != *axis && a != b)
            {
                return Err(format!(
                    "index {} must match x {} except on axis {axis}",
                    sh(idx.shape),
                    sh(x.shape)
                ));
            }
            Ok((idx.shape.to_vec(), x.dtype))
        }
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err("needs at least one input".into());
            }
            let f = ins[0];
            axis_ok(*axis, f.shape.len())?;
            let mut out = f.shape.to_vec();
            out[*axis] = 0;
            for x in ins {
                same_dtype(f, *x, "concat")?;
                let ok = x.shape.len() == f.shape.len()
                    && x.shape.iter().zip(f.shape).enumerate().all(|(i, (a, b))| i == *axis || a == b);
                if !ok {
                    return Err(format!(
                        "{} does not match {} outside axis {axis}",
                        sh(x.shape),
                        sh(f.shape)
                    ));
                }
                out[*axis] += x.shape[*axis];
            }
            Ok((out, f.dtype))
        }
        Op::Slice { axis, start, end, step } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            axis_ok(*axis, x.shape.len())?;
            if *step == 0 || start > end || *end > x.shape[*axis] {
                return Err(format!(
                    "slice {start}..{end} step {step} invalid for axis {axis} of {}",
                    sh(x.shape)
                ));
            }
            let mut out = x.shape.to_vec();
            out[*axis] = (end - start).div_ceil(*step);
            Ok((out, x.dtype))
        }
        Op::Reshape { shape } => {
            arity(ins, 1, 1)?;
            let n: usize = shape.iter().product();
            if n != sh(ins[0].shape).numel() {
                return Err(format!(
                    "cannot reshape {} ({} elements) to {} ({n} elements)",
                    sh(ins[0].shape),
                    sh(ins[0].shape).numel(),
                    sh(shape)
                ));
            }
            Ok((shape.clone(), ins[0].dtype))
        }
        Op::Permute { perm } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            let mut seen = vec![false; x.shape.len()];
            if perm.len() != x.shape.len() {
                return Err(format!("perm {perm:?} has wrong length for {}", sh(x.shape)));
            }
            for &p in perm {
                if p >= seen.len() || seen[p] {
                    return Err(format!("perm {perm:?} is not a permutation"));
                }
                seen[p] = true;
            }
            Ok((perm.iter().map(|&p| x.shape[p]).collect(), x.dtype))
        }
        Op::Pad { pads, .. } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            if pads.len() != x.shape.len() {
                return Err(format!("pads {pads:?} need one entry per axis of {}", sh(x.shape)));
            }
            Ok((x.shape.iter().zip(pads).map(|(d, (a, b))| d + a + b).collect(), x.dtype))
        }
        Op::Resize { mode, out, align_corners, antialias } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            float(x, "x")?;
            rank(x, 4, "x (NHWC)")?;
            if out.contains(&0) || x.shape[1] == 0 || x.shape[2] == 0 {
                return Err(format!("empty resize {} -> {out:?}", sh(x.shape)));
            }
            if *mode == ResizeMode::Nearest && (*align_corners || *antialias) {
                return Err("nearest takes neither align_corners nor antialias".into());
            }
            Ok((vec![x.shape[0], out[0], out[1], x.shape[3]], x.dtype))
        }
        Op::AvgPool2d { kernel, stride, padding, .. } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            float(x, "x")?;
            rank(x, 4, "x (NHWC)")?;
            let mut o = [0; 2];
            for i in 0..2 {
                if kernel[i] == 0 || stride[i] == 0 || 2 * padding[i] > kernel[i] {
                    return Err(format!(
                        "kernel {kernel:?} stride {stride:?} padding {padding:?} invalid (pad <= kernel/2)"
                    ));
                }
                let padded = x.shape[1 + i] + 2 * padding[i];
                if padded < kernel[i] {
                    return Err(format!("kernel {kernel:?} larger than padded input {}", sh(x.shape)));
                }
                o[i] = (padded - kernel[i]) / stride[i] + 1;
            }
            Ok((vec![x.shape[0], o[0], o[1], x.shape[3]], x.dtype))
        }
        Op::PixelShuffle { r } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            rank(x, 4, "x (NHWC)")?;
            if *r == 0 || !x.shape[3].is_multiple_of(r * r) {
                return Err(format!("channels of {} not divisible by r²={}", sh(x.shape), r * r));
            }
            Ok((vec![x.shape[0], x.shape[1] * r, x.shape[2] * r, x.shape[3] / (r * r)], x.dtype))
        }
        Op::PixelUnshuffle { r } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            rank(x, 4, "x (NHWC)")?;
            if *r == 0 || !x.shape[1].is_multiple_of(*r) || !x.shape[2].is_multiple_of(*r) {
                return Err(format!("spatial dims of {} not divisible by {r}", sh(x.shape)));
            }
            Ok((vec![x.shape[0], x.shape[1] / r, x.shape[2] / r, x.shape[3] * r * r], x.dtype))
        }
        Op::VqNearest => {
            arity(ins, 2, 2)?;
            let (x, cb) = (ins[0], ins[1]);
            float(x, "x")?;
            float(cb, "codebook")?;
            rank(cb, 2, "codebook [K, D]")?;
            if x.shape.last() != Some(&cb.shape[1]) || cb.shape[0] == 0 {
                return Err(format!("x {} last dim must equal codebook {} dim", sh(x.shape), sh(cb.shape)));
            }
            Ok((x.shape[..x.shape.len() - 1].to_vec(), DType::I64))
        }
        Op::GridSample { .. } => {
            arity(ins, 2, 2)?;
            let (x, g) = (ins[0], ins[1]);
            float(x, "x")?;
            same_dtype(x, g, "grid")?;
            rank(x, 4, "x (NHWC)")?;
            rank(g, 4, "grid [N,Ho,Wo,2]")?;
            if g.shape[0] != x.shape[0] || g.shape[3] != 2 {
                return Err(format!("grid {} incompatible with x {}", sh(g.shape), sh(x.shape)));
            }
            Ok((vec![x.shape[0], g.shape[1], g.shape[2], x.shape[3]], x.dtype))
        }
        Op::MsDeformAttn { levels } => {
            arity(ins, 3, 3)?;
            let (v, loc, w) = (ins[0], ins[1], ins[2]);
            float(v, "value")?;
            same_dtype(v, loc, "locations")?;
            same_dtype(v, w, "weights")?;
            rank(v, 4, "value [N,S,Hh,Dh]")?;
            rank(loc, 6, "locations [N,Q,Hh,L,P,2]")?;
            rank(w, 5, "weights [N,Q,Hh,L,P]")?;
            let s: usize = levels.iter().map(|l| l[0] * l[1]).sum();
            let (n, hh, dh) = (v.shape[0], v.shape[2], v.shape[3]);
            let (q, l, p) = (loc.shape[1], loc.shape[3], loc.shape[4]);
            if v.shape[1] != s
                || l != levels.len()
                || loc.shape[0] != n
                || loc.shape[2] != hh
                || loc.shape[5] != 2
                || w.shape != [n, q, hh, l, p]
            {
                return Err(format!(
                    "value {} locations {} weights {} inconsistent with levels {levels:?} (S={s})",
                    sh(v.shape),
                    sh(loc.shape),
                    sh(w.shape)
                ));
            }
            Ok((vec![n, q, hh * dh], v.dtype))
        }
        Op::TopK { k, axis } => {
            arity(ins, 1, 1)?;
            let x = ins[0];
            float(x, "x")?;
            axis_ok(*axis, x.shape.len())?;
            if *k == 0 || *k > x.shape[*axis] {
                return Err(format!("k={k} out of range for axis {axis} of {}", sh(x.shape)));
            }
            let mut out = x.shape.to_vec();
            out[*axis] = *k;
            Ok((out, DType::I64))
        }
        Op::SampleSorted => {
            arity(ins, 3, 3)?;
            let (v, ids, p) = (ins[0], ins[1], ins[2]);
            float(v, "values")?;
            rank(v, 2, "values [B, K]")?;
            if ids.dtype != DType::I64 || ids.shape != v.shape {
                return Err(format!("ids must be i64 {}, got {}{}", sh(v.shape), ids.dtype, sh(ids.shape)));
            }
            if p.dtype != DType::F32 || p.shape != [v.shape[0], 5] {
                return Err(format!(
                    "params must be f32 [{}, 5], got {}{}",
                    v.shape[0],
                    p.dtype,
                    sh(p.shape)
                ));
            }
            Ok((vec![v.shape[0]], DType::I64))
        }
        Op::TimestepEmbedding { dim, .. } => {
            arity(ins, 1, 1)?;
            float(ins[0], "timesteps")?;
            rank(ins[0], 1, "timesteps [N]")?;
            if *dim < 2 {
                return Err(format!("dim {dim} must be >= 2"));
            }
            Ok((vec![ins[0].shape[0], *dim], DType::F32))
        }
    }
}
