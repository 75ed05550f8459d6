"""What an image generator must provide, how its output is checked, and how one is chosen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from clouds.config import DiffusersSynthesize, SynthesizeConfig, ToycitySynthesize
from clouds.registry import from_config, registry


@dataclass
class Rendered:
    """One generated image: float in [0, 1] (diffusion) or uint8; `label` only for rendered toy scenes."""

    image: np.ndarray
    label: np.ndarray | None = None
    flagged: bool = False  # a safety checker flagged (and blacked out) the image
    meta: dict[str, Any] = field(default_factory=dict)


class ImageBackend(Protocol):
    name: str
    model: str | None

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Rendered]:
        """One image per (prompt, seed); image i must depend only on prompts[i] and seeds[i]."""
        ...


def to_uint8(image: np.ndarray) -> np.ndarray:
    """The same quantisation as diffusers' numpy_to_pil, so saved images match what a user would see."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def image_problem(rendered: Rendered) -> str | None:
    """Why an image must not be kept: 'nan', 'nsfw' (blacked out by a safety checker) or 'black'."""
    image = rendered.image
    if image.dtype != np.uint8 and not np.isfinite(image).all():
        return "nan"
    if rendered.flagged:
        return "nsfw"
    if to_uint8(image).max() == 0:
        return "black"
    return None


def _diffusers(cfg: DiffusersSynthesize, device: str) -> ImageBackend:
    from stages.synthesize.diffusers_backend import DiffusersBackend

    return DiffusersBackend(cfg, device)


def _toycity(cfg: ToycitySynthesize, device: str) -> ImageBackend:
    from stages.synthesize.toycity_backend import ToyCityBackend

    return ToyCityBackend(cfg)


BACKENDS = registry({"diffusers": _diffusers, "toycity": _toycity})
"""`synthesize.backend` -> the backend's builder (each imports its model library only when chosen)."""


def build_backend(cfg: SynthesizeConfig, device: str = "auto") -> ImageBackend:
    return from_config(BACKENDS, "synthesize.backend", cfg.backend)(cfg, device)
