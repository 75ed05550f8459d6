"""The segmenter: frozen open_clip CLIP tower (or timm ViT + pyramid neck) + transformers' Mask2Former, EMA teacher
and checkpoints.

Names are resolved lazily (PEP 562) so that `import models.sam` does not pay for importing transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClipBackbone": "models.backbone",
    "build_backbone": "models.backbone",
    "create_clip": "models.backbone",
    "register_model_configs": "models.backbone",
    "build_segmenter": "models.build",
    "tiny_model_config": "models.build",
    "CheckpointError": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "save_checkpoint": "models.checkpoint",
    "EmaTeacher": "models.ema",
    "make_teacher": "models.ema",
    "Segmenter": "models.segmenter",
    "ViTBackbone": "models.vit_backbone",
    "create_timm_tower": "models.timm_tower",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
