//! Tokenizer (a `tokenizer.json` through the `tokenizers` crate) and the Qwen2.5 Instruct chat
//! template with an image placeholder that the perception runner replaces by image tokens.
//!
//! ILLUME+'s understanding prompt (`conv_qwen2` in `illume/conversation.py`, `<image>` put at the
//! start of the user message followed by a newline, `tokenizer_image_token` in
//! `illume/mm_utils.py` tokenizing the text on each side of `<image>` separately):
//!
//! ```text
//! <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
//! <|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n
//! ```
//! (one string; the line break above is not part of it).
//!
//! `<image>` expands to the image span: the image block `<start_of_image> <start_of_level0> rows
//! of features and <end_of_line> <end_of_level0> <end_of_image>` (structure tokens are real ids,
//! [`Tokenizer::image_token_ids`]) and the adapter queries ([`ChatPrompt::with_image`];
//! layout: `focus_models::perception::ImageLayout`).

use focus_models::perception::ImageTokenIds;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TextError {
    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("tokenizer has no token '{0}' (needed by the chat template or the image block)")]
    MissingSpecial(String),
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("the prompt must contain the image placeholder {placeholder} exactly once, found {found}")]
    Placeholder { placeholder: &'static str, found: usize },
}

/// Where the image goes in a user message.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// ILLUME+'s system message (`conv_qwen2`).
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// The image block's structure tokens, in ILLUME+'s `special_tokens_ids` order (spec §2.4).
pub const IMAGE_STRUCTURE_TOKENS: [&str; 7] = [
    "<start_of_image>",
    "<end_of_image>",
    "<end_of_line>",
    "<start_of_level0>",
    "<end_of_level0>",
    "<start_of_level1>",
    "<end_of_level1>",
];

/// A user message with the image first, then a newline and `question`, as ILLUME+ writes it.
pub fn user_with_image(question: &str) -> String {
    format!("{IMAGE_PLACEHOLDER}\n{question}")
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let err = |reason: String| TextError::Load { path: path.display().to_string(), reason };
        if !path.is_file() {
            return Err(err("file not found".into()));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        Ok(Tokenizer { inner })
    }

    pub fn from_json(json: &str) -> Result<Self, TextError> {
        let inner = json
            .parse::<tokenizers::Tokenizer>()
            .map_err(|e| TextError::Load { path: "<json>".into(), reason: e.to_string() })?;
        Ok(Tokenizer { inner })
    }

    /// Token ids of `text`; special tokens written in the text (e.g. `<|im_start|>`) map to their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let e = self.inner.encode(text, false).map_err(|e| TextError::Tokenize(e.to_string()))?;
        Ok(e.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        self.inner.decode(ids, skip_special).map_err(|e| TextError::Tokenize(e.to_string()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of the image block's structure tokens in this (vision-extended) vocabulary.
    pub fn image_token_ids(&self) -> Result<ImageTokenIds, TextError> {
        let mut v = [0u32; 7];
        for (id, name) in v.iter_mut().zip(IMAGE_STRUCTURE_TOKENS) {
            *id = self.token_id(name).ok_or_else(|| TextError::MissingSpecial(name.into()))?;
        }
        Ok(ImageTokenIds {
            start_of_image: v[0],
            end_of_image: v[1],
            end_of_line: v[2],
            start_of_level: [v[3], v[5]],
            end_of_level: [v[4], v[6]],
        })
    }
}

/// A chat turn rendered with the Qwen2.5 Instruct template and split at the image.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    /// Tokens before the image.
    pub before: Vec<u32>,
    /// Tokens after the image, ending with the assistant header.
    pub after: Vec<u32>,
    /// `<|im_end|>`: generation stops there.
    pub end_of_turn: u32,
}

impl ChatPrompt {
    /// The whole prompt with `<image>` expanded to `image` (the image span's ids).
    pub fn with_image(&self, image: &[u32]) -> Vec<u32> {
        [&self.before[..], image, &self.after[..]].concat()
    }
}

/// `<|im_end|>`, after checking the tokenizer has both chat-template specials.
fn end_of_turn(tok: &Tokenizer) -> Result<u32, TextError> {
    for t in ["<|im_start|>", "<|im_end|>"] {
        tok.token_id(t).ok_or_else(|| TextError::MissingSpecial(t.into()))?;
    }
    Ok(tok.token_id("<|im_end|>").expect("checked above"))
}

/// The Qwen2.5 Instruct template around one user turn, split where the user text is: (the
/// system turn and the user header, the user turn's end and the assistant header).
fn template(system: &str) -> (String, &'static str) {
    (
        format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"),
        "<|im_end|>\n<|im_start|>assistant\n",
    )
}

/// Render `system` + `user` (which holds [`IMAGE_PLACEHOLDER`] once) in the Qwen2.5 Instruct
/// chat format and tokenize both sides of the image.
pub fn chat_prompt(tok: &Tokenizer, system: &str, user: &str) -> Result<ChatPrompt, TextError> {
    let end_of_turn = end_of_turn(tok)?;
    let found = user.matches(IMAGE_PLACEHOLDER).count();
    if found != 1 {
        return Err(TextError::Placeholder { placeholder: IMAGE_PLACEHOLDER, found });
    }
    let (u0, u1) = user.split_once(IMAGE_PLACEHOLDER).expect("counted above");
    let (head, tail) = template(system);
    Ok(ChatPrompt {
        before: tok.encode(&format!("{head}{u0}"))?,
        after: tok.encode(&format!("{u1}{tail}"))?,
        end_of_turn,
    })
}

/// A text-only user turn in the Qwen2.5 Instruct format: (prompt tokens, `<|im_end|>`).
pub fn chat_text(tok: &Tokenizer, system: &str, user: &str) -> Result<(Vec<u32>, u32), TextError> {
    let end_of_turn = end_of_turn(tok)?;
    let (head, tail) = template(system);
    Ok((tok.encode(&format!("{head}{user}{tail}"))?, end_of_turn))
}
