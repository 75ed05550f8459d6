"""timm image towers (DINOv2, EVA02, SigLIP ViTs) by name, with weights from a local file or the HF hub cache.

Nothing here downloads: `pretrained: hub` reads the weight file timm would fetch for the name from the local
Hugging Face cache and fails, naming the repository to fetch, when it is not there. A local file goes through
timm's own checkpoint filter, so original-layout files (e.g. facebookresearch's `dinov2_vitl14_pretrain.pth`)
load as well as timm's. The project's tiny towers (`models/timm_configs/*.json`: a timm architecture plus
size overrides, random weights) build through the same `timm.create_model` call, so tests exercise the path
real towers take, without touching timm's global model registry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import timm
from torch import nn

from clouds.config.model import BackboneConfig
from clouds.errors import InputError
from models.backbone import _shipped_or_given

log = logging.getLogger(__name__)

TIMM_CONFIG_DIR = Path(__file__).parent / "timm_configs"
HUB = "hub"
"""`backbone.pretrained` value meaning: the name's pretrained weights, from the Hugging Face hub cache."""
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def tiny_tower_names() -> list[str]:
    """The project's tiny timm towers (random weights, for tests and the CPU demo)."""
    return sorted(p.stem for p in TIMM_CONFIG_DIR.glob("*.json"))


def _architecture(name: str) -> tuple[str, dict[str, Any]]:
    """(timm model name, size overrides) for a tiny config, else (name, {})."""
    path = TIMM_CONFIG_DIR / f"{name}.json"
    if path.is_file():
        spec = json.loads(path.read_text())
        return spec["architecture"], dict(spec.get("kwargs", {}))
    return name, {}


def _hub_file(model_name: str) -> str:
    """The cached weight file of `model_name`'s pretrained tag, or FileNotFoundError saying what to fetch."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise FileNotFoundError(f"backbone.pretrained: hub: timm has no Hugging Face weights for {model_name!r}; "
                                "set backbone.pretrained to a local weight file")
    repo = repo.split("@")[0]
    for filename in ((cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else HUB_FILES):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    raise FileNotFoundError(
        f"backbone.pretrained: hub: the weights of {model_name!r} ({repo}) are not in the Hugging Face cache and "
        f"nothing is downloaded here: fetch them first (`hf download {repo}`) or name a local weight file"
    )


def create_timm_tower(cfg: BackboneConfig) -> nn.Module:
    """Build `cfg.name` through timm: no classifier, any input size (dynamic position embeddings, padding to
    whole patches), weights from `cfg.pretrained` (a file, `hub`, or None = random)."""
    if cfg.name in tiny_tower_names() and cfg.pretrained == HUB:
        raise InputError(f"backbone.pretrained: hub: {cfg.name!r} is a project tiny config with no published weights")
    architecture, kwargs = _architecture(cfg.name)
    base = architecture.split(".")[0]
    if not timm.is_model(base):
        raise InputError(f"backbone.name {cfg.name!r} is not a timm model (see timm.list_models()) nor a project "
                         f"tiny config ({', '.join(tiny_tower_names())})")
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    if cfg.patch_size is not None:
        kwargs["patch_size"] = cfg.patch_size
    kwargs.update(num_classes=0, dynamic_img_size=True, dynamic_img_pad=True)
    pretrained = _shipped_or_given(cfg.pretrained)
    if pretrained is None:
        log.info("backbone %s built with random weights (pretrained: null)", cfg.name)
        return timm.create_model(architecture, pretrained=False, **kwargs)
    source = _hub_file(architecture) if pretrained == HUB else pretrained
    if not Path(source).is_file():
        raise FileNotFoundError(f"backbone.pretrained: weight file {pretrained!r} does not exist (give a local "
                                "safetensors/pt file, 'hub' for the Hugging Face cache, or null for random weights)")
    try:
        model = timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay={"file": source}, **kwargs)
    except RuntimeError as err:  # strict load: a file of another architecture names its keys here
        raise InputError(f"backbone.pretrained: {source} does not fit timm model {architecture!r}: {err}") from err
    log.info("backbone %s: weights loaded from %s", cfg.name, source)
    return model
