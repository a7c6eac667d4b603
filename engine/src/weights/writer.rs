//! Writing safetensors files (for tests, conversion tools and caches).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use focus_graph::DType;
use serde_json::{json, Map, Value};

use super::error::{Result, WeightError};
use super::header::METADATA_KEY;

/// A tensor to write: name, dtype, shape, little-endian bytes.
pub type TensorToSave<'a> = (&'a str, DType, &'a [usize], &'a [u8]);

/// Writes a safetensors file. Tensors are laid out largest element size first (stable), so
/// with the 8-byte-padded header every tensor starts aligned for its dtype.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[TensorToSave<'_>],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let bad = |tensor: &str, reason: String| WeightError::BadTensorToWrite {
        path: path.into(),
        tensor: tensor.into(),
        reason,
    };

    let mut seen = BTreeSet::new();
    for &(name, dtype, shape, bytes) in tensors {
        if name == METADATA_KEY {
            return Err(bad(name, "name is reserved for metadata".into()));
        }
        if !seen.insert(name) {
            return Err(bad(name, "duplicate name".into()));
        }
        let expected = shape
            .iter()
            .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(name, format!("byte size of shape {shape:?} x {dtype} overflows")))?;
        if expected != bytes.len() {
            return Err(bad(
                name,
                format!("shape {shape:?} x {dtype} needs {expected} bytes, got {}", bytes.len()),
            ));
        }
    }

    let mut order: Vec<&TensorToSave<'_>> = tensors.iter().collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.1.size_in_bytes()));

    let mut header = Map::new();
    if let Some(meta) = metadata.filter(|m| !m.is_empty()) {
        let meta: Map<String, Value> =
            meta.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
        header.insert(METADATA_KEY.into(), Value::Object(meta));
    }
    let mut offset = 0usize;
    for &&(name, dtype, shape, bytes) in &order {
        // Cannot overflow: the bytes all exist in memory at once.
        let end = offset + bytes.len();
        header.insert(
            name.into(),
            json!({ "dtype": dtype.safetensors_name(), "shape": shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut text = Value::Object(header).to_string().into_bytes();
    // Padding keeps the data section 8-byte aligned within the file.
    text.resize(text.len().next_multiple_of(8), b' ');

    let io = |source| WeightError::Io { path: path.into(), action: "write", source };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    out.write_all(&(text.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&text).map_err(io)?;
    for (_, _, _, bytes) in order {
        out.write_all(bytes).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(())
}
