//! Parity with the PyTorch reference: run a fixture written by `tools/torch_ref` (weights under
//! checkpoint names, `input.*`, `output.*`, metadata `component` and `config`) on the engine and
//! compare every output by relative L2 error.

use focus_engine::weights::WeightStore;
use focus_engine::{compile, Device, Plan, Tensor, WeightSource};
use focus_graph::{DType, NodeId};
use focus_models::convnext::{self, ConvNextConfig, ConvNextNaming};
use focus_models::euler::{self, EulerConfig, EulerSchedule};
use focus_models::fusion::{self, AdapterConfig, FusionConfig};
use focus_models::kandinsky::{self, KandinskyVqConfig};
use focus_models::mask2former::{self, PixelDecoderConfig, TransformerDecoderConfig};
use focus_models::movq::{self, MovqConfig};
use focus_models::perception::{self, PerceptionConfig, PerceptionShape};
use focus_models::qwen2::{self, Qwen2Config, StepOptions};
use focus_models::qwen_vit::{self, QwenVitConfig, VitVariant};
use focus_models::semantic::{self, SemanticDecoderConfig};
use focus_models::simvq::{self, SimVqConfig};
use focus_models::unet::{self, Conditioning, Contexts, MaskConfig, UnetConfig};
use focus_models::vae::{self, VaeConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub name: String,
    pub numel: usize,
    pub rel_l2: f64,
    pub max_abs: f64,
    pub pass: bool,
}

#[derive(Clone, Debug)]
pub struct ParityReport {
    pub component: String,
    pub config: String,
    pub tolerance: f64,
    pub comparisons: Vec<Comparison>,
}

impl ParityReport {
    pub fn passed(&self) -> bool {
        !self.comparisons.is_empty() && self.comparisons.iter().all(|c| c.pass)
    }
}

/// ‖a − b‖ / ‖b‖ and max |a − b| (non-finite values fail).
pub fn compare(name: &str, got: &[f32], want: &[f32], tol: f64) -> Comparison {
    let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
    let mut finite = got.len() == want.len();
    for (g, w) in got.iter().zip(want) {
        if !g.is_finite() || !w.is_finite() {
            finite = false;
        }
        let d = (*g as f64 - *w as f64).abs();
        num += d * d;
        den += (*w as f64).powi(2);
        max_abs = max_abs.max(d);
    }
    let rel_l2 = if finite { num.sqrt() / den.sqrt().max(1e-30) } else { f64::INFINITY };
    Comparison { name: name.into(), numel: want.len(), rel_l2, max_abs, pass: rel_l2 <= tol }
}

/// A fixture file opened through the memory-mapped weight store.
pub struct Fixture {
    pub store: Arc<WeightStore>,
    /// Compute/storage dtype of the engine graphs (weights are converted on load).
    pub dtype: DType,
    /// Where the engine graphs run.
    pub device: Device,
    pub component: String,
    pub config: Value,
    pub config_text: String,
}

impl Fixture {
    pub fn open(path: &Path) -> Result<Self, String> {
        let store = WeightStore::open(path).map_err(|e| e.to_string())?;
        let meta: &BTreeMap<String, String> = store.metadata();
        let component = meta.get("component").cloned().ok_or("fixture metadata has no 'component'")?;
        let config_text = meta.get("config").cloned().ok_or("fixture metadata has no 'config'")?;
        let config =
            serde_json::from_str(&config_text).map_err(|e| format!("fixture config is not JSON: {e}"))?;
        Ok(Fixture {
            store: Arc::new(store),
            dtype: DType::F32,
            device: Device::Cpu,
            component,
            config,
            config_text,
        })
    }

    /// (shape, values as f32) of a tensor.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let (dt, shape, bytes) =
            self.store.tensor(name).ok_or_else(|| format!("fixture has no tensor '{name}'"))?;
        let t = Tensor::from_bytes(dt, shape.to_vec(), bytes).map_err(|e| e.to_string())?;
        Ok((shape.to_vec(), t.to_f32()))
    }

    pub fn i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), String> {
        let (dt, shape, bytes) =
            self.store.tensor(name).ok_or_else(|| format!("fixture has no tensor '{name}'"))?;
        let t = Tensor::from_bytes(dt, shape.to_vec(), bytes).map_err(|e| e.to_string())?;
        Ok((shape.to_vec(), t.to_i64()))
    }

    fn plan(&self, g: &focus_graph::Graph) -> Result<Plan, String> {
        let src: Arc<dyn WeightSource> = self.store.clone();
        compile(g, Some(src), self.device).map_err(|e| e.to_string())
    }
}

fn field<T: serde::de::DeserializeOwned>(cfg: &Value, key: &str) -> Result<T, String> {
    let v = cfg.get(key).ok_or_else(|| format!("config has no '{key}'"))?;
    serde_json::from_value(v.clone()).map_err(|e| format!("config '{key}': {e}"))
}

/// NCHW → NHWC for one image batch.
fn nchw_to_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    out[((b * h + y) * w + xx) * c + ch] = x[((b * c + ch) * h + y) * w + xx];
                }
            }
        }
    }
    out
}

fn nhwc_to_nchw(x: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for b in 0..n {
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + xx] = x[((b * h + y) * w + xx) * c + ch];
                }
            }
        }
    }
    out
}

fn output_f32(plan: &Plan, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let v = plan.output(name).map_err(|e| e.to_string())?;
    Ok((v.shape.to_vec(), focus_kernels::cpu::common::f32_in(&v).into_owned()))
}

fn convnext_cfg(cfg: &Value, naming: ConvNextNaming, dtype: DType) -> Result<ConvNextConfig, String> {
    Ok(ConvNextConfig {
        naming,
        depths: field(cfg, "depths")?,
        dims: field(cfg, "dims")?,
        layer_scale: cfg.get("ls_init_value").is_some_and(|v| !v.is_null()),
        dtype,
        ..ConvNextConfig::large()
    })
}

