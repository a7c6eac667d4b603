//! One memory-mapped safetensors file and zero-copy views into it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use focus_graph::DType;
use memmap2::Mmap;

use super::error::{Result, WeightError};
use super::header::{self, Entry};

/// A borrowed tensor: its bytes point straight into the file mapping (little-endian).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    pub fn numel(&self) -> usize {
        // The header check proved numel * size == bytes.len(), so this cannot overflow.
        self.bytes.len() / self.dtype.size_in_bytes()
    }

    /// Whether `bytes` may be reinterpreted in place as a slice of the dtype's element type.
    /// Safetensors only aligns the data section to 8 bytes within the file, and writers may
    /// pack tensors of different sizes, so callers check this before choosing zero-copy.
    pub fn is_aligned(&self) -> bool {
        // Element sizes are powers of two, so a mask tests divisibility.
        (self.bytes.as_ptr() as usize) & (self.dtype.size_in_bytes() - 1) == 0
    }
}

/// A validated, memory-mapped `.safetensors` file.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Maps the file and validates its header and every tensor's byte range.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |action| move |source| WeightError::Io { path: path.into(), action, source };
        let file = File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        // Checked before mapping: some platforms refuse to map empty files.
        if len < 8 {
            return Err(WeightError::TooShort { path: path.into(), len });
        }
        // SAFETY: the map is read-only. Another process truncating or rewriting the file while
        // it is mapped is undefined behaviour; as with every mmap-based loader, weight files
        // are assumed not to change while in use.
        let map = unsafe { Mmap::map(&file) }.map_err(io("mmap"))?;
        let header = header::parse(path, &map)?;
        Ok(Self { path: path.into(), map, tensors: header.tensors, metadata: header.metadata })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Option<(DType, &[usize])> {
        self.tensors.get(name).map(|e| (e.dtype, e.shape.as_slice()))
    }

    /// Zero-copy view, or `None` if the file has no such tensor.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let (name, e) = self.tensors.get_key_value(name)?;
        Some(TensorView { name, dtype: e.dtype, shape: &e.shape, bytes: &self.map[e.start..e.end] })
    }

    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        self.tensor(name)
            .ok_or_else(|| WeightError::NotFound { path: self.path.clone(), tensor: name.into() })
    }

    /// The `__metadata__` strings (empty if the header had none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Sum of all tensors' byte sizes.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|e| (e.end - e.start) as u64).sum()
    }
}
