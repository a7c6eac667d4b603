//! Per-node timings with FLOP and byte counts: summary tables and Chrome/Perfetto traces.

use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct NodeProfile {
    pub node: usize,
    pub name: String,
    pub kind: &'static str,
    /// Start relative to the beginning of the run, in microseconds.
    pub start_us: f64,
    pub dur_us: f64,
    pub flops: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub device: String,
    pub nodes: Vec<NodeProfile>,
    pub total_us: f64,
}

/// Aggregate over all nodes of one op kind.
#[derive(Clone, Debug, Default)]
pub struct KindSummary {
    pub kind: &'static str,
    pub count: usize,
    pub us: f64,
    pub flops: u64,
    pub bytes: u64,
}

fn rate(x: u64, us: f64) -> f64 {
    if us > 0.0 {
        x as f64 / (us * 1e3)
    } else {
        0.0
    }
}

impl Profile {
    pub fn kernel_us(&self) -> f64 {
        self.nodes.iter().map(|n| n.dur_us).sum()
    }

    /// Per-kind totals, slowest first.
    pub fn by_kind(&self) -> Vec<KindSummary> {
        let mut m: BTreeMap<&'static str, KindSummary> = BTreeMap::new();
        for n in &self.nodes {
            let e = m.entry(n.kind).or_insert(KindSummary { kind: n.kind, ..Default::default() });
            e.count += 1;
            e.us += n.dur_us;
            e.flops += n.flops;
            e.bytes += n.bytes;
        }
        let mut v: Vec<_> = m.into_values().collect();
        v.sort_by(|a, b| b.us.total_cmp(&a.us));
        v
    }

    /// A text table: per-kind totals, then the `top` slowest nodes, with GFLOP/s and GB/s.
    pub fn table(&self, top: usize) -> String {
        let mut s = String::new();
        let total = self.kernel_us().max(1e-9);
        let _ = writeln!(
            s,
            "{:<22} {:>5} {:>11} {:>6} {:>10} {:>9}",
            "op", "count", "time (us)", "%", "GFLOP/s", "GB/s"
        );
        for k in self.by_kind() {
            let _ = writeln!(
                s,
                "{:<22} {:>5} {:>11.1} {:>5.1}% {:>10.2} {:>9.2}",
                k.kind,
                k.count,
                k.us,
                100.0 * k.us / total,
                rate(k.flops, k.us),
                rate(k.bytes, k.us)
            );
        }
        let mut nodes: Vec<&NodeProfile> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| b.dur_us.total_cmp(&a.dur_us));
        if top > 0 {
            let _ = writeln!(s, "\nslowest nodes:");
            for n in nodes.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  %{:<5} {:<40} {:<16} {:>10.1} us {:>9.2} GFLOP/s {:>8.2} GB/s",
                    n.node,
                    n.name,
                    n.kind,
                    n.dur_us,
                    rate(n.flops, n.dur_us),
                    rate(n.bytes, n.dur_us)
                );
            }
        }
        let flops: u64 = self.nodes.iter().map(|n| n.flops).sum();
        let _ = writeln!(
            s,
            "\ntotal: {} nodes, {:.1} us in kernels, {:.1} us wall, {:.3} GFLOP ({:.2} GFLOP/s) on {}",
            self.nodes.len(),
            self.kernel_us(),
            self.total_us,
            flops as f64 / 1e9,
            rate(flops, self.kernel_us()),
            self.device
        );
        s
    }

    /// Per-kind roofline against measured ceilings (peak GFLOP/s of a large GEMM, copy GB/s):
    /// each kind's arithmetic intensity, the attainable rate `min(peak, intensity · bandwidth)`,
    /// and the fraction of it achieved — where the time goes and how far each op is from its
    /// floor.
    pub fn roofline(&self, peak_gflops: f64, gbps: f64) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "roofline: peak {peak_gflops:.0} GFLOP/s, {gbps:.0} GB/s (ridge {:.1} FLOP/B)",
            peak_gflops / gbps.max(1e-9)
        );
        let _ = writeln!(
            s,
            "{:<22} {:>11} {:>8} {:>11} {:>9} {:>11} {:>7} {:>8}",
            "op", "time (us)", "FLOP/B", "GFLOP/s", "GB/s", "floor (us)", "% roof", "bound"
        );
        for k in self.by_kind() {
            let intensity = if k.bytes > 0 { k.flops as f64 / k.bytes as f64 } else { f64::INFINITY };
            // Time at the roof: the larger of compute time and memory time.
            let floor_us = (k.flops as f64 / (peak_gflops * 1e3)).max(k.bytes as f64 / (gbps * 1e3));
            let bound = if intensity >= peak_gflops / gbps.max(1e-9) { "compute" } else { "memory" };
            let _ = writeln!(
                s,
                "{:<22} {:>11.1} {:>8.2} {:>11.1} {:>9.1} {:>11.1} {:>6.1}% {:>8}",
                k.kind,
                k.us,
                intensity,
                rate(k.flops, k.us),
                rate(k.bytes, k.us),
                floor_us,
                if k.us > 0.0 { 100.0 * floor_us / k.us } else { 0.0 },
                bound
            );
        }
        s
    }

    /// Chrome trace-event JSON (open in Perfetto or chrome://tracing).
    pub fn chrome_trace(&self) -> String {
        let events: Vec<_> = self
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name, "cat": n.kind, "ph": "X", "pid": 0, "tid": 0,
                    "ts": n.start_us, "dur": n.dur_us,
                    "args": {"node": n.node, "flops": n.flops, "bytes": n.bytes,
                             "gflops_per_s": rate(n.flops, n.dur_us), "gb_per_s": rate(n.bytes, n.dur_us)}
                })
            })
            .collect();
        json!({"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"device": self.device}})
            .to_string()
    }
}
