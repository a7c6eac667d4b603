//! Checking a weight store against the tensors a graph expects.

use std::fmt;

use focus_graph::DType;

/// A tensor the graph will read from the weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl ExpectedTensor {
    pub fn new(name: impl Into<String>, dtype: DType, shape: &[usize]) -> Self {
        Self { name: name.into(), dtype, shape: shape.to_vec() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtypeDifference {
    pub name: String,
    pub expected: DType,
    pub found: DType,
}

/// Everything that differs between the graph's expectations and the weights, found in one
/// pass so a user fixes all problems at once instead of one per run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// What was checked (store path), for messages.
    pub source: String,
    /// Expected but absent: fatal.
    pub missing: Vec<ExpectedTensor>,
    /// Present with another shape: fatal.
    pub shape_mismatches: Vec<ShapeMismatch>,
    /// Present with another dtype: converted on load, listed for information.
    pub dtype_differences: Vec<DtypeDifference>,
    /// Present but not expected: a warning (often harmless, e.g. unused heads).
    pub unexpected: Vec<String>,
}

impl MismatchReport {
    /// True when loading cannot proceed (missing or mis-shaped tensors).
    pub fn is_fatal(&self) -> bool {
        !self.missing.is_empty() || !self.shape_mismatches.is_empty()
    }

    /// True when there is nothing at all to report.
    pub fn is_clean(&self) -> bool {
        !self.is_fatal() && self.dtype_differences.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: weights vs graph: {} missing, {} shape mismatch(es), {} dtype difference(s), {} unexpected",
            self.source,
            self.missing.len(),
            self.shape_mismatches.len(),
            self.dtype_differences.len(),
            self.unexpected.len()
        )?;
        for m in &self.missing {
            write!(f, "\n  missing: '{}' ({} {:?})", m.name, m.dtype, m.shape)?;
        }
        for m in &self.shape_mismatches {
            write!(f, "\n  shape mismatch: '{}' expected {:?}, found {:?}", m.name, m.expected, m.found)?;
        }
        for d in &self.dtype_differences {
            write!(
                f,
                "\n  dtype differs (converted on load): '{}' expected {}, found {}",
                d.name, d.expected, d.found
            )?;
        }
        for u in &self.unexpected {
            write!(f, "\n  unexpected (ignored): '{u}'")?;
        }
        Ok(())
    }
}
