//! RMSNorm, LayerNorm (last axis) and channels-last GroupNorm (norm.cu), one block per row or
//! per (group, image), statistics in f32.

use super::*;

fn opt(ins: &[DevTensor], i: usize) -> Arg {
    Arg::Ptr(ins.get(i).map_or(0, |t| t.ptr))
}

fn block(grid: (u32, u32, u32)) -> KernelCall {
    KernelCall { file: "norm.cu", entry: String::new(), grid, block: (256, 1, 1), smem: 0, args: Vec::new() }
}

pub(super) fn plan(
    op: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
    scratch: Scratch,
) -> Result<Vec<Call>, CudaError> {
    match op {
        Op::GroupNorm { groups, eps } | Op::SpatialNorm { groups, eps } => {
            group_norm(op, ins, out, scratch, *groups, *eps, false)
        }
        _ => row_norm(op, &ins[0], None, &ins[1..], None, out),
    }
}

/// RMSNorm / LayerNorm over the last axis of `x` (plus `residual`, whose sum with `x` is also
/// written to `sum` when given), with optional weight and bias in `params`.
fn row_norm(
    op: &Op,
    x: &DevTensor,
    residual: Option<&DevTensor>,
    params: &[DevTensor],
    sum: Option<&DevTensor>,
    out: &DevTensor,
) -> Result<Vec<Call>, CudaError> {
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    if params.iter().chain(residual).chain(sum).any(|t| t.dtype != x.dtype) {
        return Err(unsupported(op, "weight, bias and residual must have the input's dtype"));
    }
    if residual.into_iter().chain(sum).any(|t| t.shape != x.shape) {
        return Err(unsupported(op, "the residual add must not broadcast"));
    }
    let cols = *x.shape.last().expect("rank >= 1");
    let rows = x.numel() / cols;
    let rows_u32 = u32::try_from(rows).map_err(|_| unsupported(op, "too many rows"))?;
    let param = |i: usize| Arg::Ptr(params.get(i).map_or(0, |t| t.ptr));
    let (r, sp) = (Arg::Ptr(residual.map_or(0, |t| t.ptr)), Arg::Ptr(sum.map_or(0, |t| t.ptr)));
    let mut k = block((rows_u32, 1, 1));
    let tail = [Arg::Ptr(out.ptr), i32_arg(op, cols, "cols")?];
    match op {
        Op::RmsNorm { eps } => {
            k.entry = format!("rms_norm_{s}");
            k.args = [&[Arg::Ptr(x.ptr), r, param(0), sp][..], &tail, &[Arg::F32(*eps)]].concat();
        }
        Op::LayerNorm { eps } => {
            k.entry = format!("layer_norm_{s}");
            k.args = [&[Arg::Ptr(x.ptr), r, param(0), param(1), sp][..], &tail, &[Arg::F32(*eps)]].concat();
        }
        _ => return Err(unsupported(op, "not a row norm")),
    }
    k.block = (if cols < 256 { 128 } else { 256 }, 1, 1);
    Ok(vec![Call::Kernel(k)])
}

/// A residual add `sum = a + b` and the RMSNorm / LayerNorm `norm` of that sum as one launch
/// (the engine fuses the pair; `params` are the norm's weight and bias). Both outputs are written.
pub(super) fn add_norm(
    norm: &Op,
    (a, b): (&DevTensor, &DevTensor),
    params: &[DevTensor],
    sum: &DevTensor,
    out: &DevTensor,
) -> Result<Vec<Call>, CudaError> {
    if !matches!(norm, Op::RmsNorm { .. } | Op::LayerNorm { .. }) {
        return Err(unsupported(norm, "only RMSNorm and LayerNorm fuse a residual add"));
    }
    if sum.numel() == 0 {
        return Ok(Vec::new());
    }
    row_norm(norm, a, Some(b), params, Some(sum), out)
}

/// Blocks the GroupNorm launches aim for (a few per SM of a 132-SM H100), and the fewest rows a
/// chunk keeps so small images stay one chunk.
const GN_TARGET_BLOCKS: usize = 528;
const GN_MIN_CHUNK_ELEMS: usize = 4096;
const GN_MAX_CHUNKS: usize = 64;

