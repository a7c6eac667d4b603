//! `WeightStore`: one view over a single file, a sharded checkpoint or a directory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use focus_graph::DType;
use serde_json::Value;

use super::convert::convert;
use super::error::{Result, WeightError, MAX_HEADER_BYTES};
use super::file::{SafetensorsFile, TensorView};
use super::header::as_object;
use super::validate::{DtypeDifference, ExpectedTensor, MismatchReport, ShapeMismatch};

/// Index file name looked for first when opening a directory.
pub const DEFAULT_INDEX: &str = "model.safetensors.index.json";

#[derive(Debug)]
pub struct WeightStore {
    source: PathBuf,
    files: Vec<SafetensorsFile>,
    /// Tensor name -> index into `files`.
    names: BTreeMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl WeightStore {
    /// Opens a `.safetensors` file, a `*.safetensors.index.json` sharded checkpoint, or a
    /// directory (its `model.safetensors.index.json` if present, else every `*.safetensors`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(DEFAULT_INDEX);
            return if index.is_file() { Self::open_index(&index) } else { Self::open_dir(path) };
        }
        let is_index = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".index.json"));
        if is_index {
            Self::open_index(path)
        } else {
            Self::from_files(path, vec![SafetensorsFile::open(path)?])
        }
    }

    /// Every `*.safetensors` in `dir`, in name order; a tensor in two files is an error.
    fn open_dir(dir: &Path) -> Result<Self> {
        let io = |source| WeightError::Io { path: dir.into(), action: "read directory", source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if p.extension().is_some_and(|e| e == "safetensors") && p.is_file() {
                paths.push(p);
            }
        }
        if paths.is_empty() {
            return Err(WeightError::NoWeightFiles { path: dir.into() });
        }
        paths.sort();
        let files = paths.iter().map(SafetensorsFile::open).collect::<Result<Vec<_>>>()?;
        Self::from_files(dir, files)
    }

    fn from_files(source: &Path, files: Vec<SafetensorsFile>) -> Result<Self> {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.names() {
                if let Some(&prev) = names.get(name) {
                    let first = files[prev].path().to_path_buf();
                    return Err(WeightError::DuplicateTensor {
                        tensor: name.into(),
                        first,
                        second: f.path().into(),
                    });
                }
                names.insert(name.to_string(), i);
            }
            // Earlier files win on conflicting keys; shards normally carry identical metadata.
            for (k, v) in f.metadata() {
                metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Ok(Self { source: source.into(), files, names, metadata })
    }

    /// `{"metadata": {...}, "weight_map": {tensor: shard_file}}`, shards relative to the index.
    fn open_index(index: &Path) -> Result<Self> {
        let bad = |reason: String| WeightError::BadIndex { path: index.into(), reason };
        let io = |source| WeightError::Io { path: index.into(), action: "read", source };
        let len = std::fs::metadata(index).map_err(io)?.len();
        if len > MAX_HEADER_BYTES {
            return Err(bad(format!("{len} bytes is larger than the {MAX_HEADER_BYTES}-byte limit")));
        }
        let text = std::fs::read_to_string(index).map_err(io)?;
        let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let root = as_object(&json).map_err(|r| bad(format!("index {r}")))?;
        let weight_map = root.get("weight_map").ok_or_else(|| bad("missing `weight_map`".into()))?;
        let weight_map = as_object(weight_map).map_err(|r| bad(format!("`weight_map` {r}")))?;

        // Group tensors by shard so each shard is opened once.
        let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, shard) in weight_map {
            let Value::String(shard) = shard else {
                return Err(bad(format!("shard of '{name}' is not a string")));
            };
            by_shard.entry(shard).or_default().push(name);
        }
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shard_paths = Vec::new();
        for &shard in by_shard.keys() {
            // Shards must stay inside the checkpoint directory: the index is untrusted input.
            let rel = Path::new(shard);
            if shard.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(bad(format!(
                    "shard path '{shard}' must be relative, inside the index's directory"
                )));
            }
            shard_paths.push(dir.join(rel));
        }
        let missing: Vec<PathBuf> = shard_paths.iter().filter(|p| !p.is_file()).cloned().collect();
        if !missing.is_empty() {
            return Err(WeightError::MissingShards { index: index.into(), shards: missing });
        }

        let mut files = Vec::with_capacity(shard_paths.len());
        let mut names = BTreeMap::new();
        for (i, (path, tensors)) in shard_paths.iter().zip(by_shard.values()).enumerate() {
            let file = SafetensorsFile::open(path)?;
            let absent: Vec<String> =
                tensors.iter().filter(|t| !file.contains(t)).map(|t| t.to_string()).collect();
            if !absent.is_empty() {
                return Err(WeightError::NotInShard {
                    index: index.into(),
                    shard: path.clone(),
                    tensors: absent,
                });
            }
            // Only mapped names are exposed: the weight map is the checkpoint's table of contents.
            names.extend(tensors.iter().map(|t| (t.to_string(), i)));
            files.push(file);
        }

        let mut metadata = BTreeMap::new();
        if let Some(meta) = root.get("metadata") {
            let meta = as_object(meta).map_err(|r| bad(format!("`metadata` {r}")))?;
            for (k, v) in meta {
                // HF indexes store numbers here (total_size); keep them as their JSON text.
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                metadata.insert(k.clone(), v);
            }
        }
        Ok(Self { source: index.into(), files, names, metadata })
    }

    /// The path that was opened.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The underlying files, in the order they were opened.
    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.names.keys().map(String::as_str).collect()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Option<(DType, &[usize])> {
        self.files[*self.names.get(name)?].info(name)
    }

    /// The file holding `name`.
    fn file_of(&self, name: &str) -> Result<&SafetensorsFile> {
        self.names
            .get(name)
            .map(|&i| &self.files[i])
            .ok_or_else(|| WeightError::NotFound { path: self.source.clone(), tensor: name.into() })
    }

    /// Zero-copy view of a tensor.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        self.file_of(name)?.get(name)
    }

    /// The tensor's bytes as `dtype` (little-endian): borrowed from the map when the stored
    /// dtype matches, converted otherwise.
    pub fn get_as(&self, name: &str, dtype: DType) -> Result<Cow<'_, [u8]>> {
        let file = self.file_of(name)?;
        let view = file.get(name)?;
        convert(view.bytes, view.dtype, dtype).map_err(|e| WeightError::Conversion {
            path: file.path().into(),
            tensor: name.into(),
            from: view.dtype,
            to: dtype,
            reason: e.to_string(),
        })
    }

    /// The tensor as f32 values, whatever its stored dtype (always a copy; handles alignment).
    pub fn get_f32(&self, name: &str) -> Result<Vec<f32>> {
        let bytes = self.get_as(name, DType::F32)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Metadata strings: the file's `__metadata__`, or the index's `metadata`.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Sum of the byte sizes of all exposed tensors.
    pub fn total_bytes(&self) -> u64 {
        self.names.keys().filter_map(|n| self.get(n).ok()).map(|v| v.bytes.len() as u64).sum()
    }

    /// Compares the store with what a graph expects. Missing or mis-shaped tensors fail with
    /// [`WeightError::Mismatch`] listing every problem; otherwise the returned report carries
    /// the non-fatal findings (dtype differences, unexpected tensors).
    pub fn validate(&self, expected: &[ExpectedTensor]) -> Result<MismatchReport> {
        let mut report = MismatchReport { source: self.source.display().to_string(), ..Default::default() };
        let mut wanted = std::collections::BTreeSet::new();
        for e in expected {
            if !wanted.insert(e.name.as_str()) {
                continue;
            }
            let Some((dtype, shape)) = self.info(&e.name) else {
                report.missing.push(e.clone());
                continue;
            };
            if shape != e.shape.as_slice() {
                report.shape_mismatches.push(ShapeMismatch {
                    name: e.name.clone(),
                    expected: e.shape.clone(),
                    found: shape.to_vec(),
                });
            }
            if dtype != e.dtype {
                report.dtype_differences.push(DtypeDifference {
                    name: e.name.clone(),
                    expected: e.dtype,
                    found: dtype,
                });
            }
        }
        report.unexpected = self.names.keys().filter(|n| !wanted.contains(n.as_str())).cloned().collect();
        if report.is_fatal() {
            Err(WeightError::Mismatch(report))
        } else {
            Ok(report)
        }
    }
}
