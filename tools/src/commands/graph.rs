//! `focus graph`: build a named model's graph and print it with its plan summary.

use focus_graph::dump;
use focus_graph::passes::{eliminate_dead_code, fusion_groups, plan_memory, static_nodes};
use focus_models::{build_named, MODELS};

pub fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

pub struct GraphArgs<'a> {
    pub model: &'a str,
    pub config: &'a str,
    pub size: usize,
    pub dtype: &'a str,
    pub dot: bool,
    pub summary: bool,
    pub list: bool,
    pub launches: bool,
}

pub fn run(a: &GraphArgs) -> Result<(), String> {
    let GraphArgs { model, config, size, dot, summary, .. } = *a;
    if a.list {
        for m in MODELS {
            println!("{:<12} configs: {:<16} {}", m.name, m.configs.join(", "), m.about);
        }
        return Ok(());
    }
    let dtype = super::float_dtype(a.dtype)?;
    let g = build_named(model, config, size, dtype)?;
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
    if a.launches {
        print_launches(&g)?;
    }
    Ok(())
}

/// CUDA launches per run by op kind (a fused pair or group counts under the node that plans it).
fn print_launches(g: &focus_graph::Graph) -> Result<(), String> {
    let steps = focus_engine::executor::cuda_launches(g).map_err(|e| e.to_string())?;
    let mut by_kind: Vec<(&str, usize, usize)> = Vec::new();
    for (id, n) in &steps {
        let kind = g.node(*id).op.kind();
        match by_kind.iter_mut().find(|k| k.0 == kind) {
            Some(k) => (k.1, k.2) = (k.1 + n, k.2 + 1),
            None => by_kind.push((kind, *n, 1)),
        }
    }
    by_kind.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: usize = steps.iter().map(|s| s.1).sum();
    println!("CUDA launches per run: {total} from {} launching steps (planned offline)", steps.len());
    for (kind, n, s) in by_kind {
        println!("  {kind:<22} {n:>6} launches {s:>6} steps");
    }
    Ok(())
}
