"""toycity: a procedural street-scene world with exact labels, rendered in several visual domains.

It stands in for the datasets and generators CLOUDS needs when none can be downloaded: `sim`
plays the synthetic source (GTA5), `real` the real-world target (Cityscapes), `fog` / `night` /
`rain` / `snow` the adverse-condition targets (ACDC), and prompt-driven rendering the diffusion
model. One `SceneSpec` gives one label map in every domain; only the appearance changes.
"""

from clouds.toycity.dataset import generate, scene_for
from clouds.toycity.prompt import domain_for, spec_from_prompt
from clouds.toycity.render import DOMAINS, STYLES, condition_for, render
from clouds.toycity.spec import TIMES, WEATHERS, SceneSpec, sample_scene

__all__ = [
    "DOMAINS", "STYLES", "TIMES", "WEATHERS", "SceneSpec", "condition_for", "domain_for", "generate",
    "render", "sample_scene", "scene_for", "spec_from_prompt",
]
