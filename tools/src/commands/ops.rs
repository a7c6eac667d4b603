//! `focus ops`: the op table — CPU input dtypes, and the dtypes the CUDA parity cases cover
//! (i.e. what `focus gpu-check` verifies on a GPU).

use focus_graph::Op;
use focus_kernels::cpu;
use focus_kernels::cuda::ops;
use std::collections::{BTreeSet, HashMap};

pub fn run() -> Result<(), String> {
    let mut cuda: HashMap<&'static str, BTreeSet<String>> = HashMap::new();
    let cases = ops::cases();
    let n_cases = cases.len();
    for c in cases {
        let dt = c.inputs.first().map_or(String::new(), |i| i.dtype.short_name().to_string());
        cuda.entry(c.op.kind()).or_default().insert(dt);
    }
    println!("{:<20} {:<26} cuda (input dtypes with GPU parity cases)", "op", "cpu (input dtypes)");
    let mut seen = std::collections::HashSet::new();
    for op in Op::catalogue() {
        if op.is_leaf() || !seen.insert(op.kind()) {
            continue;
        }
        let c =
            cuda.get(op.kind()).map_or("-".to_string(), |s| s.iter().cloned().collect::<Vec<_>>().join(" "));
        println!("{:<20} {:<26} {c}", op.kind(), cpu::supported_dtypes(&op));
    }
    println!(
        "\ncuda: own NVRTC kernels + cuBLAS; elementwise fusion groups run as generated kernels; \
         {n_cases} op parity cases + {} fused-kernel cases for `focus gpu-check`",
        focus_kernels::cuda::fused::cases().len()
    );
    Ok(())
}
