//! `focus`: inspect checkpoints, list ops, build and dump graphs, and run the demo.

mod commands;
mod image_io;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "focus", version, about = "focus-engine: FOCUS inference engine")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List and validate the tensors of a safetensors file, sharded index or directory.
    Inspect {
        path: PathBuf,
        /// Also print the file's __metadata__.
        #[arg(long)]
        metadata: bool,
    },
    /// The op table: which ops exist on which backend.
    Ops,
    /// Build a graph for a named model and print it with its memory plan and FLOPs.
    Graph {
        /// Model name (see `focus graph --list`).
        #[arg(default_value = "convnext")]
        model: String,
        #[arg(long, default_value = "tiny")]
        config: String,
        /// Input resolution (square).
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Print Graphviz DOT instead of the text listing.
        #[arg(long)]
        dot: bool,
        /// Print only the summary.
        #[arg(long)]
        summary: bool,
        /// List the models and configs.
        #[arg(long)]
        list: bool,
        /// Storage dtype of activations and weights (f32, f16, bf16).
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Also print what a CUDA plan of the graph launches per run, by op kind (planned
        /// offline: no GPU and no weights needed).
        #[arg(long)]
        launches: bool,
    },
    /// List the CUDA kernels; with --check, compile each with NVRTC and print registers,
    /// shared memory and spills (needs libnvrtc: tools/setup-nvrtc.sh installs it locally).
    Kernels {
        #[arg(long)]
        check: bool,
        /// Target architectures.
        #[arg(long, value_delimiter = ',', default_values_t = ["sm_80".to_string(), "sm_90a".to_string()])]
        arch: Vec<String>,
        /// Read the kernel sources from this directory instead of the embedded copies.
        #[arg(long)]
        src: Option<PathBuf>,
    },
    /// Run a PyTorch-reference fixture (tools/torch_ref) on the engine and compare every output
    /// by relative L2 error; exits non-zero beyond the tolerance.
    Parity {
        fixture: PathBuf,
        /// Override the dtype's default tolerance (f32 1e-5, f16 3e-3, bf16 2e-2).
        #[arg(long)]
        tol: Option<f64>,
        /// Engine dtype: f32, f16 or bf16 (weights converted on load).
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// cpu or cuda[:N].
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Check every CUDA kernel, then whole small model plans, against the CPU on GPU `device`
    /// (needs a GPU).
    GpuCheck {
        #[arg(long, default_value_t = 0)]
        device: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only the cases whose name contains this (e.g. `attention` for racecheck).
        #[arg(long)]
        filter: Option<String>,
        /// Skip the whole-plan checks (op cases only, e.g. under compute-sanitizer).
        #[arg(long)]
        no_plans: bool,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time our CUDA ops at the PyTorch baseline's shapes (tools/torch_ref/gpu_bench.py).
    GpuBench {
        #[arg(long, default_value_t = 0)]
        device: usize,
        /// Small shapes (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time a named model's graph on random inputs (checkpoint or seeded random weights).
    Bench {
        #[command(flatten)]
        target: commands::bench::Target,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// CUDA: capture the plan as a CUDA graph and time its replays.
        #[arg(long)]
        graph: bool,
        /// Write the per-node profile as a Chrome trace here.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Per-node profile of a named model's graph: per-op and slowest-node tables, on CUDA the
    /// roofline table (achieved TFLOP/s and GB/s of every node against the measured ceilings),
    /// and a Chrome/Perfetto trace.
    Profile {
        #[command(flatten)]
        target: commands::bench::Target,
        /// Write the Chrome/Perfetto trace here (open in ui.perfetto.dev or chrome://tracing).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Slowest nodes to list.
        #[arg(long, default_value_t = 25)]
        top: usize,
    },
    /// Run the main job on the embedded default: the FOCUS perception path (image + prompt →
    /// tokens) with seeded random weights on the bundled image.
    Demo {
        /// Image to run on (PNG/JPEG); defaults to the bundled demo image.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Device: cpu or cuda[:N].
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Storage dtype: f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 16)]
        tokens: usize,
        /// Write a Chrome/Perfetto trace of the prefill here.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Write the prefill hidden states and the tokens (safetensors) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// FOCUS end to end with seeded random weights at test size: image + instruction → LLM
    /// (image tokens, mask tokens) → segmentation mask → mask-conditioned diffusion → PNGs.
    Edit {
        /// Image to edit (PNG/JPEG); defaults to the bundled demo image.
        #[arg(long)]
        image: Option<PathBuf>,
        #[command(flatten)]
        sampling: commands::generate::Sampling,
        /// Write the edited image (PNG) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the mask (PNG) here.
        #[arg(long)]
        mask_out: Option<PathBuf>,
    },
    /// The FOCUS generation path with seeded random weights at test size: image-token codes →
    /// VQ conditioning → guided Euler sampling of the UNet with mask injection → VAE → PNG.
    Generate {
        #[command(flatten)]
        sampling: commands::generate::Sampling,
        /// Write the image (PNG) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// One reply from a Qwen2.5 checkpoint directory (config.json, tokenizer.json, safetensors)
    /// with the Instruct chat template: real weights, KV-cache decoding, sampling.
    Chat(commands::chat::ChatArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Inspect { path, metadata } => commands::inspect::run(&path, metadata),
        Cmd::Ops => commands::ops::run(),
        Cmd::GpuCheck { device, seed, filter, no_plans, out } => {
            commands::gpu_check::run(device, seed, filter.as_deref(), !no_plans, out.as_deref())
        }
        Cmd::GpuBench { device, quick, out } => commands::gpu_bench::run(device, quick, out.as_deref()),
        Cmd::Bench { target, reps, warmup, graph, profile, json } => {
            commands::bench::run(commands::bench::BenchArgs {
                target: &target,
                graph,
                profile: profile.as_deref(),
                json: json.as_deref(),
                reps,
                warmup,
                top: 10,
            })
        }
        Cmd::Profile { target, trace, top } => commands::bench::run(commands::bench::BenchArgs {
            target: &target,
            graph: false,
            profile: trace.as_deref(),
            json: None,
            reps: 3,
            warmup: 1,
            top,
        }),
        Cmd::Parity { fixture, tol, dtype, device } => commands::parity::run(&fixture, tol, &dtype, &device),
        Cmd::Kernels { check, arch, src } => commands::kernels::run(check, &arch, src.as_deref()),
        Cmd::Graph { model, config, size, dot, summary, list, dtype, launches } => {
            commands::graph::run(&commands::graph::GraphArgs {
                model: &model,
                config: &config,
                size,
                dtype: &dtype,
                dot,
                summary,
                list,
                launches,
            })
        }
        Cmd::Edit { image, sampling, out, mask_out } => commands::edit::run(commands::edit::EditArgs {
            image: image.as_deref(),
            sampling: &sampling,
            out: out.as_deref(),
            mask_out: mask_out.as_deref(),
        }),
        Cmd::Generate { sampling, out } => commands::generate::run(&sampling, out.as_deref()),
        Cmd::Chat(a) => commands::chat::run(&a),
        Cmd::Demo { image, seed, device, dtype, tokens, profile, out } => {
            commands::demo::run(commands::demo::DemoArgs {
                image: image.as_deref(),
                seed,
                device: &device,
                profile: profile.as_deref(),
                out: out.as_deref(),
                tokens,
                dtype: &dtype,
            })
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
