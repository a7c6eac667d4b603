//! A parity case: one op on inputs drawn fresh from a seeded generator. `focus gpu-check` runs
//! every case on the GPU (through `ops::plan`, exactly as the executor does) and on the CPU
//! kernels, and compares; `cargo test` checks without a GPU that every case plans into valid
//! launches of kernels that exist.

use focus_graph::{DType, Op};

/// How an input's values are drawn.
#[derive(Clone, Debug)]
pub enum Fill {
    /// Uniform floats in `[lo, hi)` (stored in the input's dtype).
    Uniform(f32, f32),
    /// Uniform integers in `[lo, hi]` (any numeric dtype).
    Ints(i64, i64),
    /// Random booleans, true with probability `p`.
    Bools(f32),
    /// Exact bytes (e.g. a sorted position table).
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Input {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub fill: Fill,
}

impl Input {
    pub fn uniform(dtype: DType, shape: &[usize], lo: f32, hi: f32) -> Self {
        Input { dtype, shape: shape.to_vec(), fill: Fill::Uniform(lo, hi) }
    }
    pub fn ints(dtype: DType, shape: &[usize], lo: i64, hi: i64) -> Self {
        Input { dtype, shape: shape.to_vec(), fill: Fill::Ints(lo, hi) }
    }
    pub fn bools(shape: &[usize], p: f32) -> Self {
        Input { dtype: DType::Bool, shape: shape.to_vec(), fill: Fill::Bools(p) }
    }
    pub fn bytes(dtype: DType, shape: &[usize], data: Vec<u8>) -> Self {
        Input { dtype, shape: shape.to_vec(), fill: Fill::Bytes(data) }
    }
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Input>,
    /// Relative-L2 tolerance; None means by output dtype (f32 1e-5, f16 2e-3, bf16 1e-2,
    /// integers and bool exact).
    pub tol: Option<f64>,
    /// A second op the engine fuses onto `op` (`ops::plan_chain`), how many of `inputs` are
    /// `op`'s, and where `op`'s output goes among the second op's inputs (the remaining inputs
    /// fill the other places in order).
    pub then: Option<(Op, usize, usize)>,
}

impl Case {
    pub fn new(name: impl Into<String>, op: Op, inputs: Vec<Input>) -> Self {
        Case { name: name.into(), op, inputs, tol: None, then: None }
    }
    /// `first` on `inputs` then `second` on its output (its first input) and `extra`, as one
    /// fused plan.
    pub fn chain(
        name: impl Into<String>,
        first: Op,
        inputs: Vec<Input>,
        second: Op,
        extra: Vec<Input>,
    ) -> Self {
        Self::chain_at(name, first, inputs, second, extra, 0)
    }
    /// As `chain`, with the first op's output as input `mid_at` of the second.
    pub fn chain_at(
        name: impl Into<String>,
        first: Op,
        inputs: Vec<Input>,
        second: Op,
        extra: Vec<Input>,
        mid_at: usize,
    ) -> Self {
        let n = inputs.len();
        let inputs = inputs.into_iter().chain(extra).collect();
        Case { name: name.into(), op: first, inputs, tol: None, then: Some((second, n, mid_at)) }
    }
    /// How many of `inputs` the first op takes.
    pub fn first_arity(&self) -> usize {
        self.then.as_ref().map_or(self.inputs.len(), |(_, n, _)| *n)
    }
    pub fn tol(mut self, t: f64) -> Self {
        self.tol = Some(t);
        self
    }
}

/// Default tolerance by output dtype.
pub fn default_tol(dt: DType) -> f64 {
    match dt {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        DType::BF16 => 1e-2,
        _ => 0.0,
    }
}

/// SplitMix64: a small seeded generator for case inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Draw an input's little-endian bytes.
pub fn draw(input: &Input, rng: &mut Rng) -> Vec<u8> {
    let n: usize = input.shape.iter().product();
    let dt = input.dtype;
    let floats: Vec<f64> = match &input.fill {
        Fill::Bytes(b) => return b.clone(),
        Fill::Uniform(lo, hi) => (0..n).map(|_| (lo + (hi - lo) * rng.next_f32()) as f64).collect(),
        Fill::Ints(lo, hi) => {
            let span = (hi - lo + 1).max(1) as u64;
            (0..n).map(|_| (lo + (rng.next_u64() % span) as i64) as f64).collect()
        }
        Fill::Bools(p) => (0..n).map(|_| if rng.next_f32() < *p { 1.0 } else { 0.0 }).collect(),
    };
    let mut out = Vec::with_capacity(n * dt.size_in_bytes());
    for v in floats {
        match dt {
            DType::F32 => out.extend((v as f32).to_le_bytes()),
            DType::F16 => out.extend(half::f16::from_f64(v).to_le_bytes()),
            DType::BF16 => out.extend(half::bf16::from_f64(v).to_le_bytes()),
            DType::I32 => out.extend((v as i32).to_le_bytes()),
            DType::I64 => out.extend((v as i64).to_le_bytes()),
            DType::U8 | DType::Bool => out.push(v as u8),
        }
    }
    out
}
