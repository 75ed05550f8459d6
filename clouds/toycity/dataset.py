"""Numbered datasets of toycity images: sample i of a (domain, seed) set, reproducible on its own."""

from __future__ import annotations

import numpy as np

from clouds.toycity.render import DOMAINS, check_domain, condition_for, render
from clouds.toycity.spec import SceneSpec, sample_scene

_CONTENT, _APPEARANCE = 0, 1


def scene_for(index: int, seed: int) -> SceneSpec:
    """Content of sample `index` of the set with `seed`: the same in every domain."""
    if index < 0 or seed < 0:
        raise ValueError(f"toycity index and seed must be >= 0, got index={index}, seed={seed}")
    return sample_scene(np.random.default_rng([int(seed), int(index), _CONTENT]))


def generate(domain: str, index: int, seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, SceneSpec]:
    """The i-th sample of a dataset: (image, label, spec).

    Content comes from (seed, index) only, so index i is the same street (the same label map) in
    every domain; its weather and time are set to the domain's. The appearance seed also mixes in
    the domain, so the sim and real renderings of one street are drawn independently.
    """
    check_domain(domain)
    spec = condition_for(scene_for(index, seed), domain)
    appearance = int(np.random.SeedSequence([int(seed), int(index), _APPEARANCE, DOMAINS.index(domain)]).generate_state(1)[0])
    image, label = render(spec, domain, height, width, appearance)
    return image, label, spec
