//! Token sampling on host logits: greedy, temperature, top-k, top-p (nucleus), seeded, with a
//! per-step constraint hook (allowed-token sets) for forced grammars such as mask tokens and
//! visual-token grids.

use focus_kernels::cpu::token::{self, Draw};
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
    #[cfg(test)]
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
    values: Vec<f32>,
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
        Ok(Sampler { params, rng, scratch: Vec::new(), values: Vec::new() })
    }

    /// Pick the next token from `logits` among the `allowed` ids. Greedy is one pass (argmax,
    /// ties to the lower id); top-k selects its k candidates in linear time before sorting
    /// them, so a 151k vocabulary costs a pass, not a sort, per token.
    pub fn sample(&mut self, logits: &[f32], allowed: &Allowed) -> Result<usize, SampleError> {
        if logits.is_empty() {
            return Err(SampleError::Empty);
        }
        if logits.iter().any(|x| x.is_nan()) {
            return Err(SampleError::NaN);
        }
        let n = logits.len();
        // Allowed ids: a contiguous range, or an explicit ascending list.
        let (range, list) = match allowed {
            Allowed::All => ((0, n), None),
            Allowed::Range(a, b) => (((*a).min(n), (*b).min(n).max((*a).min(n))), None),
            Allowed::Set(set) => {
                let mut v: Vec<usize> = set.iter().copied().filter(|&i| i < n).collect();
                v.sort_unstable();
                v.dedup();
                ((0, 0), Some(v))
            }
        };
        let p = &self.params;
        if p.temperature == 0.0 || p.top_k == 1 {
            // Only a strictly greater logit moves the pick, so ties stay at the lowest id.
            let best = match &list {
                None => {
                    let (lo, hi) = range;
                    let mut best = (lo < hi).then_some(lo);
                    let mut max = f32::NEG_INFINITY;
                    for (i, &x) in logits[lo..hi].iter().enumerate() {
                        if x > max {
                            (max, best) = (x, Some(lo + i));
                        }
                    }
                    best
                }
                Some(v) => v.iter().copied().fold(None, |b: Option<usize>, i| match b {
                    Some(b) if logits[b] >= logits[i] => Some(b),
                    _ => Some(i),
                }),
            };
            return best.ok_or(SampleError::NothingAllowed(n));
        }
        self.scratch.clear();
        match &list {
            None => self.scratch.extend((range.0..range.1).map(|i| (logits[i], i))),
            Some(v) => self.scratch.extend(v.iter().map(|&i| (logits[i], i))),
        }
        if self.scratch.is_empty() {
            return Err(SampleError::NothingAllowed(n));
        }
        // Descending by logit, ties to the lower id.
        let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if p.top_k > 0 && p.top_k < self.scratch.len() {
            self.scratch.select_nth_unstable_by(p.top_k - 1, order);
            self.scratch.truncate(p.top_k);
        }
        self.scratch.sort_by(order);
        self.values.clear();
        self.values.extend(self.scratch.iter().map(|e| e.0));
        let d = Draw { temperature: p.temperature, top_k: p.top_k, top_p: p.top_p, u: self.rng.gen::<f64>() };
        token::draw(&self.values, &d).map(|i| self.scratch[i].1).ok_or(SampleError::NothingAllowed(n))
    }

    /// The next uniform draw of this sampler's stream, for a step drawn on the device
    /// (`Op::SampleSorted` with the same parameters draws the token `sample` would).
    pub fn next_uniform(&mut self) -> f64 {
        self.rng.gen::<f64>()
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
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

    /// The sampler as first written: every allowed id sorted, then the same walk.
    fn naive(p: &SamplingParams, rng: &mut StdRng, logits: &[f32], allowed: &Allowed) -> usize {
        let mut c: Vec<(f32, usize)> =
            logits.iter().enumerate().filter(|(i, _)| allowed.contains(*i)).map(|(i, &l)| (l, i)).collect();
        c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if p.temperature == 0.0 || p.top_k == 1 {
            return c[0].1;
        }
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        let max = c[0].0;
        let w: Vec<f64> =
            c.iter().map(|e| (((e.0 - max) / p.temperature) as f64).exp() as f32 as f64).collect();
        let mut total: f64 = w.iter().sum();
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, x) in w.iter().enumerate() {
                acc += x / total;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            total = w[..keep].iter().sum();
        }
        let mut r = rng.gen::<f64>() * total;
        for (e, x) in c.iter().zip(&w).take(keep) {
            r -= x;
            if r <= 0.0 {
                return e.1;
            }
        }
        c[keep - 1].1
    }

    #[test]
    fn linear_time_selection_matches_sorting_everything() {
        let mut rng = StdRng::seed_from_u64(11);
        for case in 0..300 {
            let v = [1, 2, 7, 100, 1000][case % 5];
            // Few distinct values, so ties are common.
            let logits: Vec<f32> = (0..v).map(|_| rng.gen_range(0..12) as f32 * 0.5).collect();
            let p = SamplingParams {
                temperature: [0.0, 0.7, 1.0, 2.0][case % 4],
                top_k: [0, 1, 3, 50, 5000][(case / 5) % 5],
                top_p: [1.0, 0.9, 0.5][case % 3],
                seed: case as u64,
            };
            let allowed = match case % 3 {
                0 => Allowed::All,
                1 => Allowed::Range(v / 3, v),
                _ => Allowed::Set(vec![v - 1, 0, v / 2, v - 1]),
            };
            let mut s = Sampler::new(p.clone()).unwrap();
            let mut rng2 = StdRng::seed_from_u64(p.seed);
            for _ in 0..5 {
                let got = s.sample(&logits, &allowed).unwrap();
                assert_eq!(got, naive(&p, &mut rng2, &logits, &allowed), "case {case}: {p:?} {allowed:?}");
            }
        }
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
