//! Dtype conversion at the kernel edges and per-thread scratch. Compute kernels work on f32
//! (indices on i64); f32 inputs are borrowed without copying, index tensors are decoded in
//! place and other dtypes are converted into pooled scratch, so kernels allocate nothing once
//! the scratch pools have grown.

use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::DType;
use half::{bf16, f16};
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Shape/stride bookkeeping that stays on the stack for ranks up to 8, so kernels allocate
/// nothing per call.
pub type Dims = smallvec::SmallVec<[usize; 8]>;

/// Row-major strides (elements) for reading `src` broadcast to `dst` (0 on broadcast dims).
pub fn broadcast_strides(src: &[usize], dst: &[usize]) -> Dims {
    let off = dst.len() - src.len();
    let mut own: Dims = smallvec::smallvec![0; src.len()];
    let mut acc = 1;
    for i in (0..src.len()).rev() {
        own[i] = acc;
        acc *= src[i];
    }
    (0..dst.len()).map(|i| if i < off || src[i - off] == 1 { 0 } else { own[i - off] }).collect()
}

/// Contiguous row-major strides.
pub fn strides_of(shape: &[usize]) -> Dims {
    broadcast_strides(shape, shape)
}

/// Values of a tensor as f32: borrowed, or converted into pooled scratch.
pub enum F32In<'a> {
    Borrowed(&'a [f32]),
    Converted(Scratch<f32>),
}

impl F32In<'_> {
    /// The values as an owned vector (a converted buffer is taken out of the pool).
    pub fn into_owned(self) -> Vec<f32> {
        match self {
            F32In::Borrowed(s) => s.to_vec(),
            F32In::Converted(mut s) => std::mem::take(&mut s.0),
        }
    }
}

impl Deref for F32In<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            F32In::Borrowed(s) => s,
            F32In::Converted(s) => s,
        }
    }
}

/// Values of `t` as f32: borrowed when `t` is f32 and aligned, else converted into pooled
/// scratch (so half-precision and integer inputs allocate nothing once the pool has grown).
pub fn f32_in<'a>(t: &TensorRef<'a>) -> F32In<'a> {
    if t.dtype == DType::F32 {
        if let Ok(s) = bytemuck::try_cast_slice(t.data) {
            return F32In::Borrowed(s);
        }
    }
    let mut v = Scratch::<f32>::stale(t.data.len() / t.dtype.size_in_bytes());
    match t.dtype {
        DType::F32 => {
            for (d, c) in v.iter_mut().zip(t.data.chunks_exact(4)) {
                *d = f32::from_le_bytes(c.try_into().unwrap());
            }
        }
        DType::F16 => {
            for (d, c) in v.iter_mut().zip(t.data.chunks_exact(2)) {
                *d = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (d, c) in v.iter_mut().zip(t.data.chunks_exact(2)) {
                *d = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::I32 => {
            for (d, c) in v.iter_mut().zip(t.data.chunks_exact(4)) {
                *d = i32::from_le_bytes(c.try_into().unwrap()) as f32;
            }
        }
        DType::I64 => {
            for (d, c) in v.iter_mut().zip(t.data.chunks_exact(8)) {
                *d = i64::from_le_bytes(c.try_into().unwrap()) as f32;
            }
        }
        DType::U8 | DType::Bool => {
            for (d, &b) in v.iter_mut().zip(t.data) {
                *d = b as f32;
            }
        }
    }
    F32In::Converted(v)
}

/// An integer (or bool) tensor read element by element as i64, decoding its little-endian
/// bytes on the fly: no copy and no alignment requirement.
#[derive(Clone, Copy)]
pub struct IndexRef<'a> {
    data: &'a [u8],
    width: usize,
}

impl<'a> IndexRef<'a> {
    pub fn new(t: &TensorRef<'a>) -> Result<Self> {
        let width = match t.dtype {
            DType::I32 => 4,
            DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
            d => return Err(KernelError::Unsupported { op: "integer input", dtype: d }),
        };
        Ok(IndexRef { data: t.data, width })
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Element `i` (panics if `i >= len()`, like slice indexing).
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        let b = &self.data[i * self.width..][..self.width];
        match self.width {
            4 => i32::from_le_bytes(b.try_into().unwrap()) as i64,
            8 => i64::from_le_bytes(b.try_into().unwrap()),
            _ => b[0] as i64,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Element types with a per-thread pool of spare scratch buffers.
pub trait Pooled: Copy + Default + 'static {
    /// Runs `f` on this thread's pool (`None` while the thread is being torn down).
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R>;
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R> {
                thread_local! {
                    static POOL: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };
                }
                POOL.try_with(|p| f(&mut p.borrow_mut())).ok()
            }
        }
    )*};
}
pooled!(f32, f64, i64, usize, (f32, usize));

/// A scratch buffer borrowed from the current thread's pool and returned to it on drop, so
/// kernels reuse the same memory run after run. Nested scratches get distinct buffers; once a
/// thread's pool has grown to the sizes its kernels ask for, nothing allocates. (Rayon workers
/// each have their own pool: a worker that first runs a task after warm-up still allocates once.)
pub struct Scratch<T: Pooled = f32>(Vec<T>);

