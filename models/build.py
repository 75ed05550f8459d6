"""Build a `Segmenter` from a `ModelConfig` through the same code path for real and tiny models."""

from __future__ import annotations

import open_clip
import torch

from clouds.config.model import BackboneConfig, DecoderConfig, ModelConfig
from clouds.labels import NUM_CLASSES
from models.backbone import build_backbone, create_clip
from models.mask2former import Mask2FormerDecoder, mask2former_config
from models.segmenter import Segmenter
from models.text_classifier import TextClassifier, encode_class_prompts
from models.timm_tower import create_timm_tower
from models.vit_backbone import ViTBackbone


def build_segmenter(cfg: ModelConfig, device: str | torch.device = "cpu") -> Segmenter:
    """open_clip model (tag, local file or random) -> frozen image tower + Mask2Former decoder.

    The text tower is used once, here, to embed the class prompts when the text head or the CLIP ensemble
    needs them; it is then dropped (the embeddings live in the decoder, so checkpoints carry them).
    A timm tower (`backbone.library: timm`) has no text tower: it is read through a pyramid neck, and the
    config has already refused the text head and the ensemble for it.
    """
    if cfg.backbone.library == "timm":
        vit = ViTBackbone(create_timm_tower(cfg.backbone), cfg.backbone)
        m2f = mask2former_config(cfg.decoder, NUM_CLASSES, vit.strides)
        return Segmenter(vit, Mask2FormerDecoder(m2f, vit.channels, cfg.head, None), cfg).to(device)
    clip = create_clip(cfg.backbone, device=device)
    backbone = build_backbone(cfg.backbone, clip)
    text = None
    if cfg.head.kind == "text" or cfg.head.ensemble:
        tokenizer = open_clip.get_tokenizer(cfg.backbone.name)
        embeddings, class_index = encode_class_prompts(clip, tokenizer)
        text = TextClassifier(embeddings, class_index, NUM_CLASSES)
    m2f = mask2former_config(cfg.decoder, NUM_CLASSES, backbone.strides)
    decoder = Mask2FormerDecoder(m2f, backbone.channels, cfg.head, text)
    return Segmenter(backbone, decoder, cfg).to(device)


def tiny_model_config(backbone: str = "clouds-tiny-convnext", library: str = "open_clip",
                      peft: dict | None = None, **head: object) -> ModelConfig:
    """A random-weight model small enough for tests and the CPU demo (forward+backward of 2x3x128x256 well
    under 2 s): tiny CLIP tower (or, with library "timm", a tiny ViT such as clouds-tiny-vit and optional
    `peft` settings), 16 queries, hidden 64, 2 encoder layers, 3 decoder layers (+1), 1024 points."""
    timm_fields = {"library": library, "peft": peft or {}} if library != "open_clip" else {}
    return ModelConfig(
        backbone=BackboneConfig(name=backbone, pretrained=None, **timm_fields),
        decoder=DecoderConfig(
            num_queries=16, hidden_dim=64, feature_size=64, mask_feature_size=64, encoder_layers=2,
            decoder_layers=4, num_attention_heads=4, encoder_feedforward_dim=128, dim_feedforward=128,
            train_num_points=1024,
        ),
        head=head,
    )
