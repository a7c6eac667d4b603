//! Shared helpers for kernel tests: seeded random inputs, dtype round trips, poisoned outputs
//! and relative L2 error.
#![allow(dead_code)]

use focus_graph::DType;
use focus_kernels::{cpu, TensorMut, TensorRef};
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Fresh uniform values in [lo, hi).
pub fn rand_vec(r: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(lo..hi)).collect()
}

/// Encode f32 values as `dtype` bytes.
pub fn encode(v: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F16 => v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect(),
        DType::BF16 => v.iter().flat_map(|x| bf16::from_f32(*x).to_le_bytes()).collect(),
        DType::I32 => v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect(),
        DType::I64 => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
        DType::U8 | DType::Bool => v.iter().map(|x| *x as u8).collect(),
    }
}

/// Decode `dtype` bytes to f32 (integers converted exactly when small).
pub fn decode(b: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        DType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        DType::U8 | DType::Bool => b.iter().map(|x| *x as f32).collect(),
    }
}

/// Values rounded through `dtype` (what a kernel actually sees after encoding).
pub fn round_trip(v: &[f32], dtype: DType) -> Vec<f32> {
    decode(&encode(v, dtype), dtype)
}

/// An owned tensor for tests.
pub struct Owned {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Owned {
    pub fn from_f32(v: &[f32], shape: &[usize], dtype: DType) -> Self {
        assert_eq!(v.len(), shape.iter().product::<usize>());
        Owned { dtype, shape: shape.to_vec(), data: encode(v, dtype) }
    }
    pub fn from_i64(v: &[i64], shape: &[usize], dtype: DType) -> Self {
        let data = match dtype {
            DType::I64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DType::I32 => v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect(),
            _ => panic!("index dtype"),
        };
        Owned { dtype, shape: shape.to_vec(), data }
    }
    pub fn from_bool(v: &[bool], shape: &[usize]) -> Self {
        Owned { dtype: DType::Bool, shape: shape.to_vec(), data: v.iter().map(|&b| b as u8).collect() }
    }
    /// Output buffer filled with a poison pattern (NaN for floats) so unwritten elements show.
    pub fn poisoned(shape: &[usize], dtype: DType) -> Self {
        let n: usize = shape.iter().product::<usize>() * dtype.size_in_bytes();
        let byte = if dtype.is_float() { 0xFF } else { 0xA5 };
        Owned { dtype, shape: shape.to_vec(), data: vec![byte; n] }
    }
    pub fn view(&self) -> TensorRef<'_> {
        TensorRef::new(self.dtype, &self.shape, &self.data)
    }
    pub fn view_mut(&mut self) -> TensorMut<'_> {
        TensorMut::new(self.dtype, &self.shape, &mut self.data)
    }
    pub fn to_f32(&self) -> Vec<f32> {
        decode(&self.data, self.dtype)
    }
    pub fn to_i64(&self) -> Vec<i64> {
        match self.dtype {
            DType::I64 => {
                self.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
            }
            DType::I32 => {
                self.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()
            }
            _ => self.data.iter().map(|&b| b as i64).collect(),
        }
    }
}

/// Run one op through the CPU dispatcher into a poisoned output of the inferred shape/dtype.
pub fn run_op(op: &focus_graph::Op, ins: &[&Owned]) -> Result<Owned, focus_kernels::KernelError> {
    let specs: Vec<focus_graph::infer::In> =
        ins.iter().map(|t| focus_graph::infer::In { shape: &t.shape, dtype: t.dtype }).collect();
    let (shape, dtype) = focus_graph::infer::infer(op, &specs).expect("test builds a valid op");
    let mut out = Owned::poisoned(&shape, dtype);
    let views: Vec<TensorRef> = ins.iter().map(|t| t.view()).collect();
    cpu::run(op, &views, &mut out.view_mut())?;
    Ok(out)
}

/// ‖a − b‖₂ / max(‖b‖₂, tiny). NaN anywhere gives infinity.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut num = 0f64;
    let mut den = 0f64;
    for (x, y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            if x.to_bits() != y.to_bits() && !(x.is_infinite() && x == y) {
                return f64::INFINITY;
            }
            continue;
        }
        num += ((*x as f64) - (*y as f64)).powi(2);
        den += (*y as f64).powi(2);
    }
    num.sqrt() / den.sqrt().max(1e-30)
}

/// Tolerance by storage dtype.
pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        DType::BF16 => 1e-2,
        _ => 0.0,
    }
}

#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], dtype: DType, what: &str) {
    let e = rel_l2(got, want);
    assert!(e <= tol(dtype), "{what}: rel-L2 {e:.3e} > tol {:.1e} for {dtype}", tol(dtype));
}

pub const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// A random tensor of `dtype` with values in [lo, hi), plus the values the kernel will see.
pub fn input_in(seed: u64, shape: &[usize], dtype: DType, lo: f32, hi: f32) -> (Owned, Vec<f32>) {
    let n = shape.iter().product();
    let v = rand_vec(&mut rng(seed), n, lo, hi);
    (Owned::from_f32(&v, shape, dtype), round_trip(&v, dtype))
}

/// [`input_in`] on [-1, 1).
pub fn input(seed: u64, shape: &[usize], dtype: DType) -> (Owned, Vec<f32>) {
    input_in(seed, shape, dtype, -1.0, 1.0)
}

/// Compare a kernel output with an f64 reference at the dtype's tolerance (prints the error).
#[track_caller]
pub fn check_f64(got: &Owned, want: &[f64], dtype: DType, what: &str) {
    let want: Vec<f32> = want.iter().map(|&x| x as f32).collect();
    let got = got.to_f32();
    eprintln!("{what} {dtype:?}: rel-L2 {:.2e}", rel_l2(&got, &want));
    assert_close(&got, &want, dtype, what);
}

/// Multi-index of flat index `i` in a row-major `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut ix = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        ix[d] = i % shape[d];
        i /= shape[d];
    }
    ix
}

/// Flat index of multi-index `ix` in a row-major `shape`.
pub fn ravel(ix: &[usize], shape: &[usize]) -> usize {
    ix.iter().zip(shape).fold(0, |acc, (i, n)| acc * n + i)
}
