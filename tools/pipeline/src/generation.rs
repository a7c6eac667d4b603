//! The generation runner (spec §1, §8): image-token code grids → ILLUME+'s VQ conditioning
//! (SimVQ maps, the semantic one bicubic-resized onto the pixel grid, concatenated, nearest to
//! the latent grid) → Euler sampling of the SDXL-layout UNet with classifier-free guidance (the
//! unconditional branch sees vq = 0; both run as one batch of two) and optionally FOCUS's mask
//! sequence → SDXL VAE decode → RGB. Three plans, built once per grid: conditioning, one
//! denoising step (every step reuses it: its sigmas and timestep are inputs), decode.

use crate::runtime::Runtime;
use focus_engine::{EngineError, Plan, Tensor};
use focus_graph::{DType, GraphBuilder, GraphError, NodeId, ResizeMode};
use focus_models::euler::{self, EulerConfig, EulerSchedule};
use focus_models::simvq::{self, SimVqConfig};
use focus_models::unet::{self, Conditioning, Contexts, MaskConfig, UnetConfig};
use focus_models::vae::{self, VaeConfig};
use rand::{Rng, SeedableRng};
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GenerationError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("generation: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, GenerationError>;

fn invalid(s: impl Into<String>) -> GenerationError {
    GenerationError::Invalid(s.into())
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    pub semantic: SimVqConfig,
    pub pixel: SimVqConfig,
    pub unet: UnetConfig,
    pub vae: VaeConfig,
    pub euler: EulerConfig,
    pub mask: Option<MaskConfig>,
    /// Tokens of the (zero) text context and width of the pooled text embedding.
    pub context_len: usize,
    pub text_embeds: usize,
    /// Storage dtype of the VAE decoder whatever the pipeline's: f32 by the precision policy
    /// (SDXL's VAE overflows f16); bf16 is faster and about 1e-2 off.
    pub vae_dtype: DType,
}

impl GenerationConfig {
    /// ILLUME+'s decoder: DualViTok codebooks, SDXL UNet + VAE, Euler; FOCUS's mask injection.
    pub fn illume_plus() -> Self {
        GenerationConfig {
            semantic: SimVqConfig::semantic(),
            pixel: SimVqConfig::pixel(),
            unet: UnetConfig::sdxl(),
            vae: VaeConfig::sdxl(),
            euler: EulerConfig::sdxl(),
            mask: Some(MaskConfig { patch: 8, image_scale: 8, mid: true, up: true }),
            context_len: 77,
            text_embeds: 1280,
            vae_dtype: DType::F32,
        }
    }

    /// The test-size parts with FOCUS's mask injection (2×2 mask patches, the mask at the
    /// image resolution of the 2-level VAE): what `focus generate` runs.
    pub fn demo() -> Self {
        GenerationConfig {
            mask: Some(MaskConfig { patch: 2, image_scale: 2, mid: true, up: true }),
            ..Self::tiny()
        }
    }

    /// Every part at test size (the reference's `generation` tiny config, no mask).
    pub fn tiny() -> Self {
        GenerationConfig {
            semantic: SimVqConfig { codebook_size: 64, dim: 32, prefix: "semantic_quantizer.".into() },
            pixel: SimVqConfig { codebook_size: 96, dim: 32, prefix: "pixel_quantizer.".into() },
            unet: UnetConfig::tiny(),
            vae: VaeConfig::tiny(),
            euler: EulerConfig::sdxl(),
            mask: None,
            context_len: 5,
            text_embeds: 16,
            vae_dtype: DType::F32,
        }
    }
}

/// How one image is sampled.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub steps: usize,
    /// Classifier-free guidance scale `s`: `eps = eps_u + s·(eps_c − eps_u)`.
    pub guidance: f32,
    pub seed: u64,
    /// `[B=1, context_len, ctx]` and `[1, text_embeds]`; zeros (ILLUME+) when `None`.
    pub context: Option<Vec<f32>>,
    pub text_embeds: Option<Vec<f32>>,
    /// SDXL's `[0, 0, 0, 0, 0, resolution_index]` (spec §8.2).
    pub time_ids: [f32; 6],
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            steps: 50,
            guidance: 1.5,
            seed: 0,
            context: None,
            text_embeds: None,
            time_ids: [0.0, 0.0, 0.0, 0.0, 0.0, 11.0],
        }
    }
}

