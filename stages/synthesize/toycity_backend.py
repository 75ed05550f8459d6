"""Toy "generated" images from the built-in street-scene renderer, with their true labels.

It makes the whole method runnable without a diffusion model: the prompt chooses the scene and its
weather, the seed its layout. The true label is kept only to *measure* pseudo-label quality.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from clouds.config import ToycitySynthesize
from clouds.labels import check_train_ids
from stages.synthesize.backend import Rendered


class ToyCityBackend:
    name = "toycity"
    model: str | None = None

    def __init__(self, cfg: ToycitySynthesize):
        self.toycity = importlib.import_module("clouds.toycity")
        missing = [f for f in ("spec_from_prompt", "domain_for", "render") if not hasattr(self.toycity, f)]
        if missing:
            raise ImportError(f"clouds.toycity lacks {missing}: the toy renderer is incomplete in this install")
        self.height, self.width = cfg.height, cfg.width

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Rendered]:
        out = []
        for text, seed in zip(prompts, seeds, strict=True):
            spec = self.toycity.spec_from_prompt(text, seed)
            domain = self.toycity.domain_for(spec)
            image, label = self.toycity.render(spec, domain, self.height, self.width, seed, style="generated")
            check_train_ids(label, f"toycity render of {text!r} (seed {seed})")
            out.append(Rendered(image, label=label, meta={"render_domain": domain}))
        return out
