"""Writing and loading one-file exports of a segmenter: safetensors (weights + architecture) and TorchScript.

safetensors: every tensor of the chosen network (backbone and decoder, `backbone.*` / `decoder.*`) in one file,
with the ModelConfig in the file's metadata, so `load_safetensors_export(path)` rebuilds it with no run folder,
no checkpoint folder and no open_clip download (the tower is built empty, then filled from the file).
TorchScript: `torch.jit.trace` of the scoring function, which needs only torch to run. Tracing fixes the input
size (Mask2Former pads to a multiple of 32 and upsamples its masks to sizes computed in Python, which a trace
records as constants), so the exported module takes float [1,3,H,W] images (RGB, 0-255) of exactly the size
it was traced at and returns scores [1,19,H,W]; resize images to that size first (the card says which).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from clouds.config.model import ModelConfig
from clouds.errors import InputError
from models.build import build_segmenter
from models.segmenter import Segmenter

FORMAT_TAG = "clouds-segmenter"
FORMATS = ("safetensors", "torchscript", "onnx")
SUFFIX = {"safetensors": ".safetensors", "torchscript": ".torchscript.pt", "onnx": ".onnx"}


def write_safetensors(model: Segmenter, path: Path, metadata: dict[str, str]) -> Path:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {**metadata, "format": FORMAT_TAG, "model_config": model.cfg.model_dump_json()}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_safetensors_export(path: str | Path, device: str | torch.device = "cpu") -> tuple[Segmenter, dict[str, Any]]:
    """(model in eval mode, metadata) from an exported file; needs the `clouds` package, not a run folder."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT_TAG or "model_config" not in meta:
        raise InputError(f"{path} is not a clouds export (no '{FORMAT_TAG}' metadata)")
    cfg = ModelConfig.model_validate_json(meta["model_config"])
    # Every weight is in the file: build the tower empty instead of fetching its open_clip tag or file.
    empty = cfg.model_copy(update={"backbone": cfg.backbone.model_copy(update={"pretrained": None})})
    model = build_segmenter(empty, device="cpu")
    model.cfg = cfg
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.to(device).eval(), meta


class ScoresModule(nn.Module):
    """The traced function: semantic scores of float RGB 0-255 images."""

    def __init__(self, model: Segmenter):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.semantic_scores(images)


def write_torchscript(model: Segmenter, path: Path, size: tuple[int, int], metadata: dict[str, str]) -> Path:
    example = torch.zeros(1, 3, *size)
    extra = {"clouds.json": json.dumps({**metadata, "format": FORMAT_TAG, "input_size": list(size),
                                         "model_config": model.cfg.model_dump(mode="json")})}
    # The tracer warns that shapes become constants: that is the documented fixed-size contract above.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(ScoresModule(model.eval()), example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra)
    return path


def load_torchscript_export(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """(scripted scores module, metadata incl. `input_size`); only torch is needed."""
    extra = {"clouds.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch suggests torch.export; TorchScript still loads
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return module.eval(), json.loads(extra["clouds.json"] or "{}")
