"""The segmenter: frozen CLIP backbone (open_clip) + Mask2Former decoder (transformers)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from clouds.config.base import Section


class BackboneConfig(Section):
    name: str = Field("convnext_large_d_320", description="open_clip model name (or a registered tiny config)")
    pretrained: str | None = Field(
        "laion2b_s29b_b131k_ft_soup", description="open_clip pretrained tag, or a local weight file; null = random"
    )
    freeze: bool = True
    pixel_mean: tuple[float, float, float] = (122.7709383, 116.7460125, 104.09373615)
    pixel_std: tuple[float, float, float] = (68.5005327, 66.6321579, 70.32316305)


class DecoderConfig(Section):
    num_queries: int = 100
    hidden_dim: int = 256
    feature_size: int = Field(256, description="pixel decoder conv dim")
    mask_feature_size: int = 256
    encoder_layers: int = 6
    decoder_layers: int = Field(10, description="transformers counts the learnable initial query layer: 9 + 1")
    num_attention_heads: int = 8
    encoder_feedforward_dim: int = 1024
    dim_feedforward: int = 2048
    common_stride: int = 4
    train_num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    dropout: float = 0.0


class HeadConfig(Section):
    kind: Literal["linear", "text"] = Field("linear", description="learned 19+1 classifier, or CLIP text embeddings")
    ensemble: bool = Field(False, description="test-time CLIP geometric ensemble")
    ensemble_alpha: float = Field(0.4, ge=0.0, le=1.0, description="weight of CLIP in the geometric ensemble")
    ensemble_on_valid_mask: bool = Field(
        False, description="ensemble only queries whose mask is non-empty at CLIP's stride (reference: off)"
    )


class ModelConfig(Section):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form model options for experiments")
