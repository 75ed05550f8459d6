"""Image-tower-only weight files: what `clouds pretrain` ships and `model.backbone.pretrained` can name.

CLOUDS uses only the image tower of its CLIP model at training time (the text tower embeds class prompts
once, for the text head). A pretrained tiny tower is shipped in the repository, so it must be small: the
tower alone, in fp16 (3.4M parameters: 6.8 MB for `clouds-tiny-convnext`), with the open_clip model name
it belongs to in the safetensors metadata. Loading builds the open_clip model as usual (random text tower)
and loads the tower strictly, so a file of another architecture fails naming the first mismatched key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from clouds.errors import InputError

KIND = "clouds-image-tower"


def image_tower_bytes(visual: nn.Module, model_name: str, provenance: dict[str, Any]) -> bytes:
    """The tower's weights (fp16 floats) and where they came from (`provenance`: command, seed, ...), as the
    bytes of a safetensors file (so a stage can write them atomically to any fsspec URL)."""
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in visual.state_dict().items()}
    meta = {"kind": KIND, "model": model_name, "provenance": json.dumps(provenance, sort_keys=True)}
    return save(state, metadata=meta)


def save_image_tower(path: str | Path, visual: nn.Module, model_name: str, provenance: dict[str, Any]) -> None:
    """`image_tower_bytes` written to a local file."""
    Path(path).write_bytes(image_tower_bytes(visual, model_name, provenance))


def is_image_tower_file(path: str | Path) -> bool:
    """True for a safetensors file written by `save_image_tower` (any other file is open_clip's business)."""
    if Path(path).suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("kind") == KIND
    except (SafetensorError, OSError):
        return False


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The model name and provenance recorded in an image-tower file."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    meta["provenance"] = json.loads(meta.get("provenance") or "{}")
    return meta


def load_image_tower(visual: nn.Module, path: str | Path, model_name: str) -> None:
    """Load an image-tower file into `visual` (the open_clip model's `.visual`), in the tower's dtype."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise InputError(f"backbone.pretrained: {path} is not a readable safetensors file ({err})") from err
    if meta.get("model") != model_name:
        raise InputError(f"backbone.pretrained: {path} holds the image tower of {meta.get('model')!r}, "
                         f"but backbone.name is {model_name!r}")
    own = visual.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(f"backbone.pretrained: {path} does not fit {model_name!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise InputError(f"backbone.pretrained: {path}: {key} has shape {tuple(value.shape)}, "
                             f"{model_name!r} needs {tuple(own[key].shape)}")
    with torch.no_grad():
        visual.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
