//! The Euler discrete scheduler (spec §8.5; diffusers `EulerDiscreteScheduler` with SDXL's
//! config): the sigma table on the host in f32 as diffusers computes it, and the per-step
//! arithmetic (input scaling, the Euler update) as graph ops whose sigmas are `[1]` f32 inputs,
//! so one plan (one captured CUDA graph) serves every step.

use focus_graph::{DType, GraphBuilder, NodeId, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct EulerConfig {
    pub beta_start: f64,
    pub beta_end: f64,
    pub num_train_timesteps: usize,
    pub steps_offset: usize,
}

impl EulerConfig {
    /// SDXL: scaled-linear betas 0.00085..0.012 over 1000 steps, "leading" spacing, offset 1,
    /// epsilon prediction, linear sigma interpolation.
    pub fn sdxl() -> Self {
        EulerConfig { beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000, steps_offset: 1 }
    }
}

/// The schedule of one sampling run.
#[derive(Clone, Debug, PartialEq)]
pub struct EulerSchedule {
    /// Model timesteps, descending.
    pub timesteps: Vec<f32>,
    /// σ per step plus the final 0.
    pub sigmas: Vec<f32>,
    /// σ of the initial noise: √(σ_max² + 1) ("leading" spacing).
    pub init_noise_sigma: f32,
}

impl EulerSchedule {
    pub fn new(c: &EulerConfig, steps: usize) -> std::result::Result<Self, String> {
        let n = c.num_train_timesteps;
        if steps == 0 || steps > n || n < 2 {
            return Err(format!("{steps} inference steps over {n} training steps"));
        }
        // betas = linspace(√start, √end, n)² and ᾱ = cumprod(1 - β), in f32 like diffusers.
        let (a, b) = (c.beta_start.sqrt() as f32, c.beta_end.sqrt() as f32);
        let step = (b - a) / (n - 1) as f32;
        let mut cumprod = 1f32;
        let table: Vec<f32> = (0..n)
            .map(|i| {
                // torch.linspace fills the second half from the end, keeping both ends exact.
                let v = if i < n / 2 { a + step * i as f32 } else { b - step * (n - 1 - i) as f32 };
                cumprod *= 1.0 - v * v;
                ((1.0 - cumprod) / cumprod).sqrt()
            })
            .collect();
        // "leading" spacing: t = round(k · (n / steps)) + offset, descending; σ interpolated at
        // integer t is the table entry.
        let ratio = n / steps;
        let mut timesteps = Vec::with_capacity(steps);
        let mut sigmas = Vec::with_capacity(steps + 1);
        for k in (0..steps).rev() {
            let t = k * ratio + c.steps_offset;
            let s = *table.get(t).ok_or_else(|| format!("timestep {t} beyond the {n}-step table"))?;
            timesteps.push(t as f32);
            sigmas.push(s);
        }
        sigmas.push(0.0);
        let max = sigmas.iter().copied().fold(0f32, f32::max);
        Ok(EulerSchedule { timesteps, sigmas, init_noise_sigma: (max * max + 1.0).sqrt() })
    }

    /// The divisor `scale_model_input` applies at step `i`: √(σᵢ² + 1).
    pub fn input_scale(&self, i: usize) -> f32 {
        let s = self.sigmas[i];
        (s * s + 1.0).sqrt()
    }
}

/// `sample / scale` (`scale [1]` f32 from `EulerSchedule::input_scale`).
pub fn scale_input(b: &mut GraphBuilder, sample: NodeId, scale: NodeId) -> Result<NodeId> {
    let s = cast_like(b, scale, sample)?;
    b.div(sample, s)
}

/// One Euler step of an epsilon prediction (no churn): `x₀ = x - σ·ε`, `d = (x - x₀)/σ`,
/// `x' = x + d·(σ_next - σ)` in diffusers' order (`sigma`, `sigma_next` are `[1]` f32).
pub fn step(
    b: &mut GraphBuilder,
    sample: NodeId,
    eps: NodeId,
    (sigma, sigma_next): (NodeId, NodeId),
) -> Result<NodeId> {
    let dt_out = b.dtype(eps);
    // diffusers upcasts the sample to f32 for the update.
    let x = b.cast(sample, DType::F32)?;
    let e = b.cast(eps, DType::F32)?;
    let se = b.mul(sigma, e)?;
    let x0 = b.sub(x, se)?;
    let diff = b.sub(x, x0)?;
    let d = b.div(diff, sigma)?;
    let dt = b.sub(sigma_next, sigma)?;
    let dd = b.mul(d, dt)?;
    let next = b.add(x, dd)?;
    b.cast(next, dt_out)
}

fn cast_like(b: &mut GraphBuilder, x: NodeId, like: NodeId) -> Result<NodeId> {
    let dt = b.dtype(like);
    if b.dtype(x) == dt {
        Ok(x)
    } else {
        b.cast(x, dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdxl_schedule_has_leading_spacing_and_decreasing_sigmas() {
        let s = EulerSchedule::new(&EulerConfig::sdxl(), 50).unwrap();
        // "leading": 1000 / 50 = 20 apart, offset 1, descending.
        let want: Vec<f32> = (0..50).rev().map(|k| (20 * k + 1) as f32).collect();
        assert_eq!(s.timesteps, want);
        assert_eq!(s.sigmas.len(), 51);
        assert_eq!(*s.sigmas.last().unwrap(), 0.0);
        assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]), "{:?}", s.sigmas);
        assert_eq!(s.init_noise_sigma, (s.sigmas[0] * s.sigmas[0] + 1.0).sqrt());
        assert!(EulerSchedule::new(&EulerConfig::sdxl(), 0).is_err());
        assert!(EulerSchedule::new(&EulerConfig::sdxl(), 1001).is_err());
    }
}
