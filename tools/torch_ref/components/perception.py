"""The chained FOCUS perception path (spec §1, §2.4, §3.5, §5), composed of the single-component
modules (their code and checkpoint names unchanged), exactly as the engine's
`models/src/perception.rs` wires it:

1. `input.image_vit` [1,3,Hv,Wv] (normalised) -> Qwen2-VL ViT (`visual.*`) -> vit embeds [Nv, d_vit]
   (merged 2x2 units, row-major over the (Hv/28) x (Wv/28) grid).
2. `input.image_hr` [1,3,Hc,Wc] (normalised) -> ConvNeXt (timm names `stem.*`, `stages.*`;
   the classifier head is not part of the checkpoint) -> res2..res5.
3. `projector_1`: Linear(d_vit->d) -> GELU(erf) -> Linear(d->d) -> tokens [1,Nv,d].
4. fusion (`fusion.*`): queries = tokens, keys/values = res5 -> fused [1,Nv,d].
5. adapter (`adapter.*`) over res3, res4, res5 -> queries [1,nq,d].
6. Qwen2 LLM (`model.*`, tied head) on `inputs_embeds`: the embeddings of the text ids
   `input.input_ids[:, :n_pre]` and `[:, n_pre+S:]` around the image span (S positions), built the
   way ILLUME+ builds its understanding input (`illume_arch.py` `encode_images` with
   `anyres_dualvitok`, `_reformat_image_sequence`, `_add_eol`): the fused tokens as an h x w grid
   with the `<end_of_line>` embedding appended to every row, wrapped in `<start_of_level0>` ..
   `<end_of_level0>` and `<start_of_image>` .. `<end_of_image>` (embeddings of the config's
   `image_token_ids`), then the adapter queries (FOCUS; their place after the block is inferred).
   The engine has no pixel-encoder branch, so ILLUME+'s level-1 block is absent.
   `input.input_ids` carries the structure-token ids over the span and 0 at feature and query
   positions (the engine embeds the ids there and splices features in).
Outputs: `logits` [1,L,V], `last_hidden_state` [1,L,d], and `tokens` [1,gen]: greedy
continuation (full recompute each step, appending each new token's embedding).
Intermediates: vit_embeds, res5, fused, adapter_tokens, image_span (the span's embeddings)."""

import torch
import torch.nn.functional as F
from torch import nn

from . import adapter as adapter_mod
from . import convnext as convnext_mod
from . import fusion as fusion_mod
from . import qwen2 as qwen2_mod
from . import qwen2vl_vit as vit_mod
from ._vit import run_tower

NAME = "perception"


