//! Borrowed views of contiguous tensors in host memory (little-endian bytes).

use focus_graph::DType;

#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

#[derive(Debug)]
pub struct TensorMut<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a mut [u8],
}

impl<'a> TensorRef<'a> {
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a [u8]) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>() * dtype.size_in_bytes());
        TensorRef { dtype, shape, data }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

impl<'a> TensorMut<'a> {
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a mut [u8]) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>() * dtype.size_in_bytes());
        TensorMut { dtype, shape, data }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef { dtype: self.dtype, shape: self.shape, data: self.data }
    }
}
