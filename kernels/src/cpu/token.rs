//! One token per row drawn from sorted candidates (`Op::SampleSorted`). `draw` is the host
//! sampler's walk itself (engine/src/sampling.rs calls it), so a token drawn on the device by
//! token.cu, which repeats it step for step in f64, is the token the host would draw.

use super::common::{f32_in, i64_store};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};

/// How one row is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// 0: greedy.
    pub temperature: f32,
    /// 0: no cut.
    pub top_k: usize,
    /// 1: no nucleus cut.
    pub top_p: f32,
    /// Uniform in [0, 1).
    pub u: f64,
}

/// The position in `values` (descending; `-inf` ends the candidates) of the drawn candidate,
/// None where there is none.
pub fn draw(values: &[f32], p: &Draw) -> Option<usize> {
    let mut n = values.iter().take_while(|v| **v != f32::NEG_INFINITY).count();
    if p.top_k > 0 {
        n = n.min(p.top_k);
    }
    if n == 0 {
        return None;
    }
    if p.temperature == 0.0 || p.top_k == 1 {
        return Some(0);
    }
    let max = values[0];
    let w = |i: usize| (((values[i] - max) / p.temperature) as f64).exp() as f32 as f64;
    let mut total: f64 = (0..n).map(w).sum();
    // Nucleus: the smallest prefix whose probability reaches top_p.
    let mut keep = n;
    if p.top_p < 1.0 {
        let mut acc = 0.0f64;
        for i in 0..n {
            acc += w(i) / total;
            if acc >= p.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        total = (0..keep).map(w).sum();
    }
    let mut r = p.u * total;
    for i in 0..keep {
        r -= w(i);
        if r <= 0.0 {
            return Some(i);
        }
    }
    Some(keep - 1)
}

pub fn sample_sorted(
    values: &TensorRef,
    ids: &TensorRef,
    params: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    let v = f32_in(values);
    let p = f32_in(params);
    let k = values.shape[1];
    let id = |i: usize| i64::from_le_bytes(ids.data[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    let tokens: Vec<i64> = (0..out.numel())
        .map(|row| {
            let q = &p[row * 5..row * 5 + 5];
            let d = Draw {
                temperature: q[0],
                top_k: q[1].max(0.0) as usize,
                top_p: q[2],
                u: q[3] as f64 + q[4] as f64,
            };
            draw(&v[row * k..(row + 1) * k], &d).map_or(-1, |i| id(row * k + i))
        })
        .collect();
    i64_store(out, &tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_cuts_and_the_walk() {
        let v = [2.0f32.ln() + 1.0, 1.0, 0.0, f32::NEG_INFINITY];
        let g = Draw { temperature: 0.0, top_k: 0, top_p: 1.0, u: 0.99 };
        assert_eq!(draw(&v, &g), Some(0));
        assert_eq!(draw(&[f32::NEG_INFINITY; 3], &g), None);
        // T = 1: weights 2, 1, e^-1 → u below 2/(3 + e^-1) picks 0, then 1, then 2.
        let p = |u| Draw { temperature: 1.0, top_k: 0, top_p: 1.0, u };
        let total = 3.0 + (-1f64).exp();
        assert_eq!(draw(&v, &p(1.99 / total)), Some(0));
        assert_eq!(draw(&v, &p(2.01 / total)), Some(1));
        assert_eq!(draw(&v, &p(0.999)), Some(2), "-inf ends the candidates");
        assert_eq!(draw(&v, &Draw { top_k: 2, ..p(0.999) }), Some(1));
        // top_p 0.6: 2/(3 + e^-1) ≈ 0.59 < 0.6, so two candidates stay.
        assert_eq!(draw(&v, &Draw { top_p: 0.6, ..p(0.999) }), Some(1));
        assert_eq!(draw(&v, &Draw { top_p: 0.5, ..p(0.999) }), Some(0));
    }
}
