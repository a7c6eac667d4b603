//! `focus inspect`: list and validate checkpoint tensors; also the writer for `demo --out`.

use crate::commands::graph::mib;
use focus_engine::weights::{save, WeightStore};
use focus_graph::{DType, Shape};
use std::collections::BTreeMap;
use std::path::Path;

pub fn run(path: &Path, metadata: bool) -> Result<(), String> {
    // Opening validates the header, offsets, sizes and dtypes of every file.
    let store = WeightStore::open(path).map_err(|e| e.to_string())?;
    println!("{:<60} {:<5} {:<22} {:>12}", "tensor", "dtype", "shape", "bytes");
    let mut by_dtype: BTreeMap<DType, (usize, u64)> = BTreeMap::new();
    for name in store.names() {
        let t = store.get(name).map_err(|e| e.to_string())?;
        println!(
            "{:<60} {:<5} {:<22} {:>12}",
            name,
            t.dtype.to_string(),
            Shape::from(t.shape).to_string(),
            t.bytes.len()
        );
        let e = by_dtype.entry(t.dtype).or_default();
        e.0 += 1;
        e.1 += t.bytes.len() as u64;
    }
    let files = store.files().len();
    println!(
        "\n{} tensors in {files} file(s), {:.2} MiB; valid (header, offsets, sizes, dtypes checked)",
        store.len(),
        mib(store.total_bytes() as usize)
    );
    for (d, (n, b)) in by_dtype {
        println!("  {d}: {n} tensors, {:.2} MiB", mib(b as usize));
    }
    if metadata {
        println!("\nmetadata:");
        for (k, v) in store.metadata() {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}

/// Write named tensors to a safetensors file.
pub fn save_outputs(path: &Path, t: &[(String, DType, Vec<usize>, Vec<u8>)]) -> Result<(), String> {
    let rows: Vec<(&str, DType, &[usize], &[u8])> =
        t.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
    let mut meta = BTreeMap::new();
    meta.insert("producer".to_string(), "focus demo".to_string());
    save(path, &rows, Some(&meta)).map_err(|e| e.to_string())
}
