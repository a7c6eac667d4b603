"""Mask2Former masked-attention transformer decoder in PSALM's form (spec §9.2-9.3), own code,
detectron2/PSALM names under `prefix` (default sem_seg_head.predictor.).
Inputs: mask_features [B,mask_dim,H4,W4]; ms.0/1/2 (1/32, 1/16, 1/8 maps, NCHW);
seg_query_hidden [B,N,llm_hidden] (LLM last-layer states of the N mask tokens);
class_hidden [B,K,llm_hidden] (average-pooled class-name token states).
Outputs (last layer): pred_masks [B,N,H4,W4], pred_logits [B,N,K] (dot-product scores),
query_features [B,N,hidden] (decoder_norm output, "instance embeddings").
inter: init.* and layer.{i}.{pred_masks,pred_logits,attn_mask (uint8, 1 = blocked)}."""

import torch

from ..mask2former import TransformerDecoder

NAME = "m2f_transformer_decoder"

CONFIGS = {
    "tiny": dict(hidden=32, heads=4, ffn_dim=64, dec_layers=3, num_queries=6, mask_dim=32, llm_hidden=64,
                 num_classes=3, ms_hw=[[2, 3], [4, 6], [8, 12]], mask_hw=[16, 24], prefix="sem_seg_head.predictor."),
    "small": dict(hidden=128, heads=8, ffn_dim=512, dec_layers=6, num_queries=20, mask_dim=128, llm_hidden=256,
                  num_classes=10, ms_hw=[[4, 4], [8, 8], [16, 16]], mask_hw=[32, 32],
                  prefix="sem_seg_head.predictor."),
    "paper": dict(hidden=256, heads=8, ffn_dim=2048, dec_layers=9, num_queries=100, mask_dim=256, llm_hidden=2048,
                  num_classes=80, ms_hw=[[24, 24], [48, 48], [96, 96]], mask_hw=[192, 192],
                  prefix="sem_seg_head.predictor."),
}


def build(cfg):
    return TransformerDecoder(**cfg)


def checkpoint_state(model, cfg):
    return {cfg["prefix"] + k: v for k, v in model.state_dict().items()}


def make_inputs(cfg, g):
    h, w = cfg["mask_hw"]
    inp = {"mask_features": torch.randn((1, cfg["mask_dim"], h, w), generator=g)}
    for i, (hh, ww) in enumerate(cfg["ms_hw"]):
        inp[f"ms.{i}"] = torch.randn((1, cfg["hidden"], hh, ww), generator=g)
    inp["seg_query_hidden"] = torch.randn((1, cfg["num_queries"], cfg["llm_hidden"]), generator=g)
    inp["class_hidden"] = torch.randn((1, cfg["num_classes"], cfg["llm_hidden"]), generator=g)
    return inp


def run(model, inputs, cfg):
    inter = {}
    masks, logits, q = model(inputs["mask_features"], [inputs[f"ms.{i}"] for i in range(3)],
                             inputs["seg_query_hidden"], inputs["class_hidden"], inter)
    return {"pred_masks": masks, "pred_logits": logits, "query_features": q}, inter
