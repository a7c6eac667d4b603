//! Safetensors header parsing and validation.
//!
//! Layout: 8-byte little-endian header length N, N bytes of JSON, then the data section.
//! The bytes are untrusted: every field is type-checked, every size computed with checked
//! arithmetic, and every tensor's byte range checked against the data section and its
//! neighbours, so later code can slice the data without further checks.

use std::collections::BTreeMap;
use std::path::Path;

use focus_graph::DType;
use serde_json::{Map, Value};

use super::error::{Result, WeightError, MAX_HEADER_BYTES};

/// Key reserved for free-form string metadata.
pub(crate) const METADATA_KEY: &str = "__metadata__";

/// One validated tensor entry. `start..end` is absolute within the whole file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug)]
pub(crate) struct Header {
    pub tensors: BTreeMap<String, Entry>,
    pub metadata: BTreeMap<String, String>,
}

/// Parses and validates the header of a safetensors file whose full contents are `bytes`.
/// `path` is only used in error messages.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Header> {
    let file_len = bytes.len() as u64;
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(WeightError::TooShort { path: path.into(), len: file_len });
    };
    let mut len_arr = [0u8; 8];
    len_arr.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(len_arr);
    if header_len > MAX_HEADER_BYTES {
        return Err(WeightError::HeaderTooLarge { path: path.into(), header_len });
    }
    if header_len > file_len - 8 {
        return Err(WeightError::HeaderBeyondFile { path: path.into(), header_len, file_len });
    }
    // Both fit in usize: header_len <= file_len - 8 and file_len came from a slice length.
    let data_start = 8 + header_len as usize;
    let text = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|e| WeightError::HeaderNotUtf8 { path: path.into(), reason: e.to_string() })?;
    let json: Value = serde_json::from_str(text)
        .map_err(|e| WeightError::HeaderJson { path: path.into(), reason: e.to_string() })?;
    let Value::Object(obj) = json else {
        return Err(WeightError::HeaderNotObject { path: path.into(), found: json_kind(&json) });
    };

    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in &obj {
        if name == METADATA_KEY {
            metadata = parse_metadata(path, value)?;
            continue;
        }
        let (dtype, shape, begin, end) = parse_entry(path, name, value, data_len)?;
        tensors
            .insert(name.clone(), Entry { dtype, shape, start: data_start + begin, end: data_start + end });
    }
    check_overlaps(path, &tensors)?;
    Ok(Header { tensors, metadata })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_metadata(path: &Path, value: &Value) -> Result<BTreeMap<String, String>> {
    let bad = |reason: String| WeightError::BadMetadata { path: path.into(), reason };
    let Value::Object(obj) = value else {
        return Err(bad(format!("expected an object of strings, found {}", json_kind(value))));
    };
    obj.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(bad(format!("value of '{k}' is {}, expected a string", json_kind(other)))),
        })
        .collect()
}

/// Validates one tensor entry; returns dtype, shape and offsets relative to the data section.
fn parse_entry(
    path: &Path,
    name: &str,
    value: &Value,
    data_len: usize,
) -> Result<(DType, Vec<usize>, usize, usize)> {
    let bad = |reason: String| WeightError::BadEntry { path: path.into(), tensor: name.into(), reason };
    let Value::Object(obj) = value else {
        return Err(bad(format!("entry is {}, expected an object", json_kind(value))));
    };
    let field = |key: &str| obj.get(key).ok_or_else(|| bad(format!("missing field `{key}`")));

    let dtype_name = match field("dtype")? {
        Value::String(s) => s,
        other => return Err(bad(format!("`dtype` is {}, expected a string", json_kind(other)))),
    };
    let dtype = DType::from_safetensors_name(dtype_name).ok_or_else(|| WeightError::UnsupportedDtype {
        path: path.into(),
        tensor: name.into(),
        dtype: dtype_name.clone(),
    })?;

    let shape_u64 = u64_array(field("shape")?, "shape").map_err(bad)?;
    let offsets = u64_array(field("data_offsets")?, "data_offsets").map_err(bad)?;
    let [begin, end] = offsets[..] else {
        return Err(bad(format!("`data_offsets` has {} elements, expected 2", offsets.len())));
    };
    if begin > end {
        return Err(WeightError::BeginAfterEnd { path: path.into(), tensor: name.into(), begin, end });
    }
    if end > data_len as u64 {
        return Err(WeightError::OffsetOutOfRange {
            path: path.into(),
            tensor: name.into(),
            end,
            data_len: data_len as u64,
        });
    }
    let overflow = || WeightError::SizeOverflow {
        path: path.into(),
        tensor: name.into(),
        dtype,
        shape: shape_u64.clone(),
    };
    let nbytes = shape_u64
        .iter()
        .try_fold(dtype.size_in_bytes() as u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let shape = shape_u64
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| overflow())?;
    if nbytes != end - begin {
        return Err(WeightError::SizeMismatch {
            path: path.into(),
            tensor: name.into(),
            dtype,
            shape,
            expected: nbytes,
            actual: end - begin,
        });
    }
    // end <= data_len, so both convert losslessly.
    Ok((dtype, shape, begin as usize, end as usize))
}

/// Reads a JSON array of non-negative integers, explaining what is wrong otherwise.
fn u64_array(value: &Value, key: &str) -> std::result::Result<Vec<u64>, String> {
    let Value::Array(items) = value else {
        return Err(format!("`{key}` is {}, expected an array of integers", json_kind(value)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                if n.as_i64().is_some() {
                    format!("`{key}`[{i}] = {n} is negative")
                } else {
                    format!("`{key}`[{i}] = {n} is not a non-negative integer")
                }
            }),
            other => Err(format!("`{key}`[{i}] is {}, expected an integer", json_kind(other))),
        })
        .collect()
}

/// Rejects tensors sharing bytes. Empty tensors own no bytes and cannot overlap anything.
fn check_overlaps(path: &Path, tensors: &BTreeMap<String, Entry>) -> Result<()> {
    let mut ranges: Vec<(usize, usize, &str)> =
        tensors.iter().filter(|(_, e)| e.start < e.end).map(|(n, e)| (e.start, e.end, n.as_str())).collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let (_, prev_end, prev) = pair[0];
        let (start, _, cur) = pair[1];
        if prev_end > start {
            return Err(WeightError::Overlap { path: path.into(), first: prev.into(), second: cur.into() });
        }
    }
    Ok(())
}

/// Parsed object, shared with the index reader.
pub(crate) fn as_object(value: &Value) -> std::result::Result<&Map<String, Value>, String> {
    match value {
        Value::Object(o) => Ok(o),
        other => Err(format!("is {}, expected an object", json_kind(other))),
    }
}
