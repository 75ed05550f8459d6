"""The segmenter: frozen backbone (an open_clip CLIP tower, or a timm ViT through a pyramid neck, optionally with
parameter-efficient tuning) + Mask2Former decoder (transformers)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from clouds.config.base import MAX_DIM, MAX_LAYERS, MAX_WEIGHT, Section

PixelLevel = Annotated[float, Field(ge=0.0, le=255.0)]
PixelSpread = Annotated[float, Field(gt=0.0, le=255.0)]  # divides the image: zero would make it infinite
BlockIndex = Annotated[int, Field(ge=0, le=MAX_LAYERS)]


class PeftConfig(Section):
    """Parameter-efficient tuning of a frozen timm ViT: everything but these few tensors (and the neck) stays
    frozen, so the checkpoint holds only them (plus the backbone's identity and weight hash)."""

    kind: Literal["none", "rein", "lora"] = Field(
        "none", description="'rein': learnable tokens refining every block's output (Rein, CVPR 2024); "
        "'lora': low-rank updates of the attention projections (peft); 'none': the tower is only read"
    )
    rein_tokens: int = Field(100, ge=1, le=MAX_DIM, description="Rein: learnable tokens per block (paper: 100)")
    rein_rank: int = Field(
        16, ge=0, le=MAX_DIM, description="Rein: tokens stored as a rank-r product (the released LoRAReins, r 16); "
        "0 = a full tokens x width matrix per block"
    )
    rein_scale_init: float = Field(1e-3, ge=0.0, le=MAX_WEIGHT, description="Rein: initial scale of its update")
    lora_rank: int = Field(16, ge=1, le=MAX_DIM, description="LoRA: rank r")
    lora_alpha: float = Field(16.0, gt=0.0, le=MAX_WEIGHT, description="LoRA: scaling alpha (update x alpha / r)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA: dropout on the adapter's input")
    lora_targets: tuple[str, ...] = Field(
        ("qkv", "q_proj", "k_proj", "v_proj", "proj"), min_length=1,
        description="LoRA: names of the linear layers inside each block's `attn` to adapt (timm ViT: qkv, proj; "
        "EVA02: q_proj, k_proj, v_proj, proj); names a tower lacks are skipped",
    )


class BackboneConfig(Section):
    name: str = Field(
        "convnext_large_d_320",
        description="open_clip model name (or a registered tiny config); with library: timm, a timm model name "
        "with an optional pretrained tag (vit_large_patch14_dinov2.lvd142m) or a project tiny config (clouds-tiny-vit)",
    )
    pretrained: str | None = Field(
        "laion2b_s29b_b131k_ft_soup",
        description="open_clip pretrained tag, or a local weight file; null = random. With library: timm, a local "
        "weight file (safetensors/pt, timm or original layout) or 'hub' = the name's weights from the Hugging Face "
        "hub cache (never downloaded)",
    )
    freeze: bool = True
    pixel_mean: tuple[PixelLevel, PixelLevel, PixelLevel] = (122.7709383, 116.7460125, 104.09373615)
    pixel_std: tuple[PixelSpread, PixelSpread, PixelSpread] = (68.5005327, 66.6321579, 70.32316305)
    library: Literal["open_clip", "timm"] = Field(
        "open_clip", description="who builds the tower: open_clip (CLIP ConvNeXt/ResNet, with a text tower) or timm "
        "(ViT image towers: DINOv2, EVA02, SigLIP; no text tower), read through a pyramid neck"
    )
    out_indices: tuple[BlockIndex, ...] | None = Field(
        None, min_length=4, max_length=4,
        description="timm ViT: the 4 blocks (0-based) whose outputs become strides 4, 8, 16, 32; null = the last "
        "block of each quarter of the depth",
    )
    patch_size: int | None = Field(
        None, ge=1, le=64, description="timm ViT: patch size override (pretrained patch embeddings are resampled, "
        "as Rein turns DINOv2's 14 into 16); null = the model's own",
    )
    img_size: int | None = Field(
        None, ge=1, le=16_384, description="timm ViT: the position-embedding grid's image size (pretrained ones are "
        "interpolated); any input size still works; null = the model's own",
    )
    neck: Literal["interpolate", "deconv"] = Field(
        "interpolate", description="timm ViT -> strides 4/8/16/32: 'interpolate' = bilinear resize of each level "
        "(Rein, no parameters); 'deconv' = ViTDet simple pyramid (transposed convs up, max-pool down; trained)",
    )
    peft: PeftConfig = Field(default_factory=PeftConfig)

    @model_serializer(mode="wrap")
    def _omit_timm_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Fields added for timm towers are left out of the dump while at their defaults, so the config hashes
        and checkpoint `model.json` of every open_clip run stay what they were before the fields existed."""
        data = handler(self)
        for key, default in _TIMM_DEFAULTS.items():
            if key in data and getattr(self, key) == default:
                del data[key]
        return data

    @model_validator(mode="after")
    def _timm_only(self) -> BackboneConfig:
        if self.library == "open_clip":
            for key, default in _TIMM_DEFAULTS.items():
                if getattr(self, key) != default:
                    raise ValueError(f"backbone.{key} applies to timm ViT towers only: set backbone.library: timm "
                                     "or remove it")
        return self


_TIMM_DEFAULTS: dict[str, Any] = {
    "library": "open_clip", "out_indices": None, "patch_size": None, "img_size": None, "neck": "interpolate",
    "peft": PeftConfig(),
}


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

    @model_validator(mode="after")
    def _text_needs_clip(self) -> ModelConfig:
        """Only an open_clip tower comes with the text tower the text head and the CLIP ensemble read."""
        if self.backbone.library != "open_clip":
            for key, on in (("kind", self.head.kind == "text"), ("ensemble", self.head.ensemble)):
                if on:
                    raise ValueError(
                        f"model.head.{key}: {getattr(self.head, key)!r} needs a CLIP text tower, and backbone "
                        f"{self.backbone.name!r} (library {self.backbone.library}) has none: use head.kind: linear "
                        "and head.ensemble: false, or an open_clip backbone"
                    )
        return self
