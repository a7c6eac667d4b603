//! Tokenizer (a `tokenizer.json` through the `tokenizers` crate) and the Qwen2.5 Instruct chat
//! template with an image placeholder that the perception runner replaces by image tokens.

use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TextError {
    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("tokenizer has no token '{0}' (needed by the chat template)")]
    MissingSpecial(String),
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("the prompt must contain the image placeholder {placeholder} exactly once, found {found}")]
    Placeholder { placeholder: &'static str, found: usize },
}

/// Where the image goes in a user message.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

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

/// Render `system` + `user` (which holds [`IMAGE_PLACEHOLDER`] once) in the Qwen2.5 Instruct
/// chat format and tokenize both sides of the image.
pub fn chat_prompt(tok: &Tokenizer, system: &str, user: &str) -> Result<ChatPrompt, TextError> {
    for t in ["<|im_start|>", "<|im_end|>"] {
        tok.token_id(t).ok_or_else(|| TextError::MissingSpecial(t.into()))?;
    }
    let found = user.matches(IMAGE_PLACEHOLDER).count();
    if found != 1 {
        return Err(TextError::Placeholder { placeholder: IMAGE_PLACEHOLDER, found });
    }
    let (u0, u1) = user.split_once(IMAGE_PLACEHOLDER).expect("counted above");
    let before = format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{u0}");
    let after = format!("{u1}<|im_end|>\n<|im_start|>assistant\n");
    Ok(ChatPrompt {
        before: tok.encode(&before)?,
        after: tok.encode(&after)?,
        end_of_turn: tok.token_id("<|im_end|>").expect("checked above"),
    })
}
