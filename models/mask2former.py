"""Mask2Former from transformers, fed with CLIP features instead of its own backbone.

`Mask2FormerPixelLevelModule` couples a transformers backbone to the pixel decoder; CLOUDS needs the open_clip
tower instead, so this module builds the two halves transformers exposes directly —
`Mask2FormerPixelDecoder` (multi-scale deformable-attention encoder on strides 8/16/32 + FPN to stride 4,
its pure-PyTorch deformable attention runs on CPU) and `Mask2FormerTransformerModule` (masked-attention
decoder, round-robin over the 3 scales, per-layer mask predictions) — with the CLIP stage channels as
input. It derives from `Mask2FormerPreTrainedModel` only to reuse transformers' weight initialisation
(deformable-attention offsets grid, xavier decoder layers, N(0,1) level embeddings), which is part of what
makes Mask2Former train.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPreTrainedModel,
    Mask2FormerTransformerModule,
)

from clouds.config.model import DecoderConfig, HeadConfig
from clouds.errors import InputError
from models.heads import LinearClassHead, TextClassHead
from models.text_classifier import TextClassifier


def mask2former_config(cfg: DecoderConfig, num_labels: int, feature_strides: list[int]) -> Mask2FormerConfig:
    """DecoderConfig -> transformers' config. `decoder_layers` keeps transformers' meaning: the learnable
    query features count as one layer (10 = 9 masked-attention layers + the initial prediction)."""
    return Mask2FormerConfig(
        num_labels=num_labels,
        num_queries=cfg.num_queries,
        hidden_dim=cfg.hidden_dim,
        feature_size=cfg.feature_size,
        mask_feature_size=cfg.mask_feature_size,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        num_attention_heads=cfg.num_attention_heads,
        encoder_feedforward_dim=cfg.encoder_feedforward_dim,
        dim_feedforward=cfg.dim_feedforward,
        common_stride=cfg.common_stride,
        feature_strides=list(feature_strides),
        train_num_points=cfg.train_num_points,
        oversample_ratio=cfg.oversample_ratio,
        importance_sample_ratio=cfg.importance_sample_ratio,
        class_weight=cfg.class_weight,
        mask_weight=cfg.mask_weight,
        dice_weight=cfg.dice_weight,
        no_object_weight=cfg.no_object_weight,
        dropout=cfg.dropout,
        pre_norm=False,
        use_auxiliary_loss=True,
        backbone_config=None,
    )


@dataclass
class DecoderOutput:
    """Per-layer predictions, first entry = initial learnable queries, last = final layer."""

    class_logits: list[Tensor]  # [B,Q,K+1]
    mask_logits: list[Tensor]  # [B,Q,H/4,W/4]
    mask_features: Tensor  # [B,mask_dim,H/4,W/4]


class Mask2FormerDecoder(Mask2FormerPreTrainedModel):
    """Everything trainable of the segmenter: pixel decoder, transformer decoder, class head (and the fixed
    class text embeddings when the text head or the CLIP ensemble is on)."""

    def __init__(
        self,
        config: Mask2FormerConfig,
        in_channels: list[int],
        head: HeadConfig,
        text_classifier: TextClassifier | None = None,
    ) -> None:
        super().__init__(config)
        if len(in_channels) != 4:
            raise ValueError(f"the pixel decoder needs 4 feature levels (strides 4..32), got {len(in_channels)}")
        if config.feature_size % 32 or config.mask_feature_size % 32:
            raise InputError("decoder.feature_size and mask_feature_size must be multiples of 32 (GroupNorm(32))")
        if config.hidden_dim % config.num_attention_heads or config.feature_size % config.num_attention_heads:
            raise InputError("decoder hidden_dim and feature_size must be divisible by num_attention_heads")
        if head.kind == "text" or head.ensemble:
            if text_classifier is None:
                raise InputError(f"head.kind={head.kind!r}, ensemble={head.ensemble} needs class text embeddings")
        self.pixel_decoder = Mask2FormerPixelDecoder(config, feature_channels=list(in_channels))
        self.transformer_module = Mask2FormerTransformerModule(in_features=config.feature_size, config=config)
        if head.kind == "linear":
            self.class_head: nn.Module = LinearClassHead(config.hidden_dim, config.num_labels)
        else:
            self.class_head = TextClassHead(config.hidden_dim, text_classifier.dim)
        self.text_classifier = text_classifier
        self.post_init()

    def forward(self, features: list[Tensor]) -> DecoderOutput:  # type: ignore[override]
        pixel = self.pixel_decoder(features, return_dict=True)
        decoded = self.transformer_module(
            multi_scale_features=pixel.multi_scale_features,
            mask_features=pixel.mask_features,
            output_hidden_states=True,
        )
        mask_logits = list(decoded.masks_queries_logits)
        class_logits = [
            self.class_head(h.transpose(0, 1), m, pixel.mask_features, self.text_classifier)
            for h, m in zip(decoded.intermediate_hidden_states, mask_logits, strict=True)
        ]
        return DecoderOutput(class_logits=class_logits, mask_logits=mask_logits, mask_features=pixel.mask_features)
