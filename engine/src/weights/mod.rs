//! Model weights: a zero-copy safetensors reader (memory-mapped, fully validated since the
//! bytes are untrusted), sharded/directory checkpoints, dtype conversion on load, validation
//! against what a graph expects, and a writer.

mod convert;
mod error;
mod file;
mod header;
mod store;
mod validate;
mod writer;

pub use convert::{convert, ConvertError};
pub use error::{Result, WeightError, MAX_HEADER_BYTES};
pub use file::{SafetensorsFile, TensorView};
pub use store::{WeightStore, DEFAULT_INDEX};
pub use validate::{DtypeDifference, ExpectedTensor, MismatchReport, ShapeMismatch};
pub use writer::{save, TensorToSave};

impl crate::source::WeightSource for WeightStore {
    fn tensor(&self, name: &str) -> Option<(focus_graph::DType, &[usize], &[u8])> {
        self.get(name).ok().map(|t| (t.dtype, t.shape, t.bytes))
    }
    fn names(&self) -> Vec<String> {
        WeightStore::names(self).into_iter().map(String::from).collect()
    }
}
