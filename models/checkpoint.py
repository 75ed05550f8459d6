"""Segmenter checkpoints: safetensors weights + the ModelConfig that rebuilds the architecture, on any fsspec URL.

Layout of a checkpoint directory:
  student_decoder.safetensors   always
  teacher_decoder.safetensors   when an EMA teacher exists
  backbone.safetensors          when the backbone was trained (freeze: false) or has random weights
                                (pretrained: null) — otherwise it is rebuilt from its open_clip tag/file
  backbone.json                 when the backbone is rebuilt instead: the sha256 of its weights, checked
                                on load (a replaced weight file must not silently pair old decoders with it)
  extra.json                    caller's json-able state (iteration, optimiser-free bookkeeping, ...)
  model.json                    the ModelConfig dump; written last, so its presence marks a complete save
No pickles: weights go through safetensors only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import fsspec
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from artifacts.storage import Folder
from clouds.config.model import ModelConfig
from models.build import build_segmenter
from models.ema import make_teacher
from models.segmenter import Segmenter

MODEL_JSON = "model.json"
EXTRA_JSON = "extra.json"
STUDENT = "student_decoder.safetensors"
TEACHER = "teacher_decoder.safetensors"
BACKBONE = "backbone.safetensors"
BACKBONE_REF = "backbone.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested architecture."""


def _saves_backbone(cfg: ModelConfig) -> bool:
    return not cfg.backbone.freeze or cfg.backbone.pretrained is None


def backbone_sha256(backbone: nn.Module) -> str:
    """sha256 over the backbone's tensors (names, dtypes, shapes, bytes), once per frozen module: its weights
    never change, and hashing a ConvNeXt-L at every snapshot would cost seconds."""
    cached = getattr(backbone, "_clouds_weights_sha256", None)
    if cached is not None and getattr(backbone, "frozen", False):
        return cached
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    backbone._clouds_weights_sha256 = digest.hexdigest()
    return backbone._clouds_weights_sha256


def _write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(
    path: str, student: Segmenter, teacher: Segmenter | None, cfg: ModelConfig, extra: dict[str, Any]
) -> str:
    """Write a checkpoint directory at `path` (local path or fsspec URL); returns `path`."""
    try:
        extra_text = json.dumps(extra, indent=2, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"save_checkpoint({path}): `extra` must be json-able: {e}") from e
    fs, root = fsspec.core.url_to_fs(path)
    fs.makedirs(root, exist_ok=True)
    folder = Folder.at(path)
    folder.remove(MODEL_JSON)  # the save is incomplete until model.json is rewritten
    _write(fs, f"{root}/{STUDENT}", save_safetensors(_tensors(student.decoder), {"part": "student_decoder"}))
    if teacher is not None:
        _write(fs, f"{root}/{TEACHER}", save_safetensors(_tensors(teacher.decoder), {"part": "teacher_decoder"}))
    else:
        folder.remove(TEACHER)
    if _saves_backbone(cfg):
        _write(fs, f"{root}/{BACKBONE}", save_safetensors(_tensors(student.backbone), {"part": "backbone"}))
        folder.remove(BACKBONE_REF)
    else:
        ref = {"pretrained": cfg.backbone.pretrained, "sha256": backbone_sha256(student.backbone)}
        _write(fs, f"{root}/{BACKBONE_REF}", json.dumps(ref, indent=2, sort_keys=True).encode())
        folder.remove(BACKBONE)
    _write(fs, f"{root}/{EXTRA_JSON}", extra_text.encode())
    _write(fs, f"{root}/{MODEL_JSON}", cfg.model_dump_json(indent=2).encode())
    return path


def _check_backbone(backbone: nn.Module, ref: dict[str, Any], cfg: ModelConfig, path: str) -> None:
    """The rebuilt frozen backbone must be the one the decoders were trained on."""
    now = backbone_sha256(backbone)
    if now != ref.get("sha256"):
        raise CheckpointError(
            f"{path} was trained on a frozen backbone ({ref.get('pretrained')!r}) whose weights hash to "
            f"{str(ref.get('sha256'))[:16]}..., but model.backbone.pretrained={cfg.backbone.pretrained!r} now gives "
            f"{now[:16]}...: the weight file was replaced; restore it or retrain"
        )


def _read(fs: fsspec.AbstractFileSystem, path: str, url: str) -> bytes:
    if not fs.exists(path):
        raise FileNotFoundError(f"checkpoint file missing: {url}")
    with fs.open(path, "rb") as f:
        return f.read()


DERIVED_PREFIX = "text_classifier."
"""Decoder tensors that are not learned but recomputed from CLIP at build time (class text embeddings): a
checkpoint trained without them (linear head) may be evaluated with the CLIP ensemble switched on."""


def _load_into(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Strict load that names every missing, unexpected and wrongly-shaped key."""
    expected = module.state_dict()
    state = dict(state)
    for k in [k for k in state if k.startswith(DERIVED_PREFIX) and k not in expected]:
        del state[k]
    for k in expected:
        if k.startswith(DERIVED_PREFIX) and k not in state:
            state[k] = expected[k]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state) if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:25]) + (f", ... ({len(keys)} in all)" if len(keys) > 25 else "")
        raise CheckpointError(
            f"{what} was saved for another architecture: "
            f"missing keys [{show(missing)}]; unexpected keys [{show(unexpected)}]; "
            f"shape mismatches [{show(mismatched)}]"
        )
    module.load_state_dict(state, strict=True)


def load_checkpoint(
    path: str, device: str | torch.device = "cpu", cfg: ModelConfig | None = None
) -> tuple[Segmenter, Segmenter | None, ModelConfig, dict[str, Any]]:
    """Rebuild (student, teacher or None, cfg, extra) from `path`.

    The architecture comes from the checkpoint's model.json unless `cfg` is given (e.g. the current run's
    config): then the weights must fit that architecture or CheckpointError lists the offending keys. The
    teacher shares the student's backbone object, as during training.
    """
    fs, root = fsspec.core.url_to_fs(path)
    saved_cfg = ModelConfig.model_validate_json(_read(fs, f"{root}/{MODEL_JSON}", f"{path}/{MODEL_JSON}"))
    cfg = cfg or saved_cfg
    extra = json.loads(_read(fs, f"{root}/{EXTRA_JSON}", f"{path}/{EXTRA_JSON}"))
    student = build_segmenter(cfg, device="cpu")
    if _saves_backbone(saved_cfg):
        state = load_safetensors(_read(fs, f"{root}/{BACKBONE}", f"{path}/{BACKBONE}"))
        _load_into(student.backbone, state, f"{path}/{BACKBONE}")
    elif fs.exists(f"{root}/{BACKBONE_REF}"):
        _check_backbone(student.backbone, json.loads(_read(fs, f"{root}/{BACKBONE_REF}", path)), cfg, path)
    state = load_safetensors(_read(fs, f"{root}/{STUDENT}", f"{path}/{STUDENT}"))
    _load_into(student.decoder, state, f"{path}/{STUDENT}")
    teacher = None
    if fs.exists(f"{root}/{TEACHER}"):
        teacher = make_teacher(student)
        state = load_safetensors(_read(fs, f"{root}/{TEACHER}", f"{path}/{TEACHER}"))
        _load_into(teacher.decoder, state, f"{path}/{TEACHER}")
        teacher.to(device)
    return student.to(device), teacher, cfg, extra