/// (chunks, rows per chunk) for GroupNorm over x [N, ..., C].
fn gn_chunks(shape: &[usize], groups: usize) -> (usize, usize) {
    let (n, c) = (shape[0], *shape.last().expect("rank >= 2"));
    let spatial = shape.iter().product::<usize>() / (n * c).max(1);
    let per_chunk_min = GN_MIN_CHUNK_ELEMS.div_ceil((c / groups.max(1)).max(1)).max(1);
    let by_size = spatial.div_ceil(per_chunk_min).max(1);
    let wanted = GN_TARGET_BLOCKS.div_ceil((n * groups).max(1)).max(1);
    let chunks = by_size.min(wanted).clamp(1, GN_MAX_CHUNKS);
    let rows = spatial.div_ceil(chunks).max(1);
    (spatial.div_ceil(rows).max(1), rows)
}

/// Scratch for the per-chunk statistics (count, mean, M2 as f32).
pub(super) fn scratch_bytes(op: &Op, ins: &[DevTensor]) -> usize {
    match op {
        Op::GroupNorm { groups, .. } | Op::SpatialNorm { groups, .. } => {
            let (chunks, _) = gn_chunks(ins[0].shape, *groups);
            ins[0].shape[0] * groups * chunks * 3 * 4
        }
        _ => 0,
    }
}

