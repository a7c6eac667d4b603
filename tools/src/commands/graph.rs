//! `focus graph`: build a named model's graph and print it with its plan summary.

use focus_graph::dump;
use focus_graph::passes::{eliminate_dead_code, fusion_groups, plan_memory, static_nodes};
use focus_models::{build_named, MODELS};

pub fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

pub fn run(
    model: &str,
    config: &str,
    size: usize,
    dot: bool,
    summary: bool,
    list: bool,
) -> Result<(), String> {
    if list {
        for m in MODELS {
            println!("{:<12} configs: {:<16} {}", m.name, m.configs.join(", "), m.about);
        }
        return Ok(());
    }
    let g = build_named(model, config, size, focus_graph::DType::F32)?;
    let (g, _) = eliminate_dead_code(&g);
    if !summary {
        print!("{}", if dot { dump::to_dot(&g) } else { dump::to_text(&g) });
    }
    if dot {
        return Ok(());
    }
    let st = static_nodes(&g);
    let mem = plan_memory(&g, &st);
    let cost = g.total_cost();
    println!(
        "\n{model}/{config} @{size}: {} nodes, {} params ({:.2} MiB), {:.3} GFLOP",
        g.len(),
        g.params().len(),
        mib(g.param_bytes()),
        cost.flops as f64 / 1e9
    );
    println!(
        "arena {:.2} MiB (naive sum of intermediates {:.2} MiB, {:.1}x smaller); {} elementwise fusion groups",
        mib(mem.arena_bytes),
        mib(mem.naive_bytes),
        mem.naive_bytes as f64 / mem.arena_bytes.max(1) as f64,
        fusion_groups(&g).len()
    );
    Ok(())
}
