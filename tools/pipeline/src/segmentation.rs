//! The segmentation runner (spec §9): ConvNeXt's stages → Mask2Former's pixel decoder →
//! PSALM's masked-attention decoder queried by the LLM's mask-token states and scored against
//! pooled class-name states → per-query mask probabilities at a chosen size and class scores.
//! One plan per feature-map size.

use crate::generation::MASK;
use crate::runtime::Runtime;
use focus_engine::{EngineError, Plan, Tensor};
use focus_graph::{DType, Graph, GraphBuilder, GraphError, ResizeMode, UnaryOp};
use focus_models::mask2former::{self, PixelDecoderConfig, TransformerDecoderConfig};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SegmentationError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("segmentation: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, SegmentationError>;

/// The decoder's output for one image.
#[derive(Clone, Debug)]
pub struct Segmentation {
    /// `[N, h, w]` mask probabilities at the requested size.
    pub masks: Tensor,
    /// `[N, K]` class scores (dot products).
    pub scores: Tensor,
    /// `[N, hidden]` normalised query states ("instance embeddings").
    pub queries: Tensor,
    /// The query with the highest score over the classes (the first on ties), whose mask the
    /// plan also wrote into its [`MASK`] state.
    pub best: usize,
}

pub struct Segmenter {
    plan: Plan,
    queries: usize,
    classes: usize,
    llm_hidden: usize,
}

/// The decoder graph: states `res2`..`res5` (channels-last, strides 4..32 of an `image`²
/// input), `seg_hidden [N, llm]`, `class_hidden [K, llm]` (the perception prefill's
/// `SEG_STATES`, copied over on the device); outputs `masks [N, out_h, out_w]`
/// (sigmoid of the last layer's mask logits, bilinear to `out`), `scores`, `queries`, and
/// `best [1]`, the best-scoring query, whose mask it writes into the [`MASK`] state
/// `[1, out_h, out_w, 1]` for the generator to take over on the device.
pub fn graph(
    pixel: &PixelDecoderConfig,
    decoder: &TransformerDecoderConfig,
    (image, classes, out): ([usize; 2], usize, [usize; 2]),
) -> Result<Graph> {
    pixel.validate().map_err(SegmentationError::Invalid)?;
    decoder.validate().map_err(SegmentationError::Invalid)?;
    if pixel.mask_dim != decoder.mask_dim || pixel.conv_dim != decoder.hidden {
        return Err(SegmentationError::Invalid(format!(
            "pixel decoder (conv {}, mask {}) and transformer decoder (hidden {}, mask {}) disagree",
            pixel.conv_dim, pixel.mask_dim, decoder.hidden, decoder.mask_dim
        )));
    }
    if image.iter().any(|s| s % 32 != 0 || *s == 0) || classes == 0 || out.contains(&0) {
        return Err(SegmentationError::Invalid(format!(
            "image {image:?} (multiple of 32), {classes} classes, output {out:?}"
        )));
    }
    let mut b = GraphBuilder::new();
    let mut feats = Vec::new();
    for (i, &ch) in pixel.in_channels.iter().enumerate() {
        let s = 4 << i;
        feats.push(b.state(&format!("res{}", i + 2), pixel.dtype, [1, image[0] / s, image[1] / s, ch])?);
    }
    let (n, d) = (decoder.num_queries, decoder.llm_hidden);
    let seg = b.state("seg_hidden", decoder.dtype, [n, d])?;
    let seg = b.reshape(seg, [1, n, d])?;
    let cls = b.state("class_hidden", decoder.dtype, [classes, d])?;
    let cls = b.reshape(cls, [1, classes, d])?;
    let (mf, maps, _) = mask2former::pixel_decoder(&mut b, pixel, &feats)?;
    let (preds, _) = mask2former::transformer_decoder(&mut b, decoder, mf, &maps, (seg, cls))?;
    let last = preds.last().expect("the initial prediction at least");
    let [_, _, mh, mw] = b.dims(last.masks, "[B, N, h, w]")?;
    let m = b.reshape(last.masks, [n, mh, mw, 1])?;
    let m = if [mh, mw] != out { b.resize(m, ResizeMode::Bilinear, out, false, false)? } else { m };
    let m = b.unary(UnaryOp::Sigmoid, m)?;
    let scores = b.reshape(last.logits, [n, classes])?;
    let per_query = b.reduce(focus_graph::ReduceOp::Max, scores, &[1], false)?;
    let best = b.argmax(per_query, 0, true)?;
    let best_mask = b.index_select(m, best, 0)?;
    let state = b.state(MASK, decoder.dtype, [1, out[0], out[1], 1])?;
    let zero = b.constant_i32([1], &[0])?;
    let state = b.write_slice(state, best_mask, zero, 0)?;
    b.output("best", best)?;
    b.output(MASK, state)?;
    let m = b.cast(m, DType::F32)?;
    let m = b.reshape(m, [n, out[0], out[1]])?;
    b.output("masks", m)?;
    b.output("scores", scores)?;
    let q = b.reshape(last.queries, [n, decoder.hidden])?;
    b.output("queries", q)?;
    Ok(b.finish()?)
}

impl Segmenter {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn new(
        pixel: &PixelDecoderConfig,
        decoder: &TransformerDecoderConfig,
        (image, classes, out): ([usize; 2], usize, [usize; 2]),
        rt: &Runtime,
    ) -> Result<Self> {
        let g = graph(pixel, decoder, (image, classes, out))?;
        let mut plan = rt.compile(&g)?;
        // The best mask stays on the device, in the MASK state.
        plan.copy_outputs(Some(&["masks", "scores", "queries", "best"]))?;
        Ok(Segmenter { plan, queries: decoder.num_queries, classes, llm_hidden: decoder.llm_hidden })
    }

    /// Decode `features` (res2..res5), the mask-token states `[N, llm]` and the class-name
    /// states `[K, llm]`.
    pub fn segment(
        &mut self,
        features: &[Tensor],
        seg_hidden: &Tensor,
        class_hidden: &Tensor,
    ) -> Result<Segmentation> {
        if features.len() != 4 {
            return Err(SegmentationError::Invalid(format!(
                "{} feature maps, expected res2..res5",
                features.len()
            )));
        }
        let want = [
            (seg_hidden, self.queries, "mask-token states"),
            (class_hidden, self.classes, "class-name states"),
        ];
        for (t, rows, what) in want {
            if t.shape().dims() != [rows, self.llm_hidden] {
                return Err(SegmentationError::Invalid(format!(
                    "{what} are {:?}, expected [{rows}, {}]",
                    t.shape().dims(),
                    self.llm_hidden
                )));
            }
        }
        let names = ["res2", "res3", "res4", "res5"];
        for (name, t) in
            names.iter().zip(features).chain([(&"seg_hidden", seg_hidden), (&"class_hidden", class_hidden)])
        {
            self.plan.set_state(name, &t.view())?;
        }
        self.run()
    }

    /// Decode what a perception prefill with mask tokens left in its `SEG_STATES`, copied on
    /// the device (no host round trip).
    pub fn segment_from(&mut self, prefill: &Plan) -> Result<Segmentation> {
        for name in focus_models::perception::SEG_STATES {
            self.plan.copy_state_from(prefill, name)?;
        }
        self.run()
    }

    fn run(&mut self) -> Result<Segmentation> {
        let mut out = self.plan.run(&[])?;
        let mut take = |name: &str| out.remove(name).expect("the graph outputs it");
        let best = take("best").to_f32()[0] as usize;
        Ok(Segmentation { masks: take("masks"), scores: take("scores"), queries: take("queries"), best })
    }
}
