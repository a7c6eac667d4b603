//! Human-readable dumps: a text listing and Graphviz DOT.

use crate::graph::Graph;
use crate::op::Op;
use std::fmt::Write;

fn attrs(op: &Op) -> String {
    match op {
        Op::Input { name } | Op::Param { name } | Op::State { name } => format!("\"{name}\""),
        Op::Constant { .. }
        | Op::Linear
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Where
        | Op::VqNearest
        | Op::SampleSorted => String::new(),
        Op::Conv2d(p) => {
            format!("stride={:?} pad={:?} dil={:?} groups={}", p.stride, p.padding, p.dilation, p.groups)
        }
        other => {
            // The Debug form minus the variant name is a faithful, compact attribute list.
            let d = format!("{other:?}");
            match d.find(['{', '(']) {
                Some(i) => d[i..].trim_matches(|c| "{}() ".contains(c)).to_string(),
                None => String::new(),
            }
        }
    }
}

/// One line per node: id, name, op, attributes, inputs, dtype and shape, FLOPs.
pub fn to_text(g: &Graph) -> String {
    let mut s = String::new();
    for id in g.ids() {
        let n = g.node(id);
        let ins: Vec<String> = n.inputs.iter().map(|i| i.to_string()).collect();
        let c = g.node_cost(id);
        let _ = write!(
            s,
            "{id:>6} = {}({}) {} -> {}{}",
            n.op.kind(),
            ins.join(", "),
            attrs(&n.op),
            n.dtype,
            n.shape
        );
        if c.flops > 0 {
            let _ = write!(s, "  flops={}", c.flops);
        }
        let _ = writeln!(s, "  # {}", n.name);
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(s, "output {name} = {id}");
    }
    s
}

/// Graphviz DOT: inputs as ellipses, weights as boxes, outputs double-circled.
pub fn to_dot(g: &Graph) -> String {
    let mut s =
        String::from("digraph focus {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n");
    let outs: Vec<usize> = g.outputs.iter().map(|(_, i)| i.0).collect();
    for id in g.ids() {
        let n = g.node(id);
        let shape = match n.op {
            Op::Input { .. } | Op::State { .. } => "ellipse",
            Op::Param { .. } | Op::Constant { .. } => "box",
            _ if outs.contains(&id.0) => "doublecircle",
            _ => "record",
        };
        let label = format!("{} {}\\n{}{}", n.op.kind(), n.name, n.dtype, n.shape).replace('"', "'");
        let _ = writeln!(s, "  n{} [shape={shape}, label=\"{label}\"];", id.0);
        for i in &n.inputs {
            let _ = writeln!(s, "  n{} -> n{};", i.0, id.0);
        }
    }
    s.push_str("}\n");
    s
}
