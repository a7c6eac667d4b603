//! `focus chat` end to end on a test-size checkpoint directory: a reply with its timing line,
//! and a clear error (non-zero exit) for a directory without a checkpoint.

use std::process::Command;

#[test]
fn focus_chat_replies_from_a_checkpoint_directory() {
    let dir = std::env::temp_dir().join(format!("focus-chat-cli-{}", std::process::id()));
    focus_pipeline::chat::write_test_checkpoint(&dir, 24, 1).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_focus"))
        .args(["chat", "--model", dir.to_str().unwrap(), "--prompt", "describe the image"])
        .args(["--max-tokens", "5", "--dtype", "f32", "--capacity", "64", "--seed", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("-- ") && last.contains("prefill") && last.contains("tokens/s"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_focus"))
        .args(["chat", "--model", dir.to_str().unwrap(), "--prompt", "hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("config.json"), "{stderr}");
}
