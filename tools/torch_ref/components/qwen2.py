"""Qwen2.5 LLM (spec §2): transformers Qwen2ForCausalLM."""

import torch

NAME = "qwen2"

_COMMON = dict(hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1_000_000.0, tie_word_embeddings=True,
               max_position_embeddings=32768, use_sliding_window=False)
CONFIGS = {
    "tiny": dict(_COMMON, vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, seq_len=8, gen_tokens=4),
    "small": dict(_COMMON, vocab_size=1024, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, seq_len=32, gen_tokens=8),
    "paper": dict(_COMMON, vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                  num_attention_heads=16, num_key_value_heads=2, seq_len=1024, gen_tokens=16),
}
_RUN_KEYS = ("seq_len", "gen_tokens")


def hf_config(cfg):
    from transformers import Qwen2Config

    kw = {k: v for k, v in cfg.items() if k not in _RUN_KEYS}
    c = Qwen2Config(**kw)
    c._attn_implementation = "eager"
    return c


def build(cfg):
    from transformers import Qwen2ForCausalLM

    m = Qwen2ForCausalLM(hf_config(cfg))
    m.eval()
    return m


def checkpoint_state(model, cfg):
    sd = dict(model.state_dict())
    if cfg.get("tie_word_embeddings", True):
        sd.pop("lm_head.weight", None)  # absent in tied HF checkpoints (spec §2.3)
    return sd


def make_inputs(cfg, g):
    ids = torch.randint(0, cfg["vocab_size"], (1, cfg["seq_len"]), generator=g, dtype=torch.int64)
    return {"input_ids": ids}


@torch.no_grad()
def run(model, inputs, cfg):
    ids = inputs["input_ids"]
    out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    hs = out.hidden_states  # embeddings, after layer 0..L-2, final (post-norm)
    outputs = {"logits": out.logits, "last_hidden_state": hs[-1]}
    inter = {"embeddings": hs[0]}
    for i in range(1, len(hs) - 1):
        inter[f"layer.{i - 1}"] = hs[i]
    # greedy generation without cache: recompute full prefix each step; every step's last
    # logits too, so a cached decode is checked by value, not only by its argmax
    seq = ids
    toks, steps = [], []
    for _ in range(cfg["gen_tokens"]):
        logits = model(input_ids=seq, use_cache=False).logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True)
        toks.append(nxt)
        steps.append(logits)
        seq = torch.cat([seq, nxt], 1)
    outputs["tokens"] = torch.cat(toks, 1)
    outputs["step_logits"] = torch.cat(steps, 0)
    return outputs, inter
