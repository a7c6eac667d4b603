//! The ILLUME+ image-token grammar (spec §2.4): special-token and code-id layout of the
//! extended Qwen2.5 vocabulary, a constraint that forces a well-formed image block during
//! generation, and parsing of a generated block back into code grids.
//!
//! Block: `<soi> <sol0> h1 × (w1 semantic ids, <eol>) <eol0> <sol1> h2 × (w2 pixel ids, <eol>)
//! <eol1> <eoi>`; length 1 + (2 + h1(w1+1)) + (2 + h2(w2+1)) + 1. Understanding input uses the
//! same block with continuous features at the code positions
//! (`focus_models::perception::ImageLayout`).

use focus_engine::sampling::{Allowed, Constraint};
use focus_models::perception::{ImageLayout, ImageTokenIds};

/// Token ids of the extended vocabulary (ILLUME+ on Qwen2.5).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageVocab {
    pub start_of_image: usize,
    pub end_of_image: usize,
    pub end_of_line: usize,
    pub start_of_level: [usize; 2],
    pub end_of_level: [usize; 2],
    /// First id of each level's code range.
    pub code_base: [usize; 2],
    /// Codebook sizes of the semantic and pixel levels.
    pub codes: [usize; 2],
}

impl ImageVocab {
    /// The ids the ILLUME+ vocabulary-extension script assigns (spec §2.4).
    pub fn illume_plus() -> Self {
        ImageVocab {
            start_of_image: 151665,
            end_of_image: 151666,
            end_of_line: 151667,
            start_of_level: [151668, 151670],
            end_of_level: [151669, 151671],
            code_base: [151704, 184472],
            codes: [32768, 98304],
        }
    }

    /// The structure-token ids, as the perception path's config takes them.
    pub fn structure_ids(&self) -> ImageTokenIds {
        ImageTokenIds {
            start_of_image: self.start_of_image as u32,
            end_of_image: self.end_of_image as u32,
            end_of_line: self.end_of_line as u32,
            start_of_level: self.start_of_level.map(|x| x as u32),
            end_of_level: self.end_of_level.map(|x| x as u32),
        }
    }

    /// Rows of the embedding table the extended vocabulary needs.
    pub fn vocab_end(&self) -> usize {
        self.code_base[1] + self.codes[1]
    }
}

/// The block's token sequence as a position → allowed-set rule.
#[derive(Clone, Debug)]
pub struct ImageGrammar {
    pub vocab: ImageVocab,
    /// (rows, cols) of the semantic and pixel grids.
    pub grids: [(usize, usize); 2],
}

impl ImageGrammar {
    /// The same block as an input layout (no adapter queries).
    pub fn layout(&self) -> ImageLayout {
        ImageLayout { grids: self.grids.iter().map(|&(h, w)| [h, w]).collect(), queries: 0 }
    }

