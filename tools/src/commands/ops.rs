//! `focus ops`: the op table.

use focus_graph::Op;
use focus_kernels::cpu;

pub fn run() -> Result<(), String> {
    println!("{:<20} {:<26} {:<6}", "op", "cpu (input dtypes)", "cuda");
    let mut seen = std::collections::HashSet::new();
    for op in Op::catalogue() {
        if op.is_leaf() || !seen.insert(op.kind()) {
            continue;
        }
        println!("{:<20} {:<26} {:<6}", op.kind(), cpu::supported_dtypes(&op), "-");
    }
    println!("\ncuda: not built yet (planned: own NVRTC kernels + cuBLASLt)");
    Ok(())
}
