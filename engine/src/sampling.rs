//! Token sampling on host logits: greedy, temperature, top-k, top-p (nucleus), seeded, with a
//! per-step constraint hook (allowed-token sets) for forced grammars such as mask tokens and
//! visual-token grids.

use rand::{rngs::StdRng, Rng, SeedableRng};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum SampleError {
    #[error("logits are empty")]
    Empty,
    #[error("the constraint allows no token in the vocabulary of {0}")]
    NothingAllowed(usize),
    #[error("logits contain NaN")]
    NaN,
    #[error("invalid sampling parameter: {0}")]
    Param(String),
}

/// Which tokens a step may produce.
#[derive(Clone, Debug, PartialEq)]
pub enum Allowed {
    All,
    /// A contiguous id range `[start, end)` (e.g. one visual-token level).
    Range(usize, usize),
    /// An explicit set (e.g. `<eol>` or the end-of-image token).
    Set(Vec<usize>),
}

impl Allowed {
    fn contains(&self, id: usize) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Range(a, b) => (*a..*b).contains(&id),
            Allowed::Set(s) => s.contains(&id),
        }
    }
}

/// Called before each step with the tokens generated so far.
pub trait Constraint {
    fn allowed(&mut self, generated: &[usize]) -> Allowed;
}

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    /// 1.0 means no nucleus cut.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    scratch: Vec<(f32, usize)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, SampleError> {
        if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
            return Err(SampleError::Param(format!("temperature {} must be >= 0", params.temperature)));
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(SampleError::Param(format!("top_p {} must be in (0, 1]", params.top_p)));
        }
        let rng = StdRng::seed_from_u64(params.seed);
        Ok(Sampler { params, rng, scratch: Vec::new() })
    }

    /// Pick the next token from `logits` among the `allowed` ids.
    pub fn sample(&mut self, logits: &[f32], allowed: &Allowed) -> Result<usize, SampleError> {
        if logits.is_empty() {
            return Err(SampleError::Empty);
        }
        if logits.iter().any(|x| x.is_nan()) {
            return Err(SampleError::NaN);
        }
        self.scratch.clear();
        self.scratch
            .extend(logits.iter().enumerate().filter(|(i, _)| allowed.contains(*i)).map(|(i, &l)| (l, i)));
        if self.scratch.is_empty() {
            return Err(SampleError::NothingAllowed(logits.len()));
        }
        // Descending by logit, ties to the lower id: greedy is then the first entry.
        self.scratch.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let p = &self.params;
        if p.temperature == 0.0 || p.top_k == 1 {
            return Ok(self.scratch[0].1);
        }
        if p.top_k > 0 {
            self.scratch.truncate(p.top_k);
        }
        let max = self.scratch[0].0;
        let mut total = 0.0f64;
        for e in &mut self.scratch {
            e.0 = (((e.0 - max) / p.temperature) as f64).exp() as f32;
            total += e.0 as f64;
        }
        // Nucleus: the smallest prefix whose probability reaches top_p.
        if p.top_p < 1.0 {
            let mut acc = 0.0f64;
            let mut keep = self.scratch.len();
            for (i, e) in self.scratch.iter().enumerate() {
                acc += e.0 as f64 / total;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            self.scratch.truncate(keep);
            total = self.scratch.iter().map(|e| e.0 as f64).sum();
        }
        let mut r = self.rng.gen::<f64>() * total;
        for e in &self.scratch {
            r -= e.0 as f64;
            if r <= 0.0 {
                return Ok(e.1);
            }
        }
        Ok(self.scratch.last().unwrap().1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Sampler {
        Sampler::new(SamplingParams { temperature, top_k, top_p, seed }).unwrap()
    }

    #[test]
    fn greedy_and_constraints() {
        let l = [0.1, 3.0, 3.0, -1.0, 2.5];
        let mut s = sampler(0.0, 0, 1.0, 0);
        assert_eq!(s.sample(&l, &Allowed::All), Ok(1), "ties go to the lower id");
        assert_eq!(s.sample(&l, &Allowed::Range(3, 5)), Ok(4));
        assert_eq!(s.sample(&l, &Allowed::Set(vec![0, 3])), Ok(0));
        assert_eq!(s.sample(&l, &Allowed::Range(7, 9)), Err(SampleError::NothingAllowed(5)));
        assert_eq!(s.sample(&[], &Allowed::All), Err(SampleError::Empty));
        assert_eq!(s.sample(&[f32::NAN], &Allowed::All), Err(SampleError::NaN));
        assert!(Sampler::new(SamplingParams { top_p: 0.0, ..Default::default() }).is_err());
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        // p = softmax([ln 1, ln 2, ln 7]) = [0.1, 0.2, 0.7].
        let l = [1f32.ln(), 2f32.ln(), 7f32.ln()];
        let mut s = sampler(1.0, 0, 1.0, 42);
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[s.sample(&l, &Allowed::All).unwrap()] += 1;
        }
        for (c, p) in counts.iter().zip([0.1, 0.2, 0.7]) {
            assert!((*c as f64 / 20000.0 - p).abs() < 0.015, "{counts:?}");
        }
        // top-k 2 keeps ids 2 and 1 with renormalised p = [2/9, 7/9].
        let mut s = sampler(1.0, 2, 1.0, 7);
        let mut c0 = 0;
        for _ in 0..5000 {
            let t = s.sample(&l, &Allowed::All).unwrap();
            assert_ne!(t, 0);
            c0 += (t == 1) as usize;
        }
        assert!((c0 as f64 / 5000.0 - 2.0 / 9.0).abs() < 0.02);
        // top-p 0.6 keeps only the 0.7 token.
        let mut s = sampler(1.0, 0, 0.6, 3);
        assert!((0..100).all(|_| s.sample(&l, &Allowed::All) == Ok(2)));
    }

    #[test]
    fn same_seed_same_tokens() {
        let l: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = sampler(0.8, 20, 0.9, seed);
            (0..30).map(|_| s.sample(&l, &Allowed::All).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
