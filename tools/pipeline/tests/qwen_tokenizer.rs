//! The real Qwen2/Qwen2.5 tokenizer (151,643 byte-level BPE tokens + Qwen2.5's added tokens) through
//! `Tokenizer`: encodings equal to tiktoken's on the same vocabulary, and the chat template.
//! Fixtures come from fixtures/make_qwen_tokenizer.py.

use flate2::read::GzDecoder;
use focus_pipeline::text::{chat_prompt, Tokenizer};
use serde_json::Value;
use std::io::Read;
use std::sync::OnceLock;

/// tokenizer.json assembled from the byte-level base and the merges in rank order (merge k makes
/// token 256 + k), which keeps the committed form at 0.7 MB instead of a 7 MB tokenizer.json.
fn qwen() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let mut json: Value =
            serde_json::from_str(include_str!("../fixtures/qwen2_tokenizer_base.json")).unwrap();
        let mut merges = String::new();
        GzDecoder::new(&include_bytes!("../fixtures/qwen2_merges.txt.gz")[..])
            .read_to_string(&mut merges)
            .unwrap();
        let model = json["model"].as_object_mut().unwrap();
        let vocab = model["vocab"].as_object_mut().unwrap();
        assert_eq!(vocab.len(), 256);
        let mut pairs = Vec::new();
        for line in merges.lines() {
            let (a, b) = line.split_once(' ').unwrap();
            let id = vocab.len();
            assert!(vocab.insert(format!("{a}{b}"), id.into()).is_none(), "token {a}{b} twice");
            pairs.push(serde_json::json!([a, b]));
        }
        assert_eq!(vocab.len(), 151_643);
        model["merges"] = Value::Array(pairs);
        Tokenizer::from_json(&json.to_string()).unwrap()
    })
}

fn cases() -> Value {
    serde_json::from_str(include_str!("../fixtures/qwen2_cases.json")).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn encodes_like_tiktoken_and_decodes_back() {
    let tok = qwen();
    let cases = cases();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let got = tok.encode(text).unwrap();
        assert_eq!(got, ids(&c["ids"]), "{text:?}");
        // Only text that NFC changes decodes to something else.
        let want = c.get("decoded").and_then(Value::as_str).unwrap_or(text);
        assert_eq!(tok.decode(&got, false).unwrap(), want, "{text:?}");
    }
}

#[test]
fn added_tokens_have_the_qwen25_ids() {
    let tok = qwen();
    for (t, id) in [
        ("<|endoftext|>", 151_643),
        ("<|im_start|>", 151_644),
        ("<|im_end|>", 151_645),
        ("<|vision_start|>", 151_652),
        ("<|vision_end|>", 151_653),
        ("<|image_pad|>", 151_655),
        ("<tool_call>", 151_657),
        ("<|file_sep|>", 151_664),
    ] {
        assert_eq!(tok.token_id(t), Some(id), "{t}");
    }
    assert_eq!(tok.vocab_size(), 151_665);
    // <tool_call> is an added token but not a special one: skipping specials keeps it.
    let hello = tok.encode("Hello").unwrap();
    let ids = [vec![151_644], hello, vec![151_645, 151_657]].concat();
    assert_eq!(tok.decode(&ids, true).unwrap(), "Hello<tool_call>");
}

#[test]
fn chat_prompt_matches_the_qwen25_template() {
    let tok = qwen();
    for c in cases()["chats"].as_array().unwrap() {
        let (system, user) = (c["system"].as_str().unwrap(), c["user"].as_str().unwrap());
        let p = chat_prompt(tok, system, user).unwrap();
        assert_eq!(p.before, ids(&c["before"]), "{user:?}");
        assert_eq!(p.after, ids(&c["after"]), "{user:?}");
        assert_eq!(p.end_of_turn, 151_645);
    }
}
