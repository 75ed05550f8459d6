"""Query classifiers (learned linear 19+1, or CLIP text embeddings) and the test-time CLIP ensemble.

Both heads read the decoder's per-layer query states (already layer-normed by Mask2Former's decoder) and
return [B,Q,K+1] logits whose last column is "no object", which is what Mask2Former's loss expects.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMLPPredictionHead

from models.text_classifier import TextClassifier


def mask_pool(features: Tensor, mask_logits: Tensor) -> Tensor:
    """Average features [B,C,H,W] over each query's positive-logit region -> [B,Q,C] (mask not differentiated).

    An empty mask pools to zeros rather than NaN (the 1e-8 of FC-CLIP).
    """
    with torch.no_grad():
        masks = mask_logits.detach()
        if masks.shape[-2:] != features.shape[-2:]:
            masks = F.interpolate(masks, size=features.shape[-2:], mode="bilinear", align_corners=False)
        masks = (masks > 0).to(features.dtype)
        masks = masks / (masks.sum(dim=(-2, -1), keepdim=True) + 1e-8)
    return torch.einsum("bchw,bqhw->bqc", features, masks)


class LinearClassHead(nn.Module):
    """The reference configs' classifier: one linear layer to 19 classes + no-object."""

    def __init__(self, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_dim, num_classes + 1)

    def forward(
        self, queries: Tensor, mask_logits: Tensor, mask_features: Tensor, text: TextClassifier | None = None
    ) -> Tensor:
        return self.proj(queries)


class TextClassHead(nn.Module):
    """FC-CLIP / CLOUDS classifier: queries (plus their mask-pooled pixel features) are projected into CLIP
    space and scored by cosine similarity against fixed class text embeddings with a learnable temperature;
    "no object" is a learned embedding scored the same way.
    """

    def __init__(self, hidden_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.mask_pool_proj = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
        self.class_embed = Mask2FormerMLPPredictionHead(hidden_dim, hidden_dim, embed_dim, num_layers=3)
        self.void_embedding = nn.Embedding(1, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(
        self, queries: Tensor, mask_logits: Tensor, mask_features: Tensor, text: TextClassifier | None = None
    ) -> Tensor:
        if text is None:
            raise ValueError("TextClassHead needs the decoder's TextClassifier (head.kind: text)")
        pooled = self.mask_pool_proj(mask_pool(mask_features, mask_logits))
        x = self.class_embed(queries + pooled)
        classes = text.class_logits(x, self.logit_scale)
        scale = torch.clamp(self.logit_scale.exp(), max=100)
        void = scale * F.normalize(x, dim=-1) @ F.normalize(self.void_embedding.weight, dim=-1).t()
        return torch.cat([classes, void], dim=-1)


def geometric_ensemble(
    class_logits: Tensor, clip_class_logits: Tensor, alpha: float, valid: Tensor | None = None
) -> Tensor:
    """FC-CLIP's test-time ensemble for classes seen in training: p = p_dec^(1-a) * p_clip^a over the 19
    classes, renormalised, then scaled by the decoder's not-void probability. Returns log-probabilities
    [B,Q,K+1] so they drop into the usual softmax-based semantic inference unchanged.

    `valid` [B,Q] (optional) switches the ensemble off (a = 0) for queries whose mask is empty, which the
    reference found matters for ResNet towers.
    """
    in_probs = class_logits[..., :-1].softmax(-1)
    out_probs = clip_class_logits.softmax(-1)
    a = torch.full_like(in_probs, alpha)
    if valid is not None:
        a = a * valid.to(a.dtype).unsqueeze(-1)
    mixed = (in_probs ** (1 - a) * out_probs ** a).log()
    void = class_logits.softmax(-1)[..., -1:]
    probs = torch.cat([mixed.softmax(-1) * (1.0 - void), void], dim=-1)
    return torch.log(probs + 1e-8)