/// GroupNorm (or SpatialNorm: `ins` = x, weight, bias, scale, shift) as statistics + apply
/// launches; `silu` fuses a following SiLU.
pub(super) fn group_norm(
    op: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
    scratch: Scratch,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Result<Vec<Call>, CudaError> {
    let x = &ins[0];
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    if ins[1..].iter().any(|t| t.dtype != x.dtype) {
        return Err(unsupported(op, "weight and bias must have the input's dtype"));
    }
    let need = scratch_bytes(op, ins);
    if scratch.bytes < need {
        return Err(unsupported(op, &format!("needs {need} bytes of scratch, has {}", scratch.bytes)));
    }
    let (n, c) = (x.shape[0], *x.shape.last().expect("rank >= 2"));
    let spatial = x.numel() / (n * c);
    let (chunks, rows) = gn_chunks(x.shape, groups);
    if n > 65535 || chunks > 65535 {
        return Err(unsupported(op, "batch above 65535"));
    }
    let grid = (groups as u32, n as u32, chunks as u32);
    let i = |v: usize, what: &str| i32_arg(op, v, what);
    // SpatialNorm's modulation maps [N, mh, mw, C] over x [N, H, W, C] (nearest lookup).
    let (width, (mh, mw), (sy, sx)) = match ins.get(3..5) {
        Some([sc, _]) if matches!(op, Op::SpatialNorm { .. }) => {
            let (h, w) = (x.shape[1], x.shape[2]);
            let (mh, mw) = (sc.shape[1], sc.shape[2]);
            (w, (mh, mw), (mh as f32 / h as f32, mw as f32 / w as f32))
        }
        _ => (1, (1, 1), (1.0, 1.0)),
    };
    let stats = KernelCall {
        file: "norm.cu",
        entry: format!("group_norm_stats_{s}"),
        grid,
        block: (256, 1, 1),
        smem: 0,
        args: vec![
            Arg::Ptr(x.ptr),
            Arg::Ptr(scratch.ptr),
            i(spatial, "spatial size")?,
            i(c, "channels")?,
            i(groups, "groups")?,
            i(rows, "rows per chunk")?,
        ],
    };
    let apply = KernelCall {
        file: "norm.cu",
        entry: format!("group_norm_apply_{s}"),
        grid,
        block: (256, 1, 1),
        smem: 0,
        args: vec![
            Arg::Ptr(x.ptr),
            opt(ins, 1),
            opt(ins, 2),
            Arg::Ptr(scratch.ptr),
            Arg::Ptr(out.ptr),
            i(spatial, "spatial size")?,
            i(c, "channels")?,
            i(groups, "groups")?,
            i(rows, "rows per chunk")?,
            Arg::F32(eps),
            Arg::I32(silu as i32),
            opt(ins, 3),
            opt(ins, 4),
            i(width, "width")?,
            i(mh, "modulation height")?,
            i(mw, "modulation width")?,
            Arg::F32(sy),
            Arg::F32(sx),
        ],
    };
    Ok(vec![Call::Kernel(stats), Call::Kernel(apply)])
}

/// GroupNorm followed by SiLU as one plan (the engine fuses the pair when the SiLU is the
/// norm's only consumer).
pub(super) fn group_norm_silu(
    op: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
    s: Scratch,
) -> Result<Vec<Call>, CudaError> {
    match op {
        Op::GroupNorm { groups, eps } | Op::SpatialNorm { groups, eps } => {
            group_norm(op, ins, out, s, *groups, *eps, true)
        }
        _ => Err(unsupported(op, "only GroupNorm and SpatialNorm fuse a SiLU")),
    }
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
        // Large and offset: many chunks, and a mean far from zero (merging must stay accurate).
        let x = Input::uniform(dt, &[2, 97, 61, 128], 9.0, 11.0);
        v.push(Case::new(
            format!("group_norm offset chunks {dt}"),
            Op::GroupNorm { groups: 32, eps: 1e-6 },
            vec![x],
        ));

        // SpatialNorm: MoVQ decoder sizes (×16 from a 4×4 map, 32 groups of 384) and an odd,
        // non-integer ratio.
        let sn = Op::SpatialNorm { groups: 32, eps: 1e-6 };
        for (shape, m) in [([1usize, 64, 64, 384], [4usize, 4]), ([2, 13, 11, 96], [5, 4])] {
            let c = shape[3];
            let map = |lo, hi| Input::uniform(dt, &[shape[0], m[0], m[1], c], lo, hi);
            v.push(Case::new(
                format!("spatial_norm {}x{} from {}x{} {dt}", shape[1], shape[2], m[0], m[1]),
                sn.clone(),
                vec![
                    Input::uniform(dt, &shape, -2.0, 3.0),
                    Input::uniform(dt, &[c], 0.5, 1.5),
                    Input::uniform(dt, &[c], -0.5, 0.5),
                    map(-2.0, 2.0),
                    map(-1.0, 1.0),
                ],
            ));
        }

        // The engine's fused pairs (ops::plan_chain): residual add + norm writes both the sum and
        // the norm; GroupNorm + SiLU writes only the activation.
        let add = Op::Binary(focus_graph::BinaryOp::Add);
        let (x, r) = (Input::uniform(dt, &[37, 2048], -2.0, 2.0), Input::uniform(dt, &[37, 2048], -1.0, 1.0));
        let w = Input::uniform(dt, &[2048], 0.5, 1.5);
        let rms = Op::RmsNorm { eps: 1e-6 };
        v.push(Case::chain(format!("add + rms_norm {dt}"), add.clone(), vec![x, r], rms, vec![w]));
        let (x, r) =
            (Input::uniform(dt, &[3, 5, 999], -2.0, 3.0), Input::uniform(dt, &[3, 5, 999], -1.0, 1.0));
        let ln = Op::LayerNorm { eps: 1e-5 };
        let (lw, lb) = (Input::uniform(dt, &[999], 0.5, 1.5), Input::uniform(dt, &[999], -0.5, 0.5));
        v.push(Case::chain(format!("add + layer_norm {dt}"), add, vec![x, r], ln, vec![lw, lb]));
        let x = Input::uniform(dt, &[2, 24, 40, 320], -2.0, 3.0);
        let (gw, gb) = (Input::uniform(dt, &[320], 0.5, 1.5), Input::uniform(dt, &[320], -0.5, 0.5));
        let silu = Op::Unary(focus_graph::UnaryOp::Silu);
        let gn = Op::GroupNorm { groups: 32, eps: 1e-5 };
        v.push(Case::chain(format!("group_norm + silu {dt}"), gn, vec![x, gw, gb], silu.clone(), vec![]));
        let x = Input::uniform(dt, &[1, 32, 24, 128], -2.0, 3.0);
        let (sw, sb) = (Input::uniform(dt, &[128], 0.5, 1.5), Input::uniform(dt, &[128], -0.5, 0.5));
        let maps =
            (Input::uniform(dt, &[1, 4, 3, 128], -2.0, 2.0), Input::uniform(dt, &[1, 4, 3, 128], -1.0, 1.0));
        v.push(Case::chain(
            format!("spatial_norm + silu {dt}"),
            Op::SpatialNorm { groups: 32, eps: 1e-6 },
            vec![x, sw, sb, maps.0, maps.1],
            silu,
            vec![],
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_norm_chunks_cover_every_row() {
        for (shape, groups) in [
            (vec![1usize, 64, 64, 320], 32usize),
            (vec![2, 13, 11, 96], 32),
            (vec![1, 1, 1, 32], 32),
            (vec![1, 128, 128, 128], 32),
            (vec![4, 7, 5], 1),
        ] {
            let (chunks, rows) = gn_chunks(&shape, groups);
            let spatial: usize = shape[1..shape.len() - 1].iter().product();
            assert!(
                chunks * rows >= spatial && (chunks - 1) * rows < spatial,
                "{shape:?}: {chunks} x {rows}"
            );
            assert!((1..=GN_MAX_CHUNKS).contains(&chunks));
        }
        // A UNet level: 10 channels per group, 4096 rows -> chunks of >= 410 rows -> 10 chunks,
        // 320 blocks instead of 32.
        assert_eq!(gn_chunks(&[1, 64, 64, 320], 32), (10, 410));
    }
}