    pub fn len(&self) -> usize {
        1 + self.grids.iter().map(|(h, w)| 2 + h * (w + 1)).sum::<usize>() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// What may appear at position `k` of the block (beyond the end: nothing but `<eoi>`).
    pub fn allowed_at(&self, k: usize) -> Allowed {
        let v = &self.vocab;
        if k == 0 {
            return Allowed::Set(vec![v.start_of_image]);
        }
        let mut k = k - 1;
        for (level, &(h, w)) in self.grids.iter().enumerate() {
            let body = h * (w + 1);
            if k == 0 {
                return Allowed::Set(vec![v.start_of_level[level]]);
            }
            k -= 1;
            if k < body {
                return if k % (w + 1) == w {
                    Allowed::Set(vec![v.end_of_line])
                } else {
                    Allowed::Range(v.code_base[level], v.code_base[level] + v.codes[level])
                };
            }
            k -= body;
            if k == 0 {
                return Allowed::Set(vec![v.end_of_level[level]]);
            }
            k -= 1;
        }
        Allowed::Set(vec![v.end_of_image])
    }

    /// Code grids (row-major) of a complete block, or a description of where it is malformed.
    pub fn parse(&self, tokens: &[usize]) -> Result<[Vec<usize>; 2], String> {
        if tokens.len() != self.len() {
            return Err(format!("image block has {} tokens, expected {}", tokens.len(), self.len()));
        }
        let mut grids = [Vec::new(), Vec::new()];
        for (k, &t) in tokens.iter().enumerate() {
            match self.allowed_at(k) {
                Allowed::Range(a, b) if (a..b).contains(&t) => {
                    let level = (a != self.vocab.code_base[0]) as usize;
                    grids[level].push(t - a);
                }
                Allowed::Set(s) if s.contains(&t) => {}
                other => return Err(format!("token {t} at position {k} is not allowed there ({other:?})")),
            }
        }
        Ok(grids)
    }
}

/// Forces the image block from the first generated token on.
impl Constraint for ImageGrammar {
    fn allowed(&mut self, generated: &[usize]) -> Allowed {
        self.allowed_at(generated.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_layout_matches_the_spec_table() {
        // 256×256: semantic 9×9, pixel 16×16 → 368 tokens (spec §2.4 table).
        let g = ImageGrammar { vocab: ImageVocab::illume_plus(), grids: [(9, 9), (16, 16)] };
        assert_eq!(g.len(), 368);
        // 512×384: 16×12 and 32×24 → 1014.
        assert_eq!(ImageGrammar { grids: [(16, 12), (32, 24)], ..g.clone() }.len(), 1014);
        assert_eq!(ImageVocab::illume_plus().vocab_end(), 151936 + 131111 - 271);
        let v = &g.vocab;
        assert_eq!(g.allowed_at(0), Allowed::Set(vec![v.start_of_image]));
        assert_eq!(g.allowed_at(1), Allowed::Set(vec![v.start_of_level[0]]));
        assert_eq!(g.allowed_at(2), Allowed::Range(151704, 151704 + 32768));
        assert_eq!(g.allowed_at(2 + 9), Allowed::Set(vec![v.end_of_line]));
        assert_eq!(g.allowed_at(2 + 90), Allowed::Set(vec![v.end_of_level[0]]));
        assert_eq!(g.allowed_at(2 + 91), Allowed::Set(vec![v.start_of_level[1]]));
        assert_eq!(g.allowed_at(2 + 92), Allowed::Range(184472, 184472 + 98304));
        assert_eq!(g.allowed_at(367), Allowed::Set(vec![v.end_of_image]));
    }

    #[test]
    fn generation_grammar_and_understanding_layout_agree() {
        use focus_models::perception::ImageSlot;
        let g = ImageGrammar { vocab: ImageVocab::illume_plus(), grids: [(2, 3), (3, 2)] };
        let ids = g.vocab.structure_ids();
        assert_eq!(ids, ImageTokenIds::illume_plus());
        let slots = g.layout().slots(&ids);
        assert_eq!(slots.len(), g.len());
        for (k, slot) in slots.into_iter().enumerate() {
            match (slot, g.allowed_at(k)) {
                (ImageSlot::Token(id), Allowed::Set(s)) => assert_eq!(s, vec![id as usize], "position {k}"),
                (ImageSlot::Feature { level, .. }, Allowed::Range(a, _)) => {
                    assert_eq!(a, g.vocab.code_base[level], "position {k}")
                }
                (slot, allowed) => panic!("position {k}: layout {slot:?}, grammar {allowed:?}"),
            }
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_misplaced_tokens() {
        let g = ImageGrammar { vocab: ImageVocab::illume_plus(), grids: [(2, 3), (3, 2)] };
        let mut toks = Vec::new();
        let mut want = [Vec::new(), Vec::new()];
        for k in 0..g.len() {
            toks.push(match g.allowed_at(k) {
                Allowed::Range(a, _) => {
                    let code = (k * 7919) % 1000;
                    want[(a != g.vocab.code_base[0]) as usize].push(code);
                    a + code
                }
                Allowed::Set(s) => s[0],
                Allowed::All => unreachable!(),
            });
        }
        assert_eq!(g.parse(&toks).unwrap(), want);
        assert_eq!(want[0].len(), 6);
        assert_eq!(want[1].len(), 6);
        toks[3] = g.vocab.end_of_line;
        assert!(g.parse(&toks).unwrap_err().contains("position 3"));
        assert!(g.parse(&toks[1..]).is_err());
    }
}
