"""The segmenter: frozen CLIP backbone (open_clip) + Mask2Former decoder (transformers)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from clouds.config.base import MAX_DIM, MAX_LAYERS, MAX_WEIGHT, Section

PixelLevel = Annotated[float, Field(ge=0.0, le=255.0)]
PixelSpread = Annotated[float, Field(gt=0.0, le=255.0)]  # divides the image: zero would make it infinite


class BackboneConfig(Section):
    name: str = Field("convnext_large_d_320", description="open_clip model name (or a registered tiny config)")
    pretrained: str | None = Field(
        "laion2b_s29b_b131k_ft_soup", description="open_clip pretrained tag, or a local weight file; null = random"
    )
    freeze: bool = True
    pixel_mean: tuple[PixelLevel, PixelLevel, PixelLevel] = (122.7709383, 116.7460125, 104.09373615)
    pixel_std: tuple[PixelSpread, PixelSpread, PixelSpread] = (68.5005327, 66.6321579, 70.32316305)


class DecoderConfig(Section):
    num_queries: int = Field(100, ge=1, le=MAX_DIM)
    hidden_dim: int = Field(256, ge=1, le=MAX_DIM)
    feature_size: int = Field(256, ge=1, le=MAX_DIM, description="pixel decoder conv dim")
    mask_feature_size: int = Field(256, ge=1, le=MAX_DIM)
    encoder_layers: int = Field(6, ge=1, le=MAX_LAYERS)
    decoder_layers: int = Field(
        10, ge=1, le=MAX_LAYERS, description="transformers counts the learnable initial query layer: 9 + 1"
    )
    num_attention_heads: int = Field(8, ge=1, le=MAX_LAYERS)
    encoder_feedforward_dim: int = Field(1024, ge=1, le=MAX_DIM)
    dim_feedforward: int = Field(2048, ge=1, le=MAX_DIM)
    common_stride: int = Field(4, ge=1, le=64, description="output stride of the mask features")
    train_num_points: int = Field(12544, ge=1, le=1 << 24, description="points sampled per mask for the loss")
    oversample_ratio: float = Field(3.0, ge=1.0, le=MAX_WEIGHT, description="point sampling: >= 1")
    importance_sample_ratio: float = Field(0.75, ge=0.0, le=1.0)
    class_weight: float = Field(2.0, ge=0.0, le=MAX_WEIGHT)
    mask_weight: float = Field(5.0, ge=0.0, le=MAX_WEIGHT)
    dice_weight: float = Field(5.0, ge=0.0, le=MAX_WEIGHT)
    no_object_weight: float = Field(0.1, ge=0.0, le=MAX_WEIGHT)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class HeadConfig(Section):
    kind: Literal["linear", "text"] = Field("linear", description="learned 19+1 classifier, or CLIP text embeddings")
    ensemble: bool = Field(False, description="test-time CLIP geometric ensemble")
    ensemble_alpha: float = Field(0.4, ge=0.0, le=1.0, description="weight of CLIP in the geometric ensemble")
    ensemble_on_valid_mask: bool = Field(
        False, description="ensemble only queries whose mask is non-empty at CLIP's stride (reference: off)"
    )


class LossConfig(Section):
    ignore_pixels: Literal["negative", "excluded"] = Field(
        "negative",
        description="255 pixels in the mask BCE/dice loss and the matcher: 'negative' = background of every "
        "class mask (standard Mask2Former, the reference), 'excluded' = weight 0",
    )


class ModelConfig(Section):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form model options for experiments")
