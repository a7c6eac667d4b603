"""The chained FOCUS perception path (spec §1, §3.5, §5), composed of the single-component
modules (their code and checkpoint names unchanged), exactly as the engine's
`models/src/perception.rs` wires it:

1. `input.image_vit` [1,3,Hv,Wv] (normalised) -> Qwen2-VL ViT (`visual.*`) -> vit embeds [Nv, d_vit].
2. `input.image_hr` [1,3,Hc,Wc] (normalised) -> ConvNeXt (timm names `stem.*`, `stages.*`;
   the classifier head is not part of the checkpoint) -> res2..res5.
3. `projector_1`: Linear(d_vit->d) -> GELU(erf) -> Linear(d->d) -> tokens [1,Nv,d].
4. fusion (`fusion.*`): queries = tokens, keys/values = res5 -> fused [1,Nv,d].
5. adapter (`adapter.*`) over res3, res4, res5 -> queries [1,nq,d].
6. Qwen2 LLM (`model.*`, tied head): embeddings of `input.input_ids` [1,L] with positions
   [n_pre, n_pre+Nv) replaced by `fused` and the next nq by the adapter queries (the ids there
   are placeholders, 0); L = n_pre + Nv + nq + n_post.
Outputs: `logits` [1,L,V], `last_hidden_state` [1,L,d], and `tokens` [1,gen]: greedy
continuation (full recompute each step, appending each new token's embedding).
Intermediates: vit_embeds, res5, fused, adapter_tokens."""

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
        n_pre=3,
        n_post=2,
        gen_tokens=3,
    )


CONFIGS = {"tiny": _tiny()}


def n_image_tokens(cfg):
    v = cfg["vit"]
    unit = v["patch_size"] * v["spatial_merge_size"]
    hv, wv = v["image_hw"]
    return (hv // unit) * (wv // unit), cfg["adapter"]["n_queries"]


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
    nv, nq = n_image_tokens(cfg)
    v = cfg["llm"]["vocab_size"]
    pre = torch.randint(1, v, (1, cfg["n_pre"]), generator=g)
    post = torch.randint(1, v, (1, cfg["n_post"]), generator=g)
    ids = torch.cat([pre, torch.zeros((1, nv + nq), dtype=torch.int64), post], 1)
    return {"image_vit": vit["image"], "grid_thw": vit["grid_thw"], "image_hr": image_hr, "input_ids": ids}


def splice(model, cfg, ids, fused, queries):
    emb = model.llm.model.embed_tokens(ids).clone()
    n0, nv, nq = cfg["n_pre"], fused.shape[1], queries.shape[1]
    emb[:, n0:n0 + nv] = fused
    emb[:, n0 + nv:n0 + nv + nq] = queries
    return emb


@torch.no_grad()
def run(model, inputs, cfg):
    vit_out, _ = run_tower(model.vit, {"image": inputs["image_vit"], "grid_thw": inputs["grid_thw"]}, cfg["vit"])
    feats = convnext_mod.stage_outputs(model.convnext, inputs["image_hr"])
    tokens = model.projector(vit_out["embeds"])[None]
    fused = model.fusion(tokens, feats["res5"])
    queries = model.adapter([feats["res3"], feats["res4"], feats["res5"]])
    emb = splice(model, cfg, inputs["input_ids"], fused, queries)
    out = model.llm(inputs_embeds=emb, output_hidden_states=True, use_cache=False)
    seq, toks = emb, []
    for _ in range(cfg["gen_tokens"]):
        nxt = model.llm(inputs_embeds=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        toks.append(nxt)
        seq = torch.cat([seq, model.llm.model.embed_tokens(nxt)], 1)
    outputs = {"logits": out.logits, "last_hidden_state": out.hidden_states[-1], "tokens": torch.cat(toks, 1)}
    inter = {"vit_embeds": vit_out["embeds"], "res5": feats["res5"], "fused": fused, "adapter_tokens": queries}
    return outputs, inter
