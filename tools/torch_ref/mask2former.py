"""Mask2Former pixel decoder (MSDeformAttnPixelDecoder) and masked-attention transformer decoder
in PSALM's form (spec §9). Own code; detectron2/PSALM module names. MSDA is written with
grid_sample (the pure-PyTorch form of multi-scale deformable attention)."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_pos(x, num_feats, temperature=10000.0, normalize=True, scale=2 * math.pi, offset=0.0):
    """DETR/Mask2Former sine embedding of an all-valid map x [B,C,H,W] -> [B, 2*num_feats, H, W]."""
    b, _, h, w = x.shape
    dt = x.dtype
    y = torch.arange(1, h + 1, dtype=dt)[None, :, None].expand(b, h, w)
    xx = torch.arange(1, w + 1, dtype=dt)[None, None, :].expand(b, h, w)
    if normalize:
        eps = 1e-6
        y = (y - offset) / (y[:, -1:, :] + eps) * scale
        xx = (xx - offset) / (xx[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.int64).to(dt)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    px = xx[..., None] / dim_t
    py = y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), 4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), 4).flatten(3)
    return torch.cat((py, px), 3).permute(0, 3, 1, 2)


def ms_deform_attn_core(value, shapes, sampling_locations, attention_weights):
    """value [B,S,H,dh]; shapes [(h,w)...]; sampling_locations [B,Q,H,L,P,2] in [0,1] (x,y);
    attention_weights [B,Q,H,L,P] -> [B,Q,H*dh]. Bilinear, zero padding, align_corners=False."""
    b, _, nh, dh = value.shape
    _, q, _, nl, npnt, _ = sampling_locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = values[lvl].flatten(2).transpose(1, 2).reshape(b * nh, dh, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [B*H, Q, P, 2]
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    aw = attention_weights.transpose(1, 2).reshape(b * nh, 1, q, nl * npnt)
    out = (torch.stack(samples, -2).flatten(-2) * aw).sum(-1).view(b, nh * dh, q)
    return out.transpose(1, 2)


class MSDeformAttn(nn.Module):
    def __init__(self, d, levels, heads, points):
        super().__init__()
        self.levels, self.heads, self.points = levels, heads, points
        self.sampling_offsets = nn.Linear(d, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d, heads * levels * points)
        self.value_proj = nn.Linear(d, d)
        self.output_proj = nn.Linear(d, d)

    def forward(self, query, reference_points, value_in, shapes):
        b, q, _ = query.shape
        value = self.value_proj(value_in).view(b, value_in.shape[1], self.heads, -1)
        off = self.sampling_offsets(query).view(b, q, self.heads, self.levels, self.points, 2)
        aw = self.attention_weights(query).view(b, q, self.heads, self.levels * self.points).softmax(-1)
        aw = aw.view(b, q, self.heads, self.levels, self.points)
        norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype)  # (W, H)
        loc = reference_points[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_core(value, shapes, loc, aw))


class EncoderLayer(nn.Module):
    def __init__(self, d, ffn, levels, heads, points):
        super().__init__()
        self.self_attn = MSDeformAttn(d, levels, heads, points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src, pos, ref, shapes):
        src = self.norm1(src + self.self_attn(src + pos, ref, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class _Enc(nn.Module):
    pass


class ConvNorm(nn.Conv2d):
    """detectron2-style Conv2d with a `norm` submodule (names: weight, norm.weight, norm.bias)."""

    def __init__(self, cin, cout, k, groups, relu):
        super().__init__(cin, cout, k, padding=k // 2, bias=False)
        self.norm = nn.GroupNorm(groups, cout)
        self.relu = relu

    def forward(self, x):
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


def reference_points(shapes, dtype):
    refs = []
    for h, w in shapes:
        ry, rx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=dtype),
                                torch.linspace(0.5, w - 0.5, w, dtype=dtype), indexing="ij")
        refs.append(torch.stack((rx.reshape(-1) / w, ry.reshape(-1) / h), -1))
    r = torch.cat(refs, 0)  # [S,2]
    return r[None, :, None, :].expand(1, -1, len(shapes), -1)  # valid ratios = 1


class PixelDecoder(nn.Module):
    """in_channels: [res2, res3, res4, res5]. Transformer levels: res5, res4, res3."""

    def __init__(self, in_channels, conv_dim, mask_dim, heads, points, enc_layers, ffn_dim, groups=32,
                 pe_offset=0.0, **_):
        super().__init__()
        self.pe_offset = pe_offset
        trans_in = in_channels[1:][::-1]
        self.input_proj = nn.ModuleList([nn.Sequential(nn.Conv2d(c, conv_dim, 1), nn.GroupNorm(groups, conv_dim))
                                         for c in trans_in])
        self.transformer = _Enc()
        self.transformer.level_embed = nn.Parameter(torch.zeros(len(trans_in), conv_dim))
        self.transformer.encoder = _Enc()
        self.transformer.encoder.layers = nn.ModuleList(
            [EncoderLayer(conv_dim, ffn_dim, len(trans_in), heads, points) for _ in range(enc_layers)])
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        self.adapter_1 = ConvNorm(in_channels[0], conv_dim, 1, groups, relu=False)
        self.layer_1 = ConvNorm(conv_dim, conv_dim, 3, groups, relu=True)

    def forward(self, feats, inter=None):
        res2 = feats[0]
        levels = feats[1:][::-1]
        srcs, poss, shapes = [], [], []
        for lvl, (x, proj) in enumerate(zip(levels, self.input_proj)):
            s = proj(x)
            shapes.append(tuple(s.shape[-2:]))
            pos = sine_pos(s, s.shape[1] // 2, offset=self.pe_offset).flatten(2).transpose(1, 2)
            poss.append(pos + self.transformer.level_embed[lvl])
            srcs.append(s.flatten(2).transpose(1, 2))
        src, pos = torch.cat(srcs, 1), torch.cat(poss, 1)
        ref = reference_points(shapes, src.dtype)
        for i, layer in enumerate(self.transformer.encoder.layers):
            src = layer(src, pos, ref, shapes)
            if inter is not None:
                inter[f"encoder.{i}"] = src
        b, _, c = src.shape
        outs = [t.transpose(1, 2).reshape(b, c, h, w) for t, (h, w) in zip(src.split([h * w for h, w in shapes], 1),
                                                                            shapes)]
        y = self.adapter_1(res2) + F.interpolate(outs[-1], size=res2.shape[-2:], mode="bilinear",
                                                  align_corners=False)
        y = self.layer_1(y)
        if inter is not None:
            inter["fpn"] = y
        return self.mask_features(y), outs


class MLP(nn.Module):
    def __init__(self, din, dh, dout, n):
        super().__init__()
        dims = [din] + [dh] * (n - 1)
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [dout])])

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class _AttnLayer(nn.Module):
    def __init__(self, d, heads, cross):
        super().__init__()
        attn = nn.MultiheadAttention(d, heads, dropout=0.0)
        if cross:
            self.multihead_attn = attn
        else:
            self.self_attn = attn
        self.norm = nn.LayerNorm(d)


class _FFNLayer(nn.Module):
    def __init__(self, d, ffn):
        super().__init__()
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class TransformerDecoder(nn.Module):
    """PSALM MultiScaleMaskedTransformerDecoder: queries come from LLM seg-query hidden states
    (seg_query_projector), classes are dot products with projected class-name embeddings."""

    def __init__(self, hidden, heads, ffn_dim, dec_layers, num_queries, mask_dim, llm_hidden, num_levels=3, **_):
        super().__init__()
        self.heads = heads
        self.num_levels = num_levels
        self.transformer_self_attention_layers = nn.ModuleList([_AttnLayer(hidden, heads, False)
                                                                for _ in range(dec_layers)])
        self.transformer_cross_attention_layers = nn.ModuleList([_AttnLayer(hidden, heads, True)
                                                                 for _ in range(dec_layers)])
        self.transformer_ffn_layers = nn.ModuleList([_FFNLayer(hidden, ffn_dim) for _ in range(dec_layers)])
        self.decoder_norm = nn.LayerNorm(hidden)
        self.query_embed = nn.Embedding(num_queries, hidden)
        self.level_embed = nn.Embedding(num_levels, hidden)
        self.mask_embed = MLP(hidden, hidden, mask_dim, 3)
        self.CLASS_proj = MLP(hidden, hidden, hidden, 2)
        self.seg_query_projector = nn.Linear(llm_hidden, hidden)
        self.class_name_projector = nn.Linear(llm_hidden, hidden)

    def heads_out(self, output, mask_features, cls_emb, target):
        o = self.decoder_norm(output)  # [B,N,C]
        logits = torch.einsum("bnc,bkc->bnk", self.CLASS_proj(o), cls_emb)
        masks = torch.einsum("bnc,bchw->bnhw", self.mask_embed(o), mask_features)
        am = F.interpolate(masks, size=target, mode="bilinear", align_corners=False)
        am = am.sigmoid().flatten(2) < 0.5  # [B,N,HW], True = blocked
        return o, logits, masks, am

    def forward(self, mask_features, ms, seg_query_hidden, class_hidden, inter=None, attn_mask_override=None):
        b = mask_features.shape[0]
        srcs, poss, sizes = [], [], []
        for lvl, x in enumerate(ms):
            sizes.append(tuple(x.shape[-2:]))
            poss.append(sine_pos(x, x.shape[1] // 2).flatten(2).transpose(1, 2))
            srcs.append(x.flatten(2).transpose(1, 2) + self.level_embed.weight[lvl])
        qpos = self.query_embed.weight[None].expand(b, -1, -1)
        output = self.seg_query_projector(seg_query_hidden)
        cls_emb = self.class_name_projector(class_hidden)
        o, logits, masks, am = self.heads_out(output, mask_features, cls_emb, sizes[0])
        if inter is not None:
            inter["init.pred_masks"], inter["init.pred_logits"] = masks, logits
        t = lambda x: x.transpose(0, 1)  # noqa: E731  (seq-first for nn.MultiheadAttention)
        for i in range(len(self.transformer_ffn_layers)):
            lvl = i % self.num_levels
            am = am & ~am.all(-1, keepdim=True)  # fully blocked rows attend everywhere
            if attn_mask_override is not None:
                am = attn_mask_override(i, am)
            if inter is not None:
                inter[f"layer.{i}.attn_mask"] = am.to(torch.uint8)
            mask = am.repeat_interleave(self.heads, 0)  # [B*heads, N, HW]
            ca = self.transformer_cross_attention_layers[i]
            a = ca.multihead_attn(t(output + qpos), t(srcs[lvl] + poss[lvl]), t(srcs[lvl]), attn_mask=mask,
                                  need_weights=False)[0]
            output = ca.norm(output + t(a))
            sa = self.transformer_self_attention_layers[i]
            a = sa.self_attn(t(output + qpos), t(output + qpos), t(output), need_weights=False)[0]
            output = sa.norm(output + t(a))
            output = self.transformer_ffn_layers[i](output)
            o, logits, masks, am = self.heads_out(output, mask_features, cls_emb, sizes[(i + 1) % self.num_levels])
            if inter is not None:
                inter[f"layer.{i}.pred_masks"], inter[f"layer.{i}.pred_logits"] = masks, logits
        return masks, logits, o