fn run_convnext(fx: &Fixture, tol: f64, naming: ConvNextNaming) -> Result<Vec<Comparison>, String> {
    let c = convnext_cfg(&fx.config, naming, fx.dtype)?;
    let (shape, img) = fx.f32("input.image")?;
    let [n, ch, h, w] = shape[..] else { return Err(format!("input.image must be NCHW, got {shape:?}")) };
    let g = convnext::graph(&ConvNextConfig { in_chans: ch, ..c }, n, h, w).map_err(|e| e.to_string())?;
    let mut plan = fx.plan(&g)?;
    let x = Tensor::from_f32(fx.dtype, [n, h, w, ch], &nchw_to_nhwc(&img, n, ch, h, w))
        .map_err(|e| e.to_string())?;
    plan.run(&[("pixel_values", &x)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for k in ["res2", "res3", "res4", "res5"] {
        let (s, got) = output_f32(&plan, k)?;
        let (_, want) = fx.f32(&format!("output.{k}"))?;
        out.push(compare(k, &nhwc_to_nchw(&got, s[0], s[1], s[2], s[3]), &want, tol));
    }
    Ok(out)
}

fn movq_cfg(cfg: &Value, dtype: DType) -> Result<MovqConfig, String> {
    let c = MovqConfig {
        ch: field(cfg, "ch")?,
        ch_mult: field(cfg, "ch_mult")?,
        num_res_blocks: field(cfg, "num_res_blocks")?,
        attn_levels: field(cfg, "attn_levels")?,
        z_channels: field(cfg, "z_channels")?,
        zq_channels: if cfg.get("zq_channels").is_some() { field(cfg, "zq_channels")? } else { 0 },
        groups: field(cfg, "groups")?,
        dtype,
    };
    c.validate()?;
    Ok(c)
}

/// ILLUME+'s pixel encoder (`image` → `h`, `quant_in`) or decoder (`quant` → `image`), every
/// output and intermediate compared (all NCHW in the fixture).
fn run_movq(fx: &Fixture, tol: f64, encoder: bool) -> Result<Vec<Comparison>, String> {
    let c = movq_cfg(&fx.config, fx.dtype)?;
    let input = if encoder { "image" } else { "quant" };
    let (x, xs) = nhwc_input(fx, &format!("input.{input}"), fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let xi = b.input(input, fx.dtype, xs).map_err(|e| e.to_string())?;
    let (outs, inter) = if encoder {
        let (h, q, inter) = movq::encoder(&mut b, &c, xi).map_err(|e| e.to_string())?;
        (vec![("h".to_string(), h), ("quant_in".to_string(), q)], inter)
    } else {
        let (image, inter) = movq::decoder(&mut b, &c, xi).map_err(|e| e.to_string())?;
        (vec![("image".to_string(), image)], inter)
    };
    let named: Vec<(String, String)> = outs
        .iter()
        .map(|(n, _)| (n.clone(), format!("output.{n}")))
        .chain(inter.iter().map(|(n, _)| (format!("inter.{n}"), format!("inter.{n}"))))
        .collect();
    for ((name, _), (_, id)) in named.iter().zip(outs.iter().chain(&inter)) {
        b.output(name, *id).map_err(|e| e.to_string())?;
    }
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    plan.run(&[(input, &x)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (name, key) in named {
        let (s, got) = output_f32(&plan, &name)?;
        out.push(compare(&name, &nhwc_to_nchw(&got, s[0], s[1], s[2], s[3]), &fx.f32(&key)?.1, tol));
    }
    Ok(out)
}

/// The SDXL VAE decoder on scaled latents: `image` and the `post_quant_conv` output.
fn run_vae_decoder(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let c = vae_cfg(&fx.config, fx.dtype)?;
    let (x, xs) = nhwc_input(fx, "input.latents", fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let xi = b.input("latents", fx.dtype, xs).map_err(|e| e.to_string())?;
    let (image, post) = vae::decode(&mut b, &c, xi).map_err(|e| e.to_string())?;
    b.output("image", image).map_err(|e| e.to_string())?;
    b.output("inter.post_quant", post).map_err(|e| e.to_string())?;
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    plan.run(&[("latents", &x)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (name, key) in [("image", "output.image"), ("inter.post_quant", "inter.post_quant")] {
        let (s, got) = output_f32(&plan, name)?;
        out.push(compare(name, &nhwc_to_nchw(&got, s[0], s[1], s[2], s[3]), &fx.f32(key)?.1, tol));
    }
    Ok(out)
}

/// Compare every output of `plan` named in `names` (graph output, fixture tensor, NHWC→NCHW).
fn compare_outputs(
    fx: &Fixture,
    plan: &Plan,
    names: &[(String, String, bool)],
    tol: f64,
) -> Result<Vec<Comparison>, String> {
    let mut out = Vec::new();
    for (name, key, nhwc) in names {
        let (s, got) = output_f32(plan, name)?;
        let got = if *nhwc { nhwc_to_nchw(&got, s[0], s[1], s[2], s[3]) } else { got };
        out.push(compare(name, &got, &fx.f32(key)?.1, tol));
    }
    Ok(out)
}

fn pixel_decoder_cfg(cfg: &Value, dtype: DType) -> Result<PixelDecoderConfig, String> {
    let c = PixelDecoderConfig {
        in_channels: field(cfg, "in_channels")?,
        conv_dim: field(cfg, "conv_dim")?,
        mask_dim: field(cfg, "mask_dim")?,
        heads: field(cfg, "heads")?,
        points: field(cfg, "points")?,
        enc_layers: field(cfg, "enc_layers")?,
        ffn_dim: field(cfg, "ffn_dim")?,
        groups: field(cfg, "groups")?,
        pe_offset: field(cfg, "pe_offset")?,
        prefix: field(cfg, "prefix")?,
        dtype,
    };
    c.validate()?;
    Ok(c)
}

/// Mask2Former's pixel decoder on res2..res5: `mask_features`, the encoder maps `ms.*`,
/// intermediates `encoder.{i}` (tokens) and `fpn`.
fn run_m2f_pixel_decoder(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let c = pixel_decoder_cfg(&fx.config, fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let mut feeds = Feeds::default();
    let ids = (2..6)
        .map(|i| feeds.nhwc(fx, &mut b, &format!("res{i}"), fx.dtype))
        .collect::<Result<Vec<_>, _>>()?;
    let (mf, maps, inter) = mask2former::pixel_decoder(&mut b, &c, &ids).map_err(|e| e.to_string())?;
    let mut names = vec![("mask_features".to_string(), "output.mask_features".to_string(), true)];
    b.output("mask_features", mf).map_err(|e| e.to_string())?;
    for (i, m) in maps.into_iter().enumerate() {
        b.output(&format!("ms.{i}"), m).map_err(|e| e.to_string())?;
        names.push((format!("ms.{i}"), format!("output.ms.{i}"), true));
    }
    for (n, id) in inter {
        b.output(&format!("inter.{n}"), id).map_err(|e| e.to_string())?;
        names.push((format!("inter.{n}"), format!("inter.{n}"), n == "fpn"));
    }
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    feeds.run(&mut plan)?;
    compare_outputs(fx, &plan, &names, tol)
}

/// PSALM's masked-attention decoder: the last layer's `pred_masks`, `pred_logits`,
/// `query_features`, and every layer's predictions and attention mask (1 = blocked).
fn run_m2f_transformer_decoder(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let cfg = &fx.config;
    let c = TransformerDecoderConfig {
        hidden: field(cfg, "hidden")?,
        heads: field(cfg, "heads")?,
        ffn_dim: field(cfg, "ffn_dim")?,
        dec_layers: field(cfg, "dec_layers")?,
        num_queries: field(cfg, "num_queries")?,
        mask_dim: field(cfg, "mask_dim")?,
        llm_hidden: field(cfg, "llm_hidden")?,
        prefix: field(cfg, "prefix")?,
        dtype: fx.dtype,
    };
    c.validate()?;
    let mut b = focus_graph::GraphBuilder::new();
    let mut feeds = Feeds::default();
    let map_ids = ["mask_features", "ms.0", "ms.1", "ms.2"]
        .iter()
        .map(|name| feeds.nhwc(fx, &mut b, name, fx.dtype))
        .collect::<Result<Vec<_>, _>>()?;
    let seq = ["seg_query_hidden", "class_hidden"]
        .iter()
        .map(|name| feeds.plain(fx, &mut b, name, fx.dtype))
        .collect::<Result<Vec<_>, _>>()?;
    let (preds, masks) =
        mask2former::transformer_decoder(&mut b, &c, map_ids[0], &map_ids[1..], (seq[0], seq[1]))
            .map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    let mut out = |b: &mut focus_graph::GraphBuilder, name: String, key: String, id| -> Result<(), String> {
        b.output(&name, id).map_err(|e| e.to_string())?;
        names.push((name, key, false));
        Ok(())
    };
    let last = preds.last().expect("at least the initial prediction");
    out(&mut b, "pred_masks".into(), "output.pred_masks".into(), last.masks)?;
    out(&mut b, "pred_logits".into(), "output.pred_logits".into(), last.logits)?;
    out(&mut b, "query_features".into(), "output.query_features".into(), last.queries)?;
    for (i, p) in preds.iter().enumerate() {
        let tag = if i == 0 { "init".to_string() } else { format!("layer.{}", i - 1) };
        out(&mut b, format!("inter.{tag}.pred_masks"), format!("inter.{tag}.pred_masks"), p.masks)?;
        out(&mut b, format!("inter.{tag}.pred_logits"), format!("inter.{tag}.pred_logits"), p.logits)?;
    }
    // The attention masks as "blocked" flags, the reference's convention.
    let mut blocked = Vec::new();
    for (i, &m) in masks.iter().enumerate() {
        let name = format!("inter.layer.{i}.attn_mask");
        let v = b.cast(m, DType::F32).map_err(|e| e.to_string())?;
        b.output(&name, v).map_err(|e| e.to_string())?;
        blocked.push(name);
    }
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    feeds.run(&mut plan)?;
    let mut res = compare_outputs(fx, &plan, &names, tol)?;
    for name in blocked {
        let got: Vec<f32> = output_f32(&plan, &name)?.1.iter().map(|a| 1.0 - a).collect();
        res.push(compare(&name, &got, &fx.f32(&name)?.1, tol));
    }
    Ok(res)
}

fn unet_cfg(cfg: &Value, dtype: DType) -> Result<UnetConfig, String> {
    let kinds: Vec<String> = field(cfg, "down_block_types")?;
    let c = UnetConfig {
        block_out_channels: field(cfg, "block_out_channels")?,
        cross_attention: kinds.iter().map(|k| k.starts_with("CrossAttn")).collect(),
        layers_per_block: field(cfg, "layers_per_block")?,
        transformer_layers_per_block: field(cfg, "transformer_layers_per_block")?,
        num_attention_heads: field(cfg, "attention_head_dim")?,
        cross_attention_dim: field(cfg, "cross_attention_dim")?,
        norm_num_groups: field(cfg, "norm_num_groups")?,
        norm_eps: field(cfg, "norm_eps")?,
        flip_sin_to_cos: field(cfg, "flip_sin_to_cos")?,
        freq_shift: field(cfg, "freq_shift")?,
        addition_time_embed_dim: field(cfg, "addition_time_embed_dim")?,
        in_channels: field(cfg, "in_channels")?,
        out_channels: field(cfg, "out_channels")?,
        dtype,
    };
    c.validate()?;
    let ups: Vec<String> = field(cfg, "up_block_types")?;
    let mirrored: Vec<bool> = c.cross_attention.iter().rev().copied().collect();
    if ups.iter().map(|k| k.starts_with("CrossAttn")).collect::<Vec<_>>() != mirrored {
        return Err(format!("up_block_types {ups:?} do not mirror down_block_types {kinds:?}"));
    }
    Ok(c)
}

/// The SDXL-layout UNet step (`unet`), with FOCUS's mask injection (`unet_mask`): the noise
/// prediction, the UNet input and every block's output (and the mask sequence).
fn run_unet(fx: &Fixture, tol: f64, with_mask: bool) -> Result<Vec<Comparison>, String> {
    let c = unet_cfg(&fx.config, fx.dtype)?;
    let dt = fx.dtype;
    let e = |e: focus_graph::GraphError| e.to_string();
    let mut b = focus_graph::GraphBuilder::new();
    let mut feeds = Feeds::default();
    let latent = feeds.nhwc(fx, &mut b, "latent", dt)?;
    let vq = feeds.nhwc(fx, &mut b, "vq", dt)?;
    let mask = if with_mask { Some(feeds.nhwc(fx, &mut b, "mask", dt)?) } else { None };
    let timestep = feeds.plain(fx, &mut b, "timestep", DType::F32)?;
    let ctx = feeds.plain(fx, &mut b, "encoder_hidden_states", dt)?;
    let text_embeds = feeds.plain(fx, &mut b, "text_embeds", dt)?;
    let time_ids = feeds.plain(fx, &mut b, "time_ids", DType::F32)?;
    let sample = unet::unet_input(&mut b, latent, vq).map_err(e)?;
    let mut names = vec![
        ("noise_pred".to_string(), "output.noise_pred".to_string(), true),
        ("inter.sample_in".to_string(), "inter.sample_in".to_string(), true),
    ];
    let mut contexts = Contexts { down: ctx, mid: ctx, up: ctx };
    if let Some(mask) = mask {
        let m: Value = field(&fx.config, "mask")?;
        let inject: Vec<String> = field(&m, "inject")?;
        if let Some(other) = inject.iter().find(|p| !matches!(p.as_str(), "mid_block" | "up_blocks")) {
            return Err(format!("mask injection into '{other}' is not supported (mid_block, up_blocks)"));
        }
        let mc = MaskConfig {
            patch: field(&m, "patch")?,
            image_scale: field(&m, "image_scale")?,
            mid: inject.iter().any(|p| p == "mid_block"),
            up: inject.iter().any(|p| p == "up_blocks"),
        };
        let grid: [usize; 2] = field(&fx.config, "latent_hw")?;
        let seq = unet::mask_sequence(&mut b, &c, &mc, mask, grid).map_err(e)?;
        b.output("inter.mask_seq", seq).map_err(e)?;
        names.push(("inter.mask_seq".into(), "inter.mask_seq".into(), false));
        let joined = b.concat(&[ctx, seq], 1).map_err(e)?;
        contexts = Contexts {
            down: ctx,
            mid: if mc.mid { joined } else { ctx },
            up: if mc.up { joined } else { ctx },
        };
    }
    let cond = Conditioning { timestep, text_embeds, time_ids, contexts };
    let (out, inter) = unet::unet(&mut b, &c, sample, &cond).map_err(e)?;
    b.output("noise_pred", out).map_err(e)?;
    b.output("inter.sample_in", sample).map_err(e)?;
    for (n, id) in inter {
        b.output(&format!("inter.{n}"), id).map_err(e)?;
        names.push((format!("inter.{n}"), format!("inter.{n}"), true));
    }
    let mut plan = fx.plan(&b.finish().map_err(e)?)?;
    feeds.run(&mut plan)?;
    compare_outputs(fx, &plan, &names, tol)
}

fn euler_cfg(cfg: &Value) -> Result<(EulerConfig, usize), String> {
    for (k, want) in [
        ("beta_schedule", "scaled_linear"),
        ("prediction_type", "epsilon"),
        ("timestep_spacing", "leading"),
        ("interpolation_type", "linear"),
    ] {
        let got: String = field(cfg, k)?;
        if got != want {
            return Err(format!("Euler {k} '{got}' is not supported (only '{want}')"));
        }
    }
    if cfg.get("use_karras_sigmas").and_then(Value::as_bool) == Some(true) {
        return Err("Karras sigmas are not supported".into());
    }
    let c = EulerConfig {
        beta_start: field(cfg, "beta_start")?,
        beta_end: field(cfg, "beta_end")?,
        num_train_timesteps: field(cfg, "num_train_timesteps")?,
        steps_offset: field(cfg, "steps_offset")?,
    };
    Ok((c, field(cfg, "num_inference_steps")?))
}

fn scalar(v: f32) -> Result<Tensor, String> {
    Tensor::from_f32(DType::F32, [1], &[v]).map_err(|e| e.to_string())
}

/// The Euler scheduler: its tables, then every step's scaled input and update on random model
/// outputs, through the step graph.
fn run_euler(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let (c, steps) = euler_cfg(&fx.config)?;
    let s = EulerSchedule::new(&c, steps)?;
    let mut out = vec![
        compare("timesteps", &s.timesteps, &fx.f32("output.timesteps")?.1, tol),
        compare("sigmas", &s.sigmas, &fx.f32("output.sigmas")?.1, tol),
        compare("init_noise_sigma", &[s.init_noise_sigma], &fx.f32("output.init_noise_sigma")?.1, tol),
    ];
    let (shape, x0) = fx.f32("input.sample")?;
    let e = |e: focus_graph::GraphError| e.to_string();
    let mut b = focus_graph::GraphBuilder::new();
    let x = b.input("sample", fx.dtype, shape.clone()).map_err(e)?;
    let eps = b.input("model_output", fx.dtype, shape.clone()).map_err(e)?;
    let [scale, sigma, next] = ["scale", "sigma", "sigma_next"].map(|n| b.input(n, DType::F32, [1]));
    let scaled = euler::scale_input(&mut b, x, scale.map_err(e)?).map_err(e)?;
    let stepped = euler::step(&mut b, x, eps, (sigma.map_err(e)?, next.map_err(e)?)).map_err(e)?;
    b.output("scaled", scaled).map_err(e)?;
    b.output("next", stepped).map_err(e)?;
    let mut plan = fx.plan(&b.finish().map_err(e)?)?;
    let mut x: Vec<f32> = x0.iter().map(|v| v * s.init_noise_sigma).collect();
    for i in 0..steps {
        let xt = Tensor::from_f32(fx.dtype, shape.clone(), &x).map_err(|e| e.to_string())?;
        let et = Tensor::from_f32(fx.dtype, shape.clone(), &fx.f32(&format!("input.model_output.{i}"))?.1)
            .map_err(|e| e.to_string())?;
        let (sc, sg, sn) = (scalar(s.input_scale(i))?, scalar(s.sigmas[i])?, scalar(s.sigmas[i + 1])?);
        plan.run(&[
            ("sample", &xt),
            ("model_output", &et),
            ("scale", &sc),
            ("sigma", &sg),
            ("sigma_next", &sn),
        ])
        .map_err(|e| e.to_string())?;
        let scaled = output_f32(&plan, "scaled")?.1;
        out.push(compare(
            &format!("scaled_input.{i}"),
            &scaled,
            &fx.f32(&format!("output.scaled_input.{i}"))?.1,
            tol,
        ));
        x = output_f32(&plan, "next")?.1;
        out.push(compare(&format!("sample.{i}"), &x, &fx.f32(&format!("output.sample.{i}"))?.1, tol));
    }
    Ok(out)
}

fn vae_cfg(cfg: &Value, dtype: DType) -> Result<VaeConfig, String> {
    let c = VaeConfig {
        block_out_channels: field(cfg, "block_out_channels")?,
        layers_per_block: field(cfg, "layers_per_block")?,
        latent_channels: field(cfg, "latent_channels")?,
        norm_num_groups: field(cfg, "norm_num_groups")?,
        scaling_factor: field(cfg, "scaling_factor")?,
        dtype,
    };
    c.validate()?;
    Ok(c)
}

/// The chained generation path: SimVQ lookups of both code grids, the semantic map bicubic-
/// resized onto the pixel grid and concatenated, one Euler step of the UNet from the initial
/// noise, then the VAE decode of the updated latents.
fn run_generation(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let cfg = &fx.config;
    let sub = |k: &str| cfg.get(k).ok_or_else(|| format!("config has no '{k}'"));
    let vq_cfg = |k: &str| -> Result<SimVqConfig, String> {
        let s = sub(k)?;
        Ok(SimVqConfig {
            codebook_size: field(s, "codebook_size")?,
            dim: field(s, "dim")?,
            prefix: field(s, "prefix")?,
        })
    };
    let (sem_c, pix_c) = (vq_cfg("semantic")?, vq_cfg("pixel")?);
    let uc = unet_cfg(sub("unet")?, fx.dtype)?;
    let vc = vae_cfg(sub("vae")?, fx.dtype)?;
    let (ec, steps) = euler_cfg(sub("euler")?)?;
    let sched = EulerSchedule::new(&ec, steps)?;
    let dt = fx.dtype;
    let e = |e: focus_graph::GraphError| e.to_string();
    let mut b = focus_graph::GraphBuilder::new();
    let mut feeds = Feeds::default();
    let sem_ids = feeds.ids(fx, &mut b, "sem_ids")?;
    let pix_ids = feeds.ids(fx, &mut b, "pix_ids")?;
    let noise = feeds.nhwc(fx, &mut b, "noise", dt)?;
    let ctx = feeds.plain(fx, &mut b, "encoder_hidden_states", dt)?;
    let text_embeds = feeds.plain(fx, &mut b, "text_embeds", dt)?;
    let time_ids = feeds.plain(fx, &mut b, "time_ids", DType::F32)?;
    let host = [
        ("init_noise_sigma", sched.init_noise_sigma),
        ("scale", sched.input_scale(0)),
        ("t0", sched.timesteps[0]),
        ("sigma", sched.sigmas[0]),
        ("sigma_next", sched.sigmas[1]),
    ];
    let mut scalars = Vec::new();
    for (name, v) in host {
        scalars.push(feeds.add(&mut b, name, scalar(v)?)?);
    }
    let [init, scale, t0, sigma, sigma_next] = scalars[..] else { unreachable!() };
    // Codes → maps (f32, resampled in f32), semantic channels first.
    let sem = simvq::lookup(&mut b, &sem_c, sem_ids).map_err(e)?;
    let pix = simvq::lookup(&mut b, &pix_c, pix_ids).map_err(e)?;
    let [_, ph, pw, _] = b.shape(pix).try_into().map_err(|_| "pixel ids must be [B, h, w]".to_string())?;
    let sem = b.resize(sem, focus_graph::ResizeMode::Bicubic, [ph, pw], false, false).map_err(e)?;
    let vq = b.concat(&[sem, pix], 3).map_err(e)?;
    let vq = b.cast(vq, dt).map_err(e)?;
    let init = b.cast(init, dt).map_err(e)?;
    let latents = b.mul(noise, init).map_err(e)?;
    let scaled = euler::scale_input(&mut b, latents, scale).map_err(e)?;
    let sample = unet::unet_input(&mut b, scaled, vq).map_err(e)?;
    let cond = Conditioning {
        timestep: t0,
        text_embeds,
        time_ids,
        contexts: Contexts { down: ctx, mid: ctx, up: ctx },
    };
    let (noise_pred, _) = unet::unet(&mut b, &uc, sample, &cond).map_err(e)?;
    let next = euler::step(&mut b, latents, noise_pred, (sigma, sigma_next)).map_err(e)?;
    let (image, _) = vae::decode(&mut b, &vc, next).map_err(e)?;
    let mut names = Vec::new();
    for (name, id, nhwc) in [
        ("latents_next", next, true),
        ("image", image, true),
        ("inter.vq", vq, true),
        ("inter.scaled_input", scaled, true),
        ("inter.noise_pred", noise_pred, true),
        ("inter.t0", t0, false),
    ] {
        b.output(name, id).map_err(e)?;
        let key = if name.starts_with("inter.") { name.to_string() } else { format!("output.{name}") };
        names.push((name.to_string(), key, nhwc));
    }
    let mut plan = fx.plan(&b.finish().map_err(e)?)?;
    feeds.run(&mut plan)?;
    compare_outputs(fx, &plan, &names, tol)
}

/// DualViTok's semantic decoder: features and every block's output.
fn run_semantic_decoder(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let cfg = &fx.config;
    let theta: f64 = field(cfg, "rope_theta")?;
    if theta != 10000.0 {
        return Err(format!("rope_theta {theta} is not supported (the ViT blocks use 10000)"));
    }
    let c = SemanticDecoderConfig {
        code_dim: field(cfg, "code_dim")?,
        embed_dim: field(cfg, "embed_dim")?,
        num_heads: field(cfg, "num_heads")?,
        depth: field(cfg, "depth")?,
        mlp_ratio: field(cfg, "mlp_ratio")?,
        out_dim: field(cfg, "out_dim")?,
        prefix: field(cfg, "prefix")?,
        dtype: fx.dtype,
    };
    c.validate()?;
    let e = |e: focus_graph::GraphError| e.to_string();
    let (x, xs) = nhwc_input(fx, "input.quant", fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let q = b.input("quant", fx.dtype, xs).map_err(e)?;
    let (features, blocks) = semantic::decode(&mut b, &c, q).map_err(e)?;
    let mut names = vec![("features".to_string(), "output.features".to_string(), false)];
    b.output("features", features).map_err(e)?;
    for (i, id) in blocks.into_iter().enumerate() {
        b.output(&format!("inter.block.{i}"), id).map_err(e)?;
        names.push((format!("inter.block.{i}"), format!("inter.block.{i}"), false));
    }
    let mut plan = fx.plan(&b.finish().map_err(e)?)?;
    plan.run(&[("quant", &x)]).map_err(|e| e.to_string())?;
    compare_outputs(fx, &plan, &names, tol)
}

/// diffusers' spatial-norm VQModel round trip: pre-quantisation latents, code ids (exact), the
/// quantised map and the decoded image.
fn run_movq_kandinsky(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let cfg = &fx.config;
    let downs: Vec<String> = field(cfg, "down_block_types")?;
    let ups: Vec<String> = field(cfg, "up_block_types")?;
    let attention: Vec<bool> = downs.iter().map(|k| k.starts_with("Attn")).collect();
    let mirrored: Vec<bool> = ups.iter().rev().map(|k| k.starts_with("Attn")).collect();
    if attention != mirrored {
        return Err(format!("up_block_types {ups:?} do not mirror down_block_types {downs:?}"));
    }
    let c = KandinskyVqConfig {
        block_out_channels: field(cfg, "block_out_channels")?,
        attention,
        layers_per_block: field(cfg, "layers_per_block")?,
        norm_num_groups: field(cfg, "norm_num_groups")?,
        latent_channels: field(cfg, "latent_channels")?,
        vq_embed_dim: field(cfg, "vq_embed_dim")?,
        num_vq_embeddings: field(cfg, "num_vq_embeddings")?,
        dtype: fx.dtype,
    };
    c.validate()?;
    let e = |e: focus_graph::GraphError| e.to_string();
    let (x, xs) = nhwc_input(fx, "input.image", fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let xi = b.input("image", fx.dtype, xs).map_err(e)?;
    let h = kandinsky::encode(&mut b, &c, xi).map_err(e)?;
    let (ids, q) = kandinsky::quantize(&mut b, &c, h).map_err(e)?;
    let image = kandinsky::decode(&mut b, &c, q).map_err(e)?;
    let names = vec![
        ("h".to_string(), "output.h".to_string(), true),
        ("image".to_string(), "output.image".to_string(), true),
        ("inter.quant".to_string(), "inter.quant".to_string(), true),
    ];
    for (n, id) in [("h", h), ("image", image), ("inter.quant", q), ("indices", ids)] {
        b.output(n, id).map_err(e)?;
    }
    let mut plan = fx.plan(&b.finish().map_err(e)?)?;
    plan.run(&[("image", &x)]).map_err(|e| e.to_string())?;
    let mut out = compare_outputs(fx, &plan, &names, tol)?;
    let got = plan.output("indices").map_err(|e| e.to_string())?;
    let got =
        Tensor::from_bytes(DType::I64, got.shape.to_vec(), got.data).map_err(|e| e.to_string())?.to_i64();
    out.push(exact("indices", &got, &fx.i64("output.indices")?.1));
    Ok(out)
}

fn run_qwen2(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let c = Qwen2Config::from_json(&fx.config_text)?;
    let (_, ids) = fx.i64("input.input_ids")?;
    let gen: usize = field(&fx.config, "gen_tokens").unwrap_or(0);
    let t = ids.len();
    let capacity = t + gen;
    let step =
        |tokens, all_logits| StepOptions { all_logits, ..StepOptions::prefill(tokens, capacity, fx.dtype) };
    let mut prefill = fx.plan(&qwen2::step_graph(&c, &step(t, true)).map_err(|e| e.to_string())?)?;
    let ids_t = Tensor::from_i64(DType::I32, [t], &ids).map_err(|e| e.to_string())?;
    let pos: Vec<i64> = (0..t as i64).collect();
    let pos_t = Tensor::from_i64(DType::I32, [t], &pos).map_err(|e| e.to_string())?;
    prefill.run(&[("input_ids", &ids_t), ("positions", &pos_t)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let (_, logits) = output_f32(&prefill, "logits")?;
    out.push(compare("logits", &logits, &fx.f32("output.logits")?.1, tol));
    let (_, hidden) = output_f32(&prefill, "hidden")?;
    out.push(compare("last_hidden_state", &hidden, &fx.f32("output.last_hidden_state")?.1, tol));
    // Greedy tokens are compared in f32 only: in half precision a near-tie may flip legitimately.
    if gen > 0 && fx.dtype == DType::F32 {
        let v = c.vocab_size;
        out.extend(greedy(fx, &c, &mut prefill, &logits[(t - 1) * v..t * v], (t, gen, capacity), tol)?);
    }
    Ok(out)
}

/// Greedy decoding after a prefill of `start` tokens: the KV cache moves from the prefill plan
/// to a one-token decode plan; compares with `output.tokens` exactly.
/// Greedy decoding on the KV cache `prefill` filled: the tokens against the reference's, and
/// (where the fixture has them) every step's logits against the reference's recomputation of
/// the whole prefix, so the cached decode is checked by value and not only by its argmax.
fn greedy(
    fx: &Fixture,
    c: &Qwen2Config,
    prefill: &mut Plan,
    last_logits: &[f32],
    (start, gen, capacity): (usize, usize, usize),
    tol: f64,
) -> Result<Vec<Comparison>, String> {
    let o = StepOptions::prefill(1, capacity, fx.dtype);
    let mut decode = fx.plan(&qwen2::step_graph(c, &o).map_err(|e| e.to_string())?)?;
    let names: Vec<String> =
        (0..c.num_hidden_layers).flat_map(|l| [qwen2::k_cache_name(l), qwen2::v_cache_name(l)]).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    decode.swap_states(prefill, &names).map_err(|e| e.to_string())?;
    // On a GPU, greedy decoding replays the step as a CUDA graph (checked token for token).
    decode.capture_graph().map_err(|e| e.to_string())?;
    let argmax = |x: &[f32]| x.iter().enumerate().fold(0, |b, (i, &y)| if y > x[b] { i } else { b });
    let mut next = argmax(last_logits);
    let mut tokens = vec![next as i64];
    let mut steps = last_logits.to_vec();
    for p in start..start + gen - 1 {
        let id = Tensor::from_i64(DType::I32, [1], &[next as i64]).map_err(|e| e.to_string())?;
        let pt = Tensor::from_i64(DType::I32, [1], &[p as i64]).map_err(|e| e.to_string())?;
        decode.run(&[("input_ids", &id), ("positions", &pt)]).map_err(|e| e.to_string())?;
        let logits = output_f32(&decode, "logits")?.1;
        next = argmax(&logits);
        tokens.push(next as i64);
        steps.extend(logits);
    }
    let (_, want) = fx.i64("output.tokens")?;
    let same = tokens == want;
    let mut out = vec![Comparison {
        name: format!("greedy tokens {tokens:?} vs {want:?}"),
        numel: want.len(),
        rel_l2: if same { 0.0 } else { 1.0 },
        max_abs: if same { 0.0 } else { 1.0 },
        pass: same,
    }];
    if fx.store.tensor("output.step_logits").is_some() {
        out.push(compare("step_logits (cached decode)", &steps, &fx.f32("output.step_logits")?.1, tol));
    }
    Ok(out)
}

fn vit_cfg(cfg: &Value, dtype: DType) -> Result<QwenVitConfig, String> {
    Ok(QwenVitConfig { dtype, ..QwenVitConfig::from_hf_json(&cfg.to_string())? })
}

fn run_qwen_vit(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let c = vit_cfg(&fx.config, fx.dtype)?;
    let (shape, img) = fx.f32("input.image")?;
    let [1, ch, h, w] = shape[..] else {
        return Err(format!("input.image must be [1,C,H,W], got {shape:?}"));
    };
    let mut plan = fx.plan(&qwen_vit::graph(&c, h, w).map_err(|e| e.to_string())?)?;
    let x = Tensor::from_f32(fx.dtype, [1, h, w, ch], &nchw_to_nhwc(&img, 1, ch, h, w))
        .map_err(|e| e.to_string())?;
    plan.run(&[("image", &x)]).map_err(|e| e.to_string())?;
    let mut out = vec![compare("embeds", &output_f32(&plan, "embeds")?.1, &fx.f32("output.embeds")?.1, tol)];
    if let (VitVariant::Qwen25Vl { window, .. }, Ok((_, want))) = (&c.variant, fx.i64("inter.window_index")) {
        let unit = c.patch_size * c.merge;
        let (order, _) = qwen_vit::window_order(h / unit, w / unit, window / unit);
        let same = order.iter().map(|&u| u as i64).eq(want.iter().copied());
        out.push(Comparison {
            name: "window_index".into(),
            numel: want.len(),
            rel_l2: if same { 0.0 } else { 1.0 },
            max_abs: if same { 0.0 } else { 1.0 },
            pass: same,
        });
    }
    Ok(out)
}

/// An NCHW fixture input as an NHWC tensor, plus its NHWC shape.
fn nhwc_input(fx: &Fixture, name: &str, dtype: DType) -> Result<(Tensor, Vec<usize>), String> {
    let (s, v) = fx.f32(name)?;
    let [n, c, h, w] = s[..] else { return Err(format!("{name} must be NCHW, got {s:?}")) };
    let shape = vec![n, h, w, c];
    Ok((
        Tensor::from_f32(dtype, shape.clone(), &nchw_to_nhwc(&v, n, c, h, w)).map_err(|e| e.to_string())?,
        shape,
    ))
}

/// Graph inputs read from a fixture's `input.*` tensors, with the tensors that feed them.
#[derive(Default)]
struct Feeds(Vec<(String, Tensor)>);

impl Feeds {
    fn add(&mut self, b: &mut focus_graph::GraphBuilder, name: &str, t: Tensor) -> Result<NodeId, String> {
        let id = b.input(name, t.dtype(), t.shape().dims().to_vec()).map_err(|e| e.to_string())?;
        self.0.push((name.to_string(), t));
        Ok(id)
    }
    /// An NCHW fixture map as an NHWC input in `dt`.
    fn nhwc(
        &mut self,
        fx: &Fixture,
        b: &mut focus_graph::GraphBuilder,
        name: &str,
        dt: DType,
    ) -> Result<NodeId, String> {
        let (t, _) = nhwc_input(fx, &format!("input.{name}"), dt)?;
        self.add(b, name, t)
    }
    /// A float tensor as stored (a scalar as `[1]`), in `dt`.
    fn plain(
        &mut self,
        fx: &Fixture,
        b: &mut focus_graph::GraphBuilder,
        name: &str,
        dt: DType,
    ) -> Result<NodeId, String> {
        let (s, v) = fx.f32(&format!("input.{name}"))?;
        let s = if s.is_empty() { vec![1] } else { s };
        self.add(b, name, Tensor::from_f32(dt, s, &v).map_err(|e| e.to_string())?)
    }
    /// Integer ids as i64.
    fn ids(&mut self, fx: &Fixture, b: &mut focus_graph::GraphBuilder, name: &str) -> Result<NodeId, String> {
        let (s, v) = fx.i64(&format!("input.{name}"))?;
        self.add(b, name, Tensor::from_i64(DType::I64, s, &v).map_err(|e| e.to_string())?)
    }
    fn run(&self, plan: &mut Plan) -> Result<(), String> {
        let feeds: Vec<(&str, &Tensor)> = self.0.iter().map(|(n, t)| (n.as_str(), t)).collect();
        plan.run(&feeds).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn fusion_cfg(cfg: &Value, dtype: DType) -> Result<FusionConfig, String> {
    Ok(FusionConfig {
        d_q: field(cfg, "d_q")?,
        d_kv: field(cfg, "d_kv")?,
        d: field(cfg, "d")?,
        heads: field(cfg, "heads")?,
        mlp_ratio: field(cfg, "mlp_ratio")?,
        query_residual: field(cfg, "query_residual")?,
        prefix: field(cfg, "prefix")?,
        dtype,
    })
}

fn run_fusion(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let c = fusion_cfg(&fx.config, fx.dtype)?;
    let (ls, low) = fx.f32("input.x_low")?;
    let (high, hs) = nhwc_input(fx, "input.x_high", fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let xl = b.input("x_low", fx.dtype, ls.clone()).map_err(|e| e.to_string())?;
    let xh = b.input("x_high", fx.dtype, hs).map_err(|e| e.to_string())?;
    let y = fusion::fusion(&mut b, &c, xl, xh).map_err(|e| e.to_string())?;
    b.output("fused", y).map_err(|e| e.to_string())?;
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    let low = Tensor::from_f32(fx.dtype, ls, &low).map_err(|e| e.to_string())?;
    plan.run(&[("x_low", &low), ("x_high", &high)]).map_err(|e| e.to_string())?;
    Ok(vec![compare("fused", &output_f32(&plan, "fused")?.1, &fx.f32("output.fused")?.1, tol)])
}

fn adapter_cfg(cfg: &Value, dtype: DType) -> Result<AdapterConfig, String> {
    Ok(AdapterConfig {
        in_channels: field(cfg, "in_channels")?,
        d: field(cfg, "d")?,
        heads: field(cfg, "heads")?,
        n_queries: field(cfg, "n_queries")?,
        ff_mult: field(cfg, "ff_mult")?,
        llm_hidden: field(cfg, "llm_hidden")?,
        kv_include_latents: field(cfg, "kv_include_latents")?,
        prefix: field(cfg, "prefix")?,
        dtype,
    })
}

fn run_adapter(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let c = adapter_cfg(&fx.config, fx.dtype)?;
    let mut b = focus_graph::GraphBuilder::new();
    let mut feats = Vec::new();
    let mut tensors = Vec::new();
    for j in 0..c.in_channels.len() {
        let (t, s) = nhwc_input(fx, &format!("input.feats.{j}"), fx.dtype)?;
        feats.push(b.input(&format!("feats.{j}"), fx.dtype, s).map_err(|e| e.to_string())?);
        tensors.push((format!("feats.{j}"), t));
    }
    let y = fusion::adapter(&mut b, &c, &feats).map_err(|e| e.to_string())?;
    b.output("tokens", y).map_err(|e| e.to_string())?;
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    let ins: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    plan.run(&ins).map_err(|e| e.to_string())?;
    Ok(vec![compare("tokens", &output_f32(&plan, "tokens")?.1, &fx.f32("output.tokens")?.1, tol)])
}

fn exact(name: &str, got: &[i64], want: &[i64]) -> Comparison {
    let diff = got.len() != want.len() || got.iter().zip(want).any(|(a, b)| a != b);
    let mismatches = got.iter().zip(want).filter(|(a, b)| a != b).count();
    Comparison {
        name: format!("{name} (exact, {mismatches} mismatches)"),
        numel: want.len(),
        rel_l2: if diff { 1.0 } else { 0.0 },
        max_abs: if diff { 1.0 } else { 0.0 },
        pass: !diff,
    }
}

fn run_simvq(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let cfg = &fx.config;
    let c = SimVqConfig {
        codebook_size: field(cfg, "codebook_size")?,
        dim: field(cfg, "dim")?,
        prefix: field(cfg, "prefix")?,
    };
    let (z, zs) = nhwc_input(fx, "input.z", DType::F32)?;
    let (is, ids) = fx.i64("input.ids")?;
    let mut b = focus_graph::GraphBuilder::new();
    let zi = b.input("z", DType::F32, zs.clone()).map_err(|e| e.to_string())?;
    let ii = b.input("ids", DType::I64, is.clone()).map_err(|e| e.to_string())?;
    let (idx, q) = simvq::quantize(&mut b, &c, zi).map_err(|e| e.to_string())?;
    let dec = simvq::lookup(&mut b, &c, ii).map_err(|e| e.to_string())?;
    for (n, v) in [("indices", idx), ("quant", q), ("decoded", dec)] {
        b.output(n, v).map_err(|e| e.to_string())?;
    }
    let mut plan = fx.plan(&b.finish().map_err(|e| e.to_string())?)?;
    let ids = Tensor::from_i64(DType::I64, is, &ids).map_err(|e| e.to_string())?;
    plan.run(&[("z", &z), ("ids", &ids)]).map_err(|e| e.to_string())?;
    let got_idx = Tensor::from_bytes(
        DType::I64,
        zs[..3].to_vec(),
        plan.output("indices").map_err(|e| e.to_string())?.data,
    )
    .map_err(|e| e.to_string())?
    .to_i64();
    let mut out = vec![exact("indices", &got_idx, &fx.i64("output.indices")?.1)];
    for k in ["quant", "decoded"] {
        let (s, got) = output_f32(&plan, k)?;
        out.push(compare(
            k,
            &nhwc_to_nchw(&got, s[0], s[1], s[2], s[3]),
            &fx.f32(&format!("output.{k}"))?.1,
            tol,
        ));
    }
    Ok(out)
}

fn run_resize(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    use focus_graph::{BinaryOp, ResizeMode::*};
    let (x, _) = nhwc_input(fx, "input.image", DType::F32)?;
    let shape = x.shape().dims().to_vec();
    let hw = |k: &str| field::<[usize; 2]>(&fx.config, k);
    let modes = [
        ("nearest", Nearest, false, false),
        ("bilinear", Bilinear, false, false),
        ("bilinear_ac", Bilinear, true, false),
        ("bilinear_aa", Bilinear, false, true),
        ("bicubic", Bicubic, false, false),
        ("bicubic_ac", Bicubic, true, false),
        ("bicubic_aa", Bicubic, false, true),
    ];
    let e = |e: focus_graph::GraphError| e.to_string();
    let mut b = focus_graph::GraphBuilder::new();
    let img = b.input("image", DType::F32, shape).map_err(e)?;
    let mut names = Vec::new();
    for (name, mode, ac, aa) in modes {
        for tag in ["down", "up"] {
            let y = b.resize(img, mode, hw(&format!("{tag}_hw"))?, ac, aa).map_err(e)?;
            let n = format!("{name}.{tag}");
            b.output(&n, y).map_err(e)?;
            names.push(n);
        }
    }
    // QwenViT pre-processing (spec §3.1): bicubic+antialias, clamp to [0, 1], CLIP normalise.
    let v = b.resize(img, Bicubic, hw("vit_hw")?, false, true).map_err(e)?;
    let (zero, one) = (b.scalar(DType::F32, 0.0).map_err(e)?, b.scalar(DType::F32, 1.0).map_err(e)?);
    let v = b.binary(BinaryOp::Min, v, one).map_err(e)?;
    let v = b.binary(BinaryOp::Max, v, zero).map_err(e)?;
    let mean = b.constant_f32([3], &qwen_vit::CLIP_MEAN).map_err(e)?;
    let std = b.constant_f32([3], &qwen_vit::CLIP_STD).map_err(e)?;
    let v = b.sub(v, mean).map_err(e)?;
    let v = b.div(v, std).map_err(e)?;
    b.output("vit", v).map_err(e)?;
    names.push("vit".into());
    let mut plan = fx.plan(&b.finish().map_err(e)?)?;
    plan.run(&[("image", &x)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for n in names {
        let (s, got) = output_f32(&plan, &n)?;
        out.push(compare(
            &n,
            &nhwc_to_nchw(&got, s[0], s[1], s[2], s[3]),
            &fx.f32(&format!("output.{n}"))?.1,
            tol,
        ));
    }
    Ok(out)
}

fn run_perception(fx: &Fixture, tol: f64) -> Result<Vec<Comparison>, String> {
    let cfg = &fx.config;
    let sub = |k: &str| cfg.get(k).ok_or_else(|| format!("config has no '{k}'"));
    let llm_text = serde_json::to_string(sub("llm")?).map_err(|e| e.to_string())?;
    let c = PerceptionConfig {
        vit: vit_cfg(sub("vit")?, fx.dtype)?,
        convnext: convnext_cfg(sub("convnext")?, ConvNextNaming::Timm, fx.dtype)?,
        fusion: fusion_cfg(sub("fusion")?, fx.dtype)?,
        adapter: adapter_cfg(sub("adapter")?, fx.dtype)?,
        llm: Qwen2Config::from_json(&llm_text)?,
        projector: field(cfg, "projector")?,
        image_token_ids: field(cfg, "image_token_ids")?,
    };
    let (vit_img, vs) = nhwc_input(fx, "input.image_vit", fx.dtype)?;
    let (hr_img, hs) = nhwc_input(fx, "input.image_hr", fx.dtype)?;
    let (_, ids) = fx.i64("input.input_ids")?;
    let gen: usize = field(cfg, "gen_tokens")?;
    let (n_pre, n_post): (usize, usize) = (field(cfg, "n_pre")?, field(cfg, "n_post")?);
    let l = ids.len();
    // The reference wrote its image span's ids itself: they must be the engine layout's.
    let span: Vec<i64> =
        c.image_layout([vs[1], vs[2]]).token_ids(&c.image_token_ids).iter().map(|&t| t as i64).collect();
    if l != n_pre + span.len() + n_post || ids[n_pre..n_pre + span.len()] != span[..] {
        return Err(format!(
            "fixture input_ids {ids:?} do not hold the engine's image span {span:?} after {n_pre} text tokens"
        ));
    }
    let shape = PerceptionShape {
        vit_hw: [vs[1], vs[2]],
        hr_hw: [hs[1], hs[2]],
        raw_image: None,
        n_pre,
        n_post,
        capacity: l + gen,
        dtype: fx.dtype,
        seg_queries: 0,
    };
    let mut prefill = fx.plan(&perception::prefill_graph(&c, &shape).map_err(|e| e.to_string())?)?;
    let ids_t = Tensor::from_i64(DType::I32, [l], &ids).map_err(|e| e.to_string())?;
    let pos: Vec<i64> = (0..l as i64).collect();
    let pos_t = Tensor::from_i64(DType::I32, [l], &pos).map_err(|e| e.to_string())?;
    prefill
        .run(&[("image_vit", &vit_img), ("image_hr", &hr_img), ("input_ids", &ids_t), ("positions", &pos_t)])
        .map_err(|e| e.to_string())?;
    let (_, logits) = output_f32(&prefill, "logits")?;
    let mut out = vec![
        compare("logits", &logits, &fx.f32("output.logits")?.1, tol),
        compare(
            "last_hidden_state",
            &output_f32(&prefill, "hidden")?.1,
            &fx.f32("output.last_hidden_state")?.1,
            tol,
        ),
    ];
    if gen > 0 && fx.dtype == DType::F32 {
        let v = c.llm.vocab_size;
        out.extend(greedy(fx, &c.llm, &mut prefill, &logits[(l - 1) * v..l * v], (l, gen, l + gen), tol)?);
    }
    Ok(out)
}

/// Components this runner knows, by the fixture's `component` metadata.
pub const COMPONENTS: &[&str] = &[
    "adapter",
    "convnext",
    "convnext_hf",
    "euler",
    "fusion",
    "generation",
    "m2f_pixel_decoder",
    "m2f_transformer_decoder",
    "movq_decoder",
    "movq_encoder",
    "movq_kandinsky",
    "qwen2",
    "qwen2vl_vit",
    "qwen25vl_vit",
    "perception",
    "resize",
    "semantic_decoder",
    "simvq",
    "unet",
    "unet_mask",
    "vae_decoder",
];

/// Run a fixture with the engine graphs in `dtype` (weights converted on load; f32 fixtures
/// are the reference) and compare its outputs. Quantisers and resampling stay f32 as the
/// precision policy says. `tol` defaults by dtype for whole networks: f32 1e-5; in half
/// precision every stored activation is rounded (bf16 2⁻⁹, f16 2⁻¹² relative) and a few layers
/// compound it, so 2e-2 for bf16 and 3e-3 for f16 (single ops stay within 1e-2 / 2e-3).
pub fn run_fixture(path: &Path, tol: Option<f64>, dtype: DType) -> Result<ParityReport, String> {
    run_fixture_on(path, tol, dtype, Device::Cpu)
}

/// `run_fixture` with the engine graphs compiled for `device`.
pub fn run_fixture_on(
    path: &Path,
    tol: Option<f64>,
    dtype: DType,
    device: Device,
) -> Result<ParityReport, String> {
    let mut fx = Fixture::open(path)?;
    fx.dtype = dtype;
    fx.device = device;
    let tolerance = tol.unwrap_or(match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 3e-3,
        DType::BF16 => 2e-2,
        d => return Err(format!("parity runs in f32, f16 or bf16, not {d}")),
    });
    let comparisons = match fx.component.as_str() {
        "convnext" => run_convnext(&fx, tolerance, ConvNextNaming::Timm)?,
        "convnext_hf" => run_convnext(&fx, tolerance, ConvNextNaming::Hf)?,
        "qwen2" => run_qwen2(&fx, tolerance)?,
        "fusion" => run_fusion(&fx, tolerance)?,
        "simvq" => run_simvq(&fx, tolerance)?,
        "vae_decoder" => run_vae_decoder(&fx, tolerance)?,
        "euler" => run_euler(&fx, tolerance)?,
        "semantic_decoder" => run_semantic_decoder(&fx, tolerance)?,
        "generation" => run_generation(&fx, tolerance)?,
        "unet" => run_unet(&fx, tolerance, false)?,
        "unet_mask" => run_unet(&fx, tolerance, true)?,
        "m2f_pixel_decoder" => run_m2f_pixel_decoder(&fx, tolerance)?,
        "m2f_transformer_decoder" => run_m2f_transformer_decoder(&fx, tolerance)?,
        "movq_encoder" => run_movq(&fx, tolerance, true)?,
        "movq_kandinsky" => run_movq_kandinsky(&fx, tolerance)?,
        "movq_decoder" => run_movq(&fx, tolerance, false)?,
        "resize" => run_resize(&fx, tolerance)?,
        "perception" => run_perception(&fx, tolerance)?,
        "adapter" => run_adapter(&fx, tolerance)?,
        "qwen2vl_vit" => run_qwen_vit(&fx, tolerance)?,
        "qwen25vl_vit" => run_qwen_vit(&fx, tolerance)?,
        other => {
            return Err(format!(
                "component '{other}' has no engine implementation yet (known: {})",
                COMPONENTS.join(", ")
            ))
        }
    };
    Ok(ParityReport {
        component: fx.component.clone(),
        config: fx.config_text.clone(),
        tolerance,
        comparisons,
    })
}