def _tiny():
    vit = dict(vit_mod.CONFIGS["tiny"])
    cnx = dict(convnext_mod.CONFIGS["tiny"])
    d = 64
    dims = cnx["dims"]
    hv, wv = vit["image_hw"]
    hc, wc = cnx["image_hw"]
    return dict(
        vit=vit,
        convnext=cnx,
        fusion=dict(fusion_mod.CONFIGS["tiny"], d_q=d, d_kv=dims[3], d=d, heads=4, n_q=0, kv_hw=[hc // 32, wc // 32]),
        adapter=dict(adapter_mod.CONFIGS["tiny"], in_channels=dims[1:], d=32, heads=4, n_queries=4, llm_hidden=d,
                     feat_hw=[[hc // 8, wc // 8], [hc // 16, wc // 16], [hc // 32, wc // 32]]),
        llm=dict(qwen2_mod.CONFIGS["tiny"], hidden_size=d, seq_len=0, gen_tokens=0),
        projector="projector_1",
        # ILLUME+ order (<start_of_image>, <end_of_image>, <end_of_line>, <start_of_level0>,
        # <end_of_level0>, <start_of_level1>, <end_of_level1>): the vocabulary's last seven ids,
        # as ILLUME+'s follow its text tokens.
        image_token_ids=dict(start_of_image=121, end_of_image=122, end_of_line=123, start_of_level=[124, 126],
                             end_of_level=[125, 127]),
        n_pre=3,
        n_post=2,
        gen_tokens=3,
    )


CONFIGS = {"tiny": _tiny()}


def grid(cfg):
    """(rows, cols) of the fused-token grid: the ViT patch grid over the 2x2 merge."""
    v = cfg["vit"]
    hv, wv = v["image_hw"]
    m = v["spatial_merge_size"]
    return hv // v["patch_size"] // m, wv // v["patch_size"] // m


def span_ids(cfg):
    """The image span's token ids: structure tokens, 0 at feature and query positions."""
    t = cfg["image_token_ids"]
    h, w = grid(cfg)
    row = [0] * w + [t["end_of_line"]]
    block = [t["start_of_image"], t["start_of_level"][0]] + row * h + [t["end_of_level"][0], t["end_of_image"]]
    return block + [0] * cfg["adapter"]["n_queries"]


class Perception(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.vit = vit_mod.build(cfg["vit"])
        self.convnext = convnext_mod.build(cfg["convnext"])
        d = cfg["llm"]["hidden_size"]
        self.projector = nn.Sequential(nn.Linear(cfg["vit"]["hidden_size"], d), nn.GELU(), nn.Linear(d, d))
        self.fusion = fusion_mod.build(cfg["fusion"])
        self.adapter = adapter_mod.build(cfg["adapter"])
        self.llm = qwen2_mod.build(cfg["llm"])


def build(cfg):
    return Perception(cfg).eval()


def checkpoint_state(model, cfg):
    sd = {}
    sd.update(vit_mod.checkpoint_state(model.vit, cfg["vit"]))
    sd.update({k: v for k, v in model.convnext.state_dict().items() if not k.startswith("head.")})
    sd.update({f"{cfg['projector']}.{k}": v for k, v in model.projector.state_dict().items()})
    sd.update(fusion_mod.checkpoint_state(model.fusion, cfg["fusion"]))
    sd.update(adapter_mod.checkpoint_state(model.adapter, cfg["adapter"]))
    sd.update(qwen2_mod.checkpoint_state(model.llm, cfg["llm"]))
    return sd


def make_inputs(cfg, g):
    vit = vit_mod.make_inputs(cfg["vit"], g)
    hc, wc = cfg["convnext"]["image_hw"]
    image_hr = torch.randn((1, 3, hc, wc), generator=g)
    # Text ids below the structure tokens.
    text = min(cfg["image_token_ids"]["start_of_image"], cfg["llm"]["vocab_size"])
    pre = torch.randint(1, text, (1, cfg["n_pre"]), generator=g)
    post = torch.randint(1, text, (1, cfg["n_post"]), generator=g)
    ids = torch.cat([pre, torch.tensor([span_ids(cfg)], dtype=torch.int64), post], 1)
    return {"image_vit": vit["image"], "grid_thw": vit["grid_thw"], "image_hr": image_hr, "input_ids": ids}


def image_span(model, cfg, fused, queries):
    """ILLUME+'s image block around the fused grid, then the adapter queries: [S, d]."""
    t = cfg["image_token_ids"]
    ids = [t["start_of_image"], t["end_of_image"], t["end_of_line"], t["start_of_level"][0], t["end_of_level"][0]]
    soi, eoi, eol, sol0, eol0 = model.llm.model.embed_tokens(torch.tensor(ids)).to(fused.dtype)
    h, w = grid(cfg)
    d = fused.shape[-1]
    rows = torch.cat([fused[0].view(h, w, d), eol.view(1, 1, d).expand(h, 1, d)], 1).reshape(h * (w + 1), d)
    return torch.cat([soi[None], sol0[None], rows, eol0[None], eoi[None], queries[0]], 0)


def splice(model, cfg, ids, span):
    """Text embeddings before and after the image span, the span in between: [1, L, d]."""
    n0, n1 = cfg["n_pre"], cfg["n_pre"] + span.shape[0]
    emb = model.llm.model.embed_tokens
    return torch.cat([emb(ids[0, :n0]), span, emb(ids[0, n1:])], 0)[None]


@torch.no_grad()
def run(model, inputs, cfg):
    vit_out, _ = run_tower(model.vit, {"image": inputs["image_vit"], "grid_thw": inputs["grid_thw"]}, cfg["vit"])
    feats = convnext_mod.stage_outputs(model.convnext, inputs["image_hr"])
    tokens = model.projector(vit_out["embeds"])[None]
    fused = model.fusion(tokens, feats["res5"])
    queries = model.adapter([feats["res3"], feats["res4"], feats["res5"]])
    span = image_span(model, cfg, fused, queries)
    emb = splice(model, cfg, inputs["input_ids"], span)
    out = model.llm(inputs_embeds=emb, output_hidden_states=True, use_cache=False)
    seq, toks, steps = emb, [], []
    for _ in range(cfg["gen_tokens"]):
        logits = model.llm(inputs_embeds=seq, use_cache=False).logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True)
        toks.append(nxt)
        steps.append(logits)
        seq = torch.cat([seq, model.llm.model.embed_tokens(nxt)], 1)
    outputs = {"logits": out.logits, "last_hidden_state": out.hidden_states[-1], "tokens": torch.cat(toks, 1),
               "step_logits": torch.cat(steps, 0)}
    inter = {"vit_embeds": vit_out["embeds"], "res5": feats["res5"], "fused": fused, "adapter_tokens": queries,
             "image_span": span}
    return outputs, inter