/// A generated image and where the time went.
#[derive(Clone, Debug)]
pub struct GeneratedImage {
    pub h: usize,
    pub w: usize,
    /// RGB, row-major HWC.
    pub rgb: Vec<u8>,
    pub condition_ms: f64,
    pub step_ms: Vec<f64>,
    pub decode_ms: f64,
}

pub struct Generator {
    cfg: GenerationConfig,
    dtype: DType,
    grids: [[usize; 2]; 2],
    latent: [usize; 2],
    condition: Plan,
    step: Plan,
    decode: Plan,
    /// Whether the mask state holds a mask (set from the host or handed over on the device).
    mask_set: bool,
}

/// An output of `Plan::run` (every graph here names the outputs it takes).
pub(crate) fn take(mut outputs: std::collections::HashMap<String, Tensor>, name: &str) -> Tensor {
    outputs.remove(name).expect("the graph outputs it")
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn zeros(b: &mut GraphBuilder, dt: DType, shape: Vec<usize>) -> std::result::Result<NodeId, GraphError> {
    let n: usize = shape.iter().product();
    b.constant_bytes(dt, shape, vec![0u8; n * dt.size_in_bytes()])
}

/// Code ids → the VQ map at the latent grid.
fn condition_graph(
    c: &GenerationConfig,
    dt: DType,
    grids: [[usize; 2]; 2],
    latent: [usize; 2],
) -> Result<focus_graph::Graph> {
    let mut b = GraphBuilder::new();
    let [[h1, w1], [h2, w2]] = grids;
    let sem = b.input("sem_ids", DType::I64, [1, h1, w1])?;
    let pix = b.input("pix_ids", DType::I64, [1, h2, w2])?;
    let sem = simvq::lookup(&mut b, &c.semantic, sem)?;
    let pix = simvq::lookup(&mut b, &c.pixel, pix)?;
    let sem =
        if [h1, w1] != [h2, w2] { b.resize(sem, ResizeMode::Bicubic, [h2, w2], false, false)? } else { sem };
    let vq = b.concat(&[sem, pix], 3)?;
    let vq = if [h2, w2] != latent { b.resize(vq, ResizeMode::Nearest, latent, false, false)? } else { vq };
    let vq = b.cast(vq, dt)?;
    b.output("vq", vq)?;
    Ok(b.finish()?)
}

/// The state buffer holding the latents: the step updates it in place and the decode reads it,
/// so sampling copies nothing but each step's scalars (ARCHITECTURE decision 4).
pub const LATENTS: &str = "latents";
/// The state buffer holding the edit mask `[1, H, W, 1]` at the mask injection's image
/// resolution; the segmenter writes its best mask into a buffer of the same name, which the
/// editor hands over on the device (ARCHITECTURE decision 10).
pub const MASK: &str = "mask";

/// One guided Euler step of the latents state, in place.
fn step_graph(c: &GenerationConfig, dt: DType, latent: [usize; 2]) -> Result<focus_graph::Graph> {
    let mut b = GraphBuilder::new();
    let [h, w] = latent;
    let vq_ch = c.semantic.dim + c.pixel.dim;
    let ctx_dim = c.unet.cross_attention_dim;
    let latents = b.state(LATENTS, dt, [1, h, w, 4])?;
    let vq = b.input("vq", dt, [1, h, w, vq_ch])?;
    let ctx = b.input("context", dt, [1, c.context_len, ctx_dim])?;
    let text = b.input("text_embeds", dt, [1, c.text_embeds])?;
    let time_ids = b.input("time_ids", DType::F32, [1, 6])?;
    let [timestep, scale, sigma, sigma_next, guidance] =
        ["timestep", "scale", "sigma", "sigma_next", "guidance"].map(|n| b.input(n, DType::F32, [1]));
    let (timestep, scale, sigma, sigma_next, guidance) = (timestep?, scale?, sigma?, sigma_next?, guidance?);
    // Batch of two: conditional (vq) and unconditional (vq = 0).
    let scaled = euler::scale_input(&mut b, latents, scale)?;
    let no_vq = zeros(&mut b, dt, vec![1, h, w, vq_ch])?;
    let cond = b.concat(&[scaled, vq], 3)?;
    let uncond = b.concat(&[scaled, no_vq], 3)?;
    let sample = b.concat(&[cond, uncond], 0)?;
    let two = |b: &mut GraphBuilder, x: NodeId| b.concat(&[x, x], 0);
    let ctx2 = two(&mut b, ctx)?;
    let text2 = two(&mut b, text)?;
    let ids2 = two(&mut b, time_ids)?;
    let contexts = match &c.mask {
        None => Contexts { down: ctx2, mid: ctx2, up: ctx2 },
        Some(m) => {
            let mask = b.state(MASK, dt, [1, h * m.image_scale, w * m.image_scale, 1])?;
            let seq = unet::mask_sequence(&mut b, &c.unet, m, mask, latent)?;
            let seq2 = two(&mut b, seq)?;
            let joined = b.concat(&[ctx2, seq2], 1)?;
            Contexts {
                down: ctx2,
                mid: if m.mid { joined } else { ctx2 },
                up: if m.up { joined } else { ctx2 },
            }
        }
    };
    let cond = Conditioning { timestep, text_embeds: text2, time_ids: ids2, contexts };
    let (eps, _) = unet::unet(&mut b, &c.unet, sample, &cond)?;
    let parts = b.split(eps, 0, &[1, 1])?;
    let (eps_c, eps_u) = (parts[0], parts[1]);
    let g = b.cast(guidance, dt)?;
    let d = b.sub(eps_c, eps_u)?;
    let d = b.mul(d, g)?;
    let eps = b.add(eps_u, d)?;
    let next = euler::step(&mut b, latents, eps, (sigma, sigma_next))?;
    let zero = b.constant_i32([1], &[0])?;
    let next = b.write_slice(latents, next, zero, 0)?;
    b.output(LATENTS, next)?;
    Ok(b.finish()?)
}

/// The latents state → RGB in [0, 1] (`(x / 2 + 0.5)` clamped, as diffusers' image processor).
fn decode_graph(c: &GenerationConfig, dt: DType, latent: [usize; 2]) -> Result<focus_graph::Graph> {
    let mut b = GraphBuilder::new();
    let latents = b.state(LATENTS, dt, [1, latent[0], latent[1], 4])?;
    let latents = if c.vae.dtype == dt { latents } else { b.cast(latents, c.vae.dtype)? };
    let (image, _) = vae::decode(&mut b, &c.vae, latents)?;
    let image = b.cast(image, DType::F32)?;
    let half = b.scalar(DType::F32, 0.5)?;
    let x = b.mul(image, half)?;
    let x = b.add(x, half)?;
    let zero = b.scalar(DType::F32, 0.0)?;
    let one = b.scalar(DType::F32, 1.0)?;
    let x = b.binary(focus_graph::BinaryOp::Max, x, zero)?;
    let x = b.binary(focus_graph::BinaryOp::Min, x, one)?;
    b.output("rgb", x)?;
    Ok(b.finish()?)
}

/// The conditioning, step and decode graphs (what `Generator::new` compiles; e.g. to draw
/// random weights for every parameter they read).
pub fn graphs(
    cfg: &GenerationConfig,
    dtype: DType,
    grids: [[usize; 2]; 2],
    latent: [usize; 2],
) -> Result<[focus_graph::Graph; 3]> {
    if grids.iter().chain([&latent]).any(|g| g[0] == 0 || g[1] == 0) {
        return Err(invalid(format!("empty grid in {grids:?} / latent {latent:?}")));
    }
    if cfg.unet.in_channels != 4 + cfg.semantic.dim + cfg.pixel.dim {
        return Err(invalid(format!(
            "UNet input {} channels != 4 latent + {} + {} code channels",
            cfg.unet.in_channels, cfg.semantic.dim, cfg.pixel.dim
        )));
    }
    cfg.unet.validate().map_err(invalid)?;
    cfg.vae.validate().map_err(invalid)?;
    let mut c = cfg.clone();
    c.unet.dtype = dtype;
    c.vae.dtype = cfg.vae_dtype;
    Ok([
        condition_graph(&c, dtype, grids, latent)?,
        step_graph(&c, dtype, latent)?,
        decode_graph(&c, dtype, latent)?,
    ])
}

impl Generator {
    /// Plans for code grids `grids` = [semantic (h1, w1), pixel (h2, w2)] decoding at `latent`.
    pub fn new(
        cfg: GenerationConfig,
        rt: &Runtime,
        dtype: DType,
        grids: [[usize; 2]; 2],
        latent: [usize; 2],
    ) -> Result<Self> {
        let [cg, sg, dg] = graphs(&cfg, dtype, grids, latent)?;
        let (condition, mut step, decode) = (rt.compile(&cg)?, rt.compile(&sg)?, rt.compile(&dg)?);
        // A step's result stays in the latents state: nothing comes back to the host. On a GPU
        // every step replays one CUDA graph.
        step.copy_outputs(Some(&[]))?;
        step.capture_graph()?;
        Ok(Generator { cfg, dtype, grids, latent, condition, step, decode, mask_set: false })
    }

    /// Set the edit mask from the host: `H × W` values in [0, 1] at the mask injection's
    /// image resolution.
    pub fn set_mask(&mut self, mask: &[f32]) -> Result<()> {
        let m = self
            .cfg
            .mask
            .as_ref()
            .ok_or_else(|| invalid("a mask was given but the UNet has no mask injection"))?;
        let (mh, mw) = (self.latent[0] * m.image_scale, self.latent[1] * m.image_scale);
        if mask.len() != mh * mw || mask.iter().any(|x| !(0.0..=1.0).contains(x)) {
            return Err(invalid(format!("the mask must be {mh}x{mw} values in [0, 1]")));
        }
        self.step.set_state(MASK, &Tensor::from_f32(self.dtype, [1, mh, mw, 1], mask)?.view())?;
        self.mask_set = true;
        Ok(())
    }

    /// Take the edit mask from `plan`'s state of the same name (e.g. the segmenter's best
    /// mask), copied on the device: no host round trip, and the step stays planned.
    pub fn take_mask(&mut self, plan: &Plan) -> Result<()> {
        if self.cfg.mask.is_none() {
            return Err(invalid("a mask was given but the UNet has no mask injection"));
        }
        self.step.copy_state_from(plan, MASK)?;
        self.mask_set = true;
        Ok(())
    }

    /// The conditioning, step and decode plans.
    pub fn plans(&self) -> [&Plan; 3] {
        [&self.condition, &self.step, &self.decode]
    }

    /// The VQ map `[1, h, w, 64]` (latent grid) of the code grids.
    pub fn condition(&mut self, sem: &[usize], pix: &[usize]) -> Result<Tensor> {
        let feed = |ids: &[usize], [h, w]: [usize; 2], c: &SimVqConfig, what: &str| -> Result<Tensor> {
            if ids.len() != h * w {
                return Err(invalid(format!("{} {what} codes for a {h}x{w} grid", ids.len())));
            }
            if let Some(bad) = ids.iter().find(|&&i| i >= c.codebook_size) {
                return Err(invalid(format!(
                    "{what} code {bad} outside the codebook of {}",
                    c.codebook_size
                )));
            }
            let v: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
            Ok(Tensor::from_i64(DType::I64, [1, h, w], &v)?)
        };
        let s = feed(sem, self.grids[0], &self.cfg.semantic, "semantic")?;
        let p = feed(pix, self.grids[1], &self.cfg.pixel, "pixel")?;
        Ok(take(self.condition.run(&[("sem_ids", &s), ("pix_ids", &p)])?, "vq"))
    }

    /// Step `i` of `schedule` on `latents` (the mask, when configured, set before).
    pub fn step(
        &mut self,
        latents: &Tensor,
        vq: &Tensor,
        (schedule, i): (&EulerSchedule, usize),
        opts: &GenerateOptions,
    ) -> Result<Tensor> {
        self.set_run_inputs(vq, opts)?;
        self.step.set_state(LATENTS, &latents.view())?;
        self.advance((schedule, i))?;
        let t = self.step.state(LATENTS)?;
        Ok(Tensor::from_bytes(t.dtype, t.shape.to_vec(), t.data)?)
    }

    /// Set the step plan's inputs that stay fixed over a sampling run (they stay set).
    fn set_run_inputs(&mut self, vq: &Tensor, opts: &GenerateOptions) -> Result<()> {
        let dt = self.dtype;
        let (ctx_shape, text_n) =
            ([1, self.cfg.context_len, self.cfg.unet.cross_attention_dim], self.cfg.text_embeds);
        let given = |v: &Option<Vec<f32>>, n: usize, what: &str| -> Result<Vec<f32>> {
            match v {
                None => Ok(vec![0.0; n]),
                Some(v) if v.len() == n => Ok(v.clone()),
                Some(v) => Err(invalid(format!("{what} has {} values, expected {n}", v.len()))),
            }
        };
        let ctx =
            Tensor::from_f32(dt, ctx_shape, &given(&opts.context, ctx_shape.iter().product(), "context")?)?;
        let text = Tensor::from_f32(dt, [1, text_n], &given(&opts.text_embeds, text_n, "text embedding")?)?;
        let ids = Tensor::from_f32(DType::F32, [1, 6], &opts.time_ids)?;
        let guidance = Tensor::from_f32(DType::F32, [1], &[opts.guidance])?;
        for (name, t) in [
            ("vq", vq),
            ("context", &ctx),
            ("text_embeds", &text),
            ("time_ids", &ids),
            ("guidance", &guidance),
        ] {
            self.step.set_input(name, &t.view())?;
        }
        if self.cfg.mask.is_some() && !self.mask_set {
            return Err(invalid("the mask-conditioned UNet needs a mask"));
        }
        Ok(())
    }

    /// Step `i` of `schedule` on the latents state, the run's other inputs already set: only
    /// the step's four scalars go to the device.
    fn advance(&mut self, (schedule, i): (&EulerSchedule, usize)) -> Result<()> {
        let scalar = |v: f32| Tensor::from_f32(DType::F32, [1], &[v]);
        let (t, scale) = (scalar(schedule.timesteps[i])?, scalar(schedule.input_scale(i))?);
        let (sigma, next) = (scalar(schedule.sigmas[i])?, scalar(schedule.sigmas[i + 1])?);
        for (name, v) in [("timestep", &t), ("scale", &scale), ("sigma", &sigma), ("sigma_next", &next)] {
            self.step.set_input(name, &v.view())?;
        }
        Ok(self.step.execute()?)
    }

    /// Latents → RGB in [0, 1], `[1, H, W, 3]` f32.
    pub fn decode(&mut self, latents: &Tensor) -> Result<Tensor> {
        self.decode.set_state(LATENTS, &latents.view())?;
        Ok(take(self.decode.run(&[])?, "rgb"))
    }

    /// Sample an image for the code grids from seeded Gaussian noise.
    pub fn generate(
        &mut self,
        sem: &[usize],
        pix: &[usize],
        mask: Option<&[f32]>,
        opts: &GenerateOptions,
    ) -> Result<GeneratedImage> {
        if !opts.guidance.is_finite() {
            return Err(invalid(format!("guidance {} is not finite", opts.guidance)));
        }
        let schedule = EulerSchedule::new(&self.cfg.euler, opts.steps).map_err(invalid)?;
        if let Some(m) = mask {
            self.set_mask(m)?;
        }
        let t = Instant::now();
        let vq = self.condition(sem, pix)?;
        let condition_ms = ms(t);
        self.set_run_inputs(&vq, opts)?;
        let [h, w] = self.latent;
        // Gaussian noise (Box-Muller) times the schedule's initial sigma.
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let noise: Vec<f32> = (0..h * w * 4)
            .map(|_| {
                let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(f64::MIN_POSITIVE), rng.gen());
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
                    * schedule.init_noise_sigma
            })
            .collect();
        self.step.set_state(LATENTS, &Tensor::from_f32(self.dtype, [1, h, w, 4], &noise)?.view())?;
        let mut step_ms = Vec::with_capacity(opts.steps);
        for i in 0..opts.steps {
            let t = Instant::now();
            self.advance((&schedule, i))?;
            // Per-step timings wait for the device (a CUDA run is asynchronous).
            self.step.wait()?;
            step_ms.push(ms(t));
        }
        let t = Instant::now();
        // The latents go to the decode plan on the device.
        self.decode.copy_state_from(&self.step, LATENTS)?;
        let rgb = take(self.decode.run(&[])?, "rgb");
        let decode_ms = ms(t);
        let dims = rgb.shape().dims().to_vec();
        let rgb: Vec<u8> = rgb.to_f32().iter().map(|v| (v * 255.0).round() as u8).collect();
        Ok(GeneratedImage { h: dims[1], w: dims[2], rgb, condition_ms, step_ms, decode_ms })
    }
}
