//! FOCUS end to end (spec §1): image + instruction → the LLM, whose prompt carries the image
//! (both encoder branches), the instruction, the target's class name and the mask tokens, emits
//! an ILLUME+ image-token block (constrained to the grammar) → the segmentation decoder turns
//! the mask-token states into masks scored against the pooled class-name states → the best
//! mask and the emitted codes drive the mask-conditioned diffusion decoder → the edited image.

use crate::generation::{
    self, GenerateOptions, GeneratedImage, GenerationConfig, GenerationError, Generator,
};
use crate::image_tokens::{ImageGrammar, ImageVocab};
use crate::perception::{Image, Perception, PerceptionError};
use crate::runtime::Runtime;
use crate::segmentation::{self, Segmentation, SegmentationError, Segmenter};
use focus_engine::sampling::SamplingParams;
use focus_engine::{Device, EngineError, MemoryWeights, WeightSource};
use focus_graph::{DType, Graph};
use focus_models::mask2former::{PixelDecoderConfig, TransformerDecoderConfig};
use focus_models::perception::{self, PerceptionConfig, PerceptionShape};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EditError {
    #[error(transparent)]
    Perception(#[from] PerceptionError),
    #[error(transparent)]
    Segmentation(#[from] SegmentationError),
    #[error(transparent)]
    Generation(#[from] GenerationError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Graph(#[from] focus_graph::GraphError),
    #[error("edit: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, EditError>;

#[derive(Clone, Debug)]
pub struct EditConfig {
    pub perception: PerceptionConfig,
    pub pixel_decoder: PixelDecoderConfig,
    pub mask_decoder: TransformerDecoderConfig,
    pub generation: GenerationConfig,
    pub vocab: ImageVocab,
    /// Semantic and pixel code grids of the emitted image block.
    pub grids: [[usize; 2]; 2],
    /// The diffusion decoder's latent grid.
    pub latent: [usize; 2],
    pub vit_hw: [usize; 2],
    pub hr_hw: [usize; 2],
    /// KV-cache positions.
    pub capacity: usize,
}

impl EditConfig {
    /// Every part at test size, wired as FOCUS wires them (random weights).
    pub fn demo() -> Self {
        let perception = PerceptionConfig::demo();
        let d = perception.llm.hidden_size;
        let t = &perception.image_token_ids;
        let generation = GenerationConfig::demo();
        let vocab = ImageVocab {
            start_of_image: t.start_of_image as usize,
            end_of_image: t.end_of_image as usize,
            end_of_line: t.end_of_line as usize,
            start_of_level: t.start_of_level.map(|x| x as usize),
            end_of_level: t.end_of_level.map(|x| x as usize),
            // Code ranges inside the demo LLM's 512-token vocabulary.
            code_base: [256, 256 + generation.semantic.codebook_size],
            codes: [generation.semantic.codebook_size, generation.pixel.codebook_size],
        };
        EditConfig {
            pixel_decoder: PixelDecoderConfig {
                in_channels: perception.convnext.dims.clone(),
                ..PixelDecoderConfig::tiny()
            },
            mask_decoder: TransformerDecoderConfig { llm_hidden: d, ..TransformerDecoderConfig::tiny() },
            perception,
            generation,
            vocab,
            grids: [[5, 5], [8, 8]],
            latent: [32, 32],
            vit_hw: [112, 112],
            hr_hw: [224, 224],
            capacity: 512,
        }
    }

    fn grammar(&self) -> ImageGrammar {
        ImageGrammar { vocab: self.vocab.clone(), grids: self.grids.map(|[h, w]| (h, w)) }
    }

    fn mask_hw(&self) -> Result<[usize; 2]> {
        let m = self
            .generation
            .mask
            .as_ref()
            .ok_or_else(|| EditError::Invalid("the decoder has no mask injection".into()))?;
        Ok(self.latent.map(|s| s * m.image_scale))
    }

    /// Every graph the editor compiles for an `image_hw` image and a prompt split (e.g. to draw
    /// random weights for all of them).
    pub fn graphs(
        &self,
        dtype: DType,
        image_hw: [usize; 2],
        (n_pre, n_post): (usize, usize),
    ) -> Result<Vec<Graph>> {
        let shape = PerceptionShape {
            vit_hw: self.vit_hw,
            hr_hw: self.hr_hw,
            raw_image: Some(image_hw),
            n_pre,
            n_post,
            capacity: self.capacity,
            dtype,
            seg_queries: self.mask_decoder.num_queries,
        };
        let mut v = vec![perception::prefill_graph(&self.perception, &shape)?];
        let (px, md) = self.decoders(dtype);
        v.push(segmentation::graph(&px, &md, (self.hr_hw, 1, self.mask_hw()?))?);
        v.extend(generation::graphs(&self.generation, dtype, self.grids, self.latent)?);
        Ok(v)
    }

    fn decoders(&self, dtype: DType) -> (PixelDecoderConfig, TransformerDecoderConfig) {
        (
            PixelDecoderConfig { dtype, ..self.pixel_decoder.clone() },
            TransformerDecoderConfig { dtype, ..self.mask_decoder.clone() },
        )
    }
}

/// Seeded random weights for every parameter of `graphs` (a name shared by two graphs must
/// have one shape).
pub fn random_weights(graphs: &[Graph], seed: u64) -> Result<MemoryWeights> {
    let mut all = MemoryWeights::new();
    let mut shapes = std::collections::HashMap::new();
    for g in graphs {
        for (name, dt, shape, bytes) in MemoryWeights::random_for(g, seed).sorted() {
            match shapes.insert(name.to_string(), shape.to_vec()) {
                Some(prev) if prev != shape => {
                    return Err(EditError::Invalid(format!(
                        "parameter {name} declared as {prev:?} and {shape:?}"
                    )))
                }
                Some(_) => {}
                None => all.insert(name, dt, shape.to_vec(), bytes.to_vec()),
            }
        }
    }
    Ok(all)
}

/// One edit and where the time went.
#[derive(Clone, Debug)]
pub struct Edit {
    /// The generated image block.
    pub tokens: Vec<u32>,
    /// Semantic and pixel codes parsed from it.
    pub codes: [Vec<usize>; 2],
    pub segmentation: Segmentation,
    /// The mask-token query with the highest class score, and its mask `[h, w]`.
    pub query: usize,
    pub mask: Vec<f32>,
    pub image: GeneratedImage,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub segment_ms: f64,
}

pub struct Editor {
    cfg: EditConfig,
    rt: Runtime,
    perception: Perception,
    segmenter: Segmenter,
    generator: Generator,
}

impl Editor {
    pub fn new(
        cfg: EditConfig,
        weights: Arc<dyn WeightSource>,
        device: Device,
        dtype: DType,
    ) -> Result<Self> {
        let n = cfg.mask_decoder.num_queries;
        // One activation arena for every stage: they run one after another.
        let rt = Runtime::new(weights, device);
        let perception =
            Perception::new(cfg.perception.clone(), rt.clone(), dtype, cfg.vit_hw, cfg.hr_hw, cfg.capacity)?
                .with_seg_queries(n);
        let (px, md) = cfg.decoders(dtype);
        let segmenter = Segmenter::new(&px, &md, (cfg.hr_hw, 1, cfg.mask_hw()?), &rt)?;
        let generator = Generator::new(cfg.generation.clone(), &rt, dtype, cfg.grids, cfg.latent)?;
        Ok(Editor { cfg, rt, perception, segmenter, generator })
    }

    /// Activation memory: (the arena every stage shares, what the stages' own arenas would
    /// total, the plans compiled so far).
    pub fn arena_use(&self) -> (usize, usize, usize) {
        let plans: Vec<&focus_engine::Plan> =
            self.perception.plans().chain([self.segmenter.plan()]).chain(self.generator.plans()).collect();
        let own: usize = plans.iter().map(|p| p.stats().arena_bytes).sum();
        (self.rt.arena_bytes(), own, plans.len())
    }

    /// Edit `image` by `instruction` (token ids) on the object named by `class_name` (token ids,
    /// non-empty): greedy image tokens, the best-scoring mask, then sampling with `opts`.
    pub fn edit(
        &mut self,
        image: &Image,
        instruction: &[u32],
        class_name: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Edit> {
        if class_name.is_empty() {
            return Err(EditError::Invalid("the class name has no tokens".into()));
        }
        let mut grammar = self.cfg.grammar();
        let greedy = SamplingParams { temperature: 0.0, ..SamplingParams::default() };
        let t = Instant::now();
        let g = self.perception.generate(
            image,
            instruction,
            class_name,
            &greedy,
            grammar.len(),
            None,
            Some(&mut grammar),
            false,
        )?;
        let lm_ms = t.elapsed().as_secs_f64() * 1e3;
        let codes = grammar
            .parse(&g.tokens.iter().map(|&t| t as usize).collect::<Vec<_>>())
            .map_err(EditError::Invalid)?;

        // The prefill left the mask-token states, the class name's (mean over its tokens) and
        // ConvNeXt's stages in state buffers: the segmenter copies them on the device.
        let prefill =
            self.perception.prefill_plan([image.h, image.w], instruction.len(), class_name.len())?;
        let t = Instant::now();
        let segmentation = self.segmenter.segment_from(prefill)?;
        let segment_ms = t.elapsed().as_secs_f64() * 1e3;
        let query = segmentation.best;
        let [mh, mw] = self.cfg.mask_hw()?;
        // The host copy is for the caller; the generator takes the device's.
        let mask = segmentation.masks.to_f32()[query * mh * mw..(query + 1) * mh * mw].to_vec();
        self.generator.take_mask(self.segmenter.plan())?;
        let image = self.generator.generate(&codes[0], &codes[1], None, opts)?;
        Ok(Edit {
            tokens: g.tokens,
            codes,
            segmentation,
            query,
            mask,
            image,
            prefill_ms: g.prefill_ms,
            decode_ms: lm_ms - g.prefill_ms,
            segment_ms,
        })
    }
}
