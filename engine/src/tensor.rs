//! Owned host tensors: what callers pass in and get back.

use crate::buffer::AlignedBuf;
use crate::error::{EngineError, Result};
use focus_graph::{DType, Shape};
use focus_kernels::{cpu::common, TensorMut, TensorRef};

#[derive(Clone, Debug)]
pub struct Tensor {
    dtype: DType,
    shape: Shape,
    data: AlignedBuf,
}

impl Tensor {
    /// From little-endian bytes; the length must match dtype × shape.
    pub fn from_bytes(dtype: DType, shape: impl Into<Shape>, bytes: &[u8]) -> Result<Self> {
        let shape = shape.into();
        let want = shape.numel() * dtype.size_in_bytes();
        if bytes.len() != want {
            return Err(EngineError::DataSize { dtype, shape, got: bytes.len(), want });
        }
        Ok(Tensor { dtype, shape, data: AlignedBuf::from_bytes(bytes) })
    }

    pub fn zeros(dtype: DType, shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let data = AlignedBuf::zeroed(shape.numel() * dtype.size_in_bytes());
        Tensor { dtype, shape, data }
    }

    /// f32 values stored as `dtype` (rounded for halves).
    pub fn from_f32(dtype: DType, shape: impl Into<Shape>, v: &[f32]) -> Result<Self> {
        let mut t = Tensor::zeros(dtype, shape);
        if v.len() != t.shape.numel() {
            return Err(EngineError::DataSize {
                dtype,
                shape: t.shape.clone(),
                got: v.len() * dtype.size_in_bytes(),
                want: t.shape.numel() * dtype.size_in_bytes(),
            });
        }
        common::f32_store(&mut t.view_mut(), v);
        Ok(t)
    }

    pub fn from_i64(dtype: DType, shape: impl Into<Shape>, v: &[i64]) -> Result<Self> {
        let mut t = Tensor::zeros(dtype, shape);
        if v.len() != t.shape.numel() || !matches!(dtype, DType::I32 | DType::I64) {
            return Err(EngineError::DataSize {
                dtype,
                shape: t.shape.clone(),
                got: v.len() * dtype.size_in_bytes(),
                want: t.shape.numel() * dtype.size_in_bytes(),
            });
        }
        common::i64_store(&mut t.view_mut(), v).expect("dtype checked above");
        Ok(t)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }
    pub fn view(&self) -> TensorRef<'_> {
        TensorRef::new(self.dtype, self.shape.dims(), self.data.as_slice())
    }
    pub fn view_mut(&mut self) -> TensorMut<'_> {
        TensorMut::new(self.dtype, self.shape.dims(), self.data.as_mut_slice())
    }
    /// Values converted to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        common::f32_in(&self.view()).into_owned()
    }
    /// Values of an integer/bool tensor as i64.
    pub fn to_i64(&self) -> Vec<i64> {
        common::i64_in(&self.view()).unwrap_or_else(|_| self.to_f32().iter().map(|&x| x as i64).collect())
    }
}