impl<T: Pooled> Scratch<T> {
    /// A spare buffer from the pool: the smallest that fits, else the largest (grown by the
    /// caller once, then kept). Its contents are stale.
    fn spare(len: usize) -> Vec<T> {
        let spare = T::with_pool(|pool| {
            let fits =
                (0..pool.len()).filter(|&i| pool[i].capacity() >= len).min_by_key(|&i| pool[i].capacity());
            let i = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()))?;
            Some(pool.swap_remove(i))
        });
        spare.flatten().unwrap_or_default()
    }

    /// `len` copies of `v`.
    pub fn filled(len: usize, v: T) -> Self {
        let mut buf = Self::spare(len);
        buf.clear();
        buf.resize(len, v);
        Scratch(buf)
    }

    /// `len` elements with unspecified (stale) values, for callers that overwrite them all:
    /// saves clearing large buffers.
    pub fn stale(len: usize) -> Self {
        let mut buf = Self::spare(len);
        buf.resize(len, T::default());
        Scratch(buf)
    }

    pub fn zeroed(len: usize) -> Self {
        Self::filled(len, T::default())
    }

    /// An empty buffer with room for at least `capacity` elements (from the pool once it has
    /// grown), for callers that push.
    pub fn empty(capacity: usize) -> Self {
        let mut buf = Self::spare(capacity);
        buf.clear();
        buf.reserve(capacity);
        Scratch(buf)
    }

    /// The buffer itself, to push or retain (growth beyond the pooled capacity allocates once).
    pub fn vec(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Pooled> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // A buffer taken out (`F32In::into_owned`) leaves nothing worth keeping.
        if buf.capacity() > 0 {
            T::with_pool(|pool| pool.push(buf));
        }
    }
}

impl<T: Pooled> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Pooled> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// Integer (or bool) elements of `t` into `dst` (`numel` long): `i64_in` without allocating.
pub fn i64_fill(t: &TensorRef<'_>, dst: &mut [i64]) -> Result<()> {
    match t.dtype {
        DType::I32 => {
            for (d, c) in dst.iter_mut().zip(t.data.chunks_exact(4)) {
                *d = i32::from_le_bytes(c.try_into().unwrap()) as i64;
            }
        }
        DType::I64 => {
            for (d, c) in dst.iter_mut().zip(t.data.chunks_exact(8)) {
                *d = i64::from_le_bytes(c.try_into().unwrap());
            }
        }
        DType::U8 | DType::Bool => {
            for (d, &b) in dst.iter_mut().zip(t.data) {
                *d = b as i64;
            }
        }
        d => return Err(KernelError::Unsupported { op: "integer input", dtype: d }),
    }
    Ok(())
}

pub fn i64_in(t: &TensorRef<'_>) -> Result<Vec<i64>> {
    Ok(match t.dtype {
        DType::I32 => {
            t.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()
        }
        DType::I64 => t.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        DType::U8 | DType::Bool => t.data.iter().map(|&b| b as i64).collect(),
        d => return Err(KernelError::Unsupported { op: "integer input", dtype: d }),
    })
}

/// Write f32 values into `out`, rounding to its dtype (round-to-nearest-even for halves,
/// truncation toward zero for integers, `!= 0` for bool).
pub fn f32_store(out: &mut TensorMut<'_>, v: &[f32]) {
    debug_assert_eq!(v.len(), out.numel());
    match out.dtype {
        DType::F32 => {
            for (c, x) in out.data.chunks_exact_mut(4).zip(v) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::F16 => {
            for (c, x) in out.data.chunks_exact_mut(2).zip(v) {
                c.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
            }
        }
        DType::BF16 => {
            for (c, x) in out.data.chunks_exact_mut(2).zip(v) {
                c.copy_from_slice(&bf16::from_f32(*x).to_le_bytes());
            }
        }
        DType::I32 => {
            for (c, x) in out.data.chunks_exact_mut(4).zip(v) {
                c.copy_from_slice(&(*x as i32).to_le_bytes());
            }
        }
        DType::I64 => {
            for (c, x) in out.data.chunks_exact_mut(8).zip(v) {
                c.copy_from_slice(&(*x as i64).to_le_bytes());
            }
        }
        DType::U8 => {
            for (c, x) in out.data.iter_mut().zip(v) {
                *c = *x as u8;
            }
        }
        DType::Bool => {
            for (c, x) in out.data.iter_mut().zip(v) {
                *c = (*x != 0.0) as u8;
            }
        }
    }
}

/// Run `f` on an f32 view of `out`: in place when `out` is f32 and aligned, otherwise through
/// a temporary that is converted afterwards.
pub fn with_f32_out(out: &mut TensorMut<'_>, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    if out.dtype == DType::F32 {
        if let Ok(s) = bytemuck::try_cast_slice_mut::<u8, f32>(out.data) {
            return f(s);
        }
    }
    let mut tmp = Scratch::zeroed(out.numel());
    f(&mut tmp)?;
    f32_store(out, &tmp);
    Ok(())
}

/// Write i64 values into an integer or bool output, wrapping to its width (bool: `!= 0`).
pub fn i64_store(out: &mut TensorMut<'_>, v: &[i64]) -> Result<()> {
    match out.dtype {
        DType::I64 => {
            for (c, x) in out.data.chunks_exact_mut(8).zip(v) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::I32 => {
            for (c, x) in out.data.chunks_exact_mut(4).zip(v) {
                c.copy_from_slice(&(*x as i32).to_le_bytes());
            }
        }
        DType::U8 => {
            for (c, x) in out.data.iter_mut().zip(v) {
                *c = *x as u8;
            }
        }
        DType::Bool => {
            for (c, x) in out.data.iter_mut().zip(v) {
                *c = (*x != 0) as u8;
            }
        }
        d => return Err(KernelError::Unsupported { op: "integer output", dtype: d }),
    }
    Ok(())
}
