"""Segmenter checkpoints: safetensors weights + the ModelConfig that rebuilds the architecture, on any fsspec URL.

Layout of a checkpoint directory:
  student_decoder.safetensors   always
  teacher_decoder.safetensors   when an EMA teacher exists
  backbone.safetensors          when the backbone was trained (freeze: false) or has random weights
                                (pretrained: null) — otherwise it is rebuilt from its open_clip tag/file
  backbone.json                 when the backbone is rebuilt instead: the sha256 of its weights, checked
                                on load (a replaced weight file must not silently pair old decoders with it);
                                for a timm tower also its library and name, and the hash covers only the
                                pretrained (frozen) tensors
  student_backbone.safetensors  a rebuilt backbone's learned tensors only (timm ViT: Rein tokens, LoRA, neck)
  teacher_backbone.safetensors  the same for the EMA teacher's copy of them
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
from clouds.errors import CloudsError
from models.build import build_segmenter
from models.ema import make_teacher
from models.segmenter import Segmenter

MODEL_JSON = "model.json"
EXTRA_JSON = "extra.json"
STUDENT = "student_decoder.safetensors"
TEACHER = "teacher_decoder.safetensors"
BACKBONE = "backbone.safetensors"
BACKBONE_REF = "backbone.json"
STUDENT_BACKBONE = "student_backbone.safetensors"
TEACHER_BACKBONE = "teacher_backbone.safetensors"


class CheckpointError(CloudsError, ValueError):
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
    # A backbone with learned tensors of its own (timm ViT + Rein/LoRA/neck) hashes only its pretrained ones.
    frozen_state = getattr(backbone, "frozen_state_dict", backbone.state_dict)
    for name, tensor in sorted(frozen_state().items()):
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


def _trained_tensors(backbone: nn.Module) -> dict[str, Tensor]:
    """A rebuilt backbone's learned tensors (empty for a frozen open_clip tower, which learns none)."""
    trained = getattr(backbone, "trained_state_dict", None)
    return {k: v.detach().cpu().contiguous() for k, v in (trained() if trained else {}).items()}


def _write_or_remove(fs: fsspec.AbstractFileSystem, folder: Folder, root: str, name: str,
                     tensors: dict[str, Tensor]) -> None:
    if tensors:
        _write(fs, f"{root}/{name}", save_safetensors(tensors, {"part": name.removesuffix(".safetensors")}))
    else:
        folder.remove(name)


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
    own_teacher_backbone = teacher is not None and teacher.backbone is not student.backbone
    if _saves_backbone(cfg):
        _write(fs, f"{root}/{BACKBONE}", save_safetensors(_tensors(student.backbone), {"part": "backbone"}))
        folder.remove(BACKBONE_REF)
        folder.remove(STUDENT_BACKBONE)
    else:
        ref: dict[str, Any] = {"pretrained": cfg.backbone.pretrained, "sha256": backbone_sha256(student.backbone)}
        if cfg.backbone.library != "open_clip":  # open_clip checkpoints keep their exact former layout
            ref.update(library=cfg.backbone.library, name=cfg.backbone.name)
        _write(fs, f"{root}/{BACKBONE_REF}", json.dumps(ref, indent=2, sort_keys=True).encode())
        folder.remove(BACKBONE)
        _write_or_remove(fs, folder, root, STUDENT_BACKBONE, _trained_tensors(student.backbone))
    _write_or_remove(fs, folder, root, TEACHER_BACKBONE,
                     _trained_tensors(teacher.backbone) if own_teacher_backbone else {})
    _write(fs, f"{root}/{EXTRA_JSON}", extra_text.encode())
    _write(fs, f"{root}/{MODEL_JSON}", cfg.model_dump_json(indent=2).encode())
    return path


def _check_backbone(backbone: nn.Module, ref: dict[str, Any], cfg: ModelConfig, path: str) -> None:
    """The rebuilt frozen backbone must be the one the decoders were trained on."""
    for key in ("library", "name"):
        if key in ref and ref[key] != getattr(cfg.backbone, key):
            raise CheckpointError(
                f"{path} was trained on backbone {key} {ref[key]!r}, but model.backbone.{key} is "
                f"{getattr(cfg.backbone, key)!r}: load it with its own backbone or retrain"
            )
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
    _check_keys(expected, state, what)
    module.load_state_dict(state, strict=True)


def _check_keys(expected: dict[str, Tensor], state: dict[str, Tensor], what: str) -> None:
    """CheckpointError naming every missing, unexpected and wrongly-shaped key of `state`."""
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


def _load_trained(backbone: nn.Module, fs: fsspec.AbstractFileSystem, root: str, path: str, name: str) -> None:
    """Load a rebuilt backbone's learned tensors; the file must hold exactly the ones this backbone learns."""
    expected = _trained_tensors(backbone)
    if not expected and not fs.exists(f"{root}/{name}"):
        return
    state = load_safetensors(_read(fs, f"{root}/{name}", f"{path}/{name}"))
    wanted = {k: v for k, v in backbone.state_dict().items() if k in expected}
    _check_keys(wanted, state, f"{path}/{name}")
    with torch.no_grad():
        for key, value in state.items():
            wanted[key].copy_(value)


def load_checkpoint(
    path: str, device: str | torch.device = "cpu", cfg: ModelConfig | None = None
) -> tuple[Segmenter, Segmenter | None, ModelConfig, dict[str, Any]]:
    """Rebuild (student, teacher or None, cfg, extra) from `path`.

    The architecture comes from the checkpoint's model.json unless `cfg` is given (e.g. the current run's
    config): then the weights must fit that architecture or CheckpointError lists the offending keys. The
    teacher shares the student's backbone object, as during training (or, for a backbone with learned
    tensors, its frozen tensors, with its own learned ones loaded from teacher_backbone.safetensors).
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
        _load_trained(student.backbone, fs, root, path, STUDENT_BACKBONE)
    state = load_safetensors(_read(fs, f"{root}/{STUDENT}", f"{path}/{STUDENT}"))
    _load_into(student.decoder, state, f"{path}/{STUDENT}")
    teacher = None
    if fs.exists(f"{root}/{TEACHER}"):
        teacher = make_teacher(student)
        state = load_safetensors(_read(fs, f"{root}/{TEACHER}", f"{path}/{TEACHER}"))
        _load_into(teacher.decoder, state, f"{path}/{TEACHER}")
        if teacher.backbone is not student.backbone:
            _load_trained(teacher.backbone, fs, root, path, TEACHER_BACKBONE)
        teacher.to(device)
    return student.to(device), teacher, cfg, extra
