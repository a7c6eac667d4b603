//! Depthwise convolution, channels-last (conv_dw.cu): ConvNeXt's 7×7, any kernel, stride,
//! padding and dilation, optional bias.

use super::*;
use focus_graph::Conv2dParams;

/// groups == Cin == Cout: one filter per channel.
pub(super) fn applies(p: &Conv2dParams, ins: &[DevTensor]) -> bool {
    let (x, w) = (&ins[0], &ins[1]);
    let cin = x.shape[3];
    p.groups == cin && w.shape[0] == cin && w.shape[3] == 1
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let Op::Conv2d(p) = op else { return Err(unsupported(op, "not a convolution")) };
    let (x, w) = (&ins[0], &ins[1]);
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    let [n, h, wd, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [kh, kw] = [w.shape[1], w.shape[2]];
    let [ho, wo] = [out.shape[1], out.shape[2]];
    let i = |v: usize, what: &str| i32_arg(op, v, what);
    let args = vec![
        Arg::Ptr(x.ptr),
        Arg::Ptr(w.ptr),
        Arg::Ptr(ins.get(2).map_or(0, |b| b.ptr)),
        Arg::Ptr(0),
        Arg::Ptr(out.ptr),
        i(n, "batch")?,
        i(h, "height")?,
        i(wd, "width")?,
        i(c, "channels")?,
        i(kh, "kernel height")?,
        i(kw, "kernel width")?,
        i(p.stride[0], "stride")?,
        i(p.stride[1], "stride")?,
        i(p.padding[0], "padding")?,
        i(p.padding[1], "padding")?,
        i(p.dilation[0], "dilation")?,
        i(p.dilation[1], "dilation")?,
        i(ho, "output height")?,
        i(wo, "output width")?,
    ];
    Ok(vec![Call::Kernel(KernelCall::elementwise("conv_dw.cu", format!("dwconv_{s}"), out.numel(), args))])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let c = 192;
        let p = Conv2dParams { padding: [3, 3], groups: c, ..Default::default() };
        let ins = vec![
            Input::uniform(dt, &[1, 29, 31, c], -1.0, 1.0),
            Input::uniform(dt, &[c, 7, 7, 1], -0.2, 0.2),
            Input::uniform(dt, &[c], -0.5, 0.5),
        ];
        v.push(Case::new(format!("dwconv 7x7 convnext {dt}"), Op::Conv2d(p), ins));
        let c = 13;
        let p = Conv2dParams { stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: c };
        let ins = vec![
            Input::uniform(dt, &[2, 17, 15, c], -1.0, 1.0),
            Input::uniform(dt, &[c, 3, 3, 1], -0.5, 0.5),
        ];
        v.push(Case::new(format!("dwconv 3x3 strided dilated {dt}"), Op::Conv2d(p), ins));
    }
    v
}
