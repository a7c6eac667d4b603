//! Rules of the segmentation decoder that the tiny PyTorch fixture does not reach.

use focus_engine::{compile, Device, Tensor};
use focus_graph::{DType, GraphBuilder};
use focus_models::mask2former::attend_mask;

/// A query whose keys are all blocked attends everywhere (Mask2Former's
/// `am & ~am.all(-1)`); elsewhere a key is attended iff sigmoid(logit) >= 0.5.
#[test]
fn fully_blocked_queries_attend_everywhere() {
    let logits = [
        [-1.0f32, -2.0, -0.5, -3.0], // all blocked → all attend
        [1.0, -1.0, 0.0, -0.0],      // sigmoid(±0) = 0.5 is not blocked
        [-4.0, 2.5, -1e-3, 7.0],
    ];
    let want = [[true; 4], [true, false, true, true], [false, true, false, true]];
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [1, 3, 4]).unwrap();
    let m = attend_mask(&mut b, x).unwrap();
    b.output("mask", m).unwrap();
    let mut plan = compile(&b.finish().unwrap(), None, Device::Cpu).unwrap();
    let flat: Vec<f32> = logits.iter().flatten().copied().collect();
    plan.run(&[("x", &Tensor::from_f32(DType::F32, [1, 3, 4], &flat).unwrap())]).unwrap();
    let got: Vec<bool> = plan.output("mask").unwrap().data.iter().map(|&v| v != 0).collect();
    assert_eq!(got, want.iter().flatten().copied().collect::<Vec<_>>());
}
