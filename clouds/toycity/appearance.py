"""Colours of materials and instances: the flat game palette of `sim` and the photographic one.

The domain gap toycity exists to create lives mostly here. `sim` paints each class from a small,
saturated, flat palette (the look of a game engine without textures); the photographic domains
draw each object's colour from a wide distribution whose means differ from sim's (dark olive
foliage instead of bright green, neutral dark asphalt instead of purple-grey, any car colour
instead of four), so a model that learned sim's colours is wrong on photos while shapes and
layout still carry the class. "generated" images get their own random palette shift per image:
they should look like photos of the condition without being clones of the target sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage.color import hsv2rgb

from clouds.toycity.canvas import Instance
from clouds.toycity.parts import COLOUR_SOURCE, NUM_PARTS, Part

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _rgb(*values: tuple[int, int, int]) -> np.ndarray:
    return np.array(values, np.float32) / 255.0


def _pick(palette: np.ndarray) -> Sampler:
    return lambda rng, n: palette[rng.integers(len(palette), size=n)]


def _hsv(h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]) -> Sampler:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        hsv = np.stack([rng.uniform(*h, n) % 1.0, rng.uniform(*s, n), rng.uniform(*v, n)], -1)
        return hsv2rgb(hsv[:, None, :])[:, 0, :].astype(np.float32)

    return sample


def _mix(*choices: tuple[float, Sampler]) -> Sampler:
    """Draw each colour from one of several families (grey cars and coloured cars)."""
    weights = np.array([w for w, _ in choices])
    weights = weights / weights.sum()

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        which = rng.choice(len(choices), size=n, p=weights)
        out = np.zeros((n, 3), np.float32)
        for k, (_, sampler) in enumerate(choices):
            sel = which == k
            if sel.any():
                out[sel] = sampler(rng, int(sel.sum()))
        return out

    return sample


def _const(rgb: tuple[int, int, int]) -> Sampler:
    c = _rgb(rgb)[0]
    return lambda rng, n: np.tile(c, (n, 1))


# -- sim: flat game palette ------------------------------------------------------------------------

SIM_PART = {
    Part.SKY: (90, 160, 240), Part.LANE_MARK: (245, 245, 245), Part.RAIL: (150, 150, 160),
    Part.CURB: (200, 200, 200), Part.WINDOW: (70, 110, 170), Part.DOOR: (110, 70, 40),
    Part.WALL_CAP: (200, 200, 190), Part.LAMP: (255, 255, 220), Part.TL_HOUSING: (30, 30, 30),
    Part.TL_RED: (90, 10, 10), Part.TL_AMBER: (90, 70, 0), Part.TL_GREEN: (0, 80, 20),
    Part.SIGN_SYMBOL: (20, 20, 20), Part.SIGN_BACK: (150, 150, 150), Part.SKIN: (235, 185, 150),
    Part.HAIR: (60, 40, 20), Part.SHOE: (20, 20, 20), Part.GLASS: (60, 80, 110),
    Part.TYRE: (20, 20, 20), Part.RIM: (170, 170, 170), Part.HEADLIGHT: (250, 250, 210),
    Part.TAILLIGHT: (220, 20, 20), Part.PLATE: (240, 240, 240), Part.TRIM: (45, 45, 45),
    Part.DISPLAY: (250, 160, 0),
}
SIM_PRIMARY: dict[str, Sampler] = {
    "road": _const((100, 90, 110)),
    "sidewalk": _const((170, 150, 150)),
    "terrain": _const((110, 190, 60)),
    "building": _pick(_rgb((205, 185, 150), (185, 120, 100), (160, 160, 175), (215, 205, 170))),
    "wall": _const((175, 170, 150)),
    "fence": _const((120, 125, 100)),
    "pole": _const((135, 135, 140)),
    "tree": _const((40, 160, 40)), "bush": _const((40, 160, 40)), "hedge": _const((50, 150, 40)),
    "person": _pick(_rgb((210, 40, 40), (40, 90, 210), (230, 220, 60), (60, 170, 70))),
    "rider": _pick(_rgb((210, 40, 40), (40, 90, 210), (230, 220, 60), (60, 170, 70))),
    "car": _pick(_rgb((200, 25, 25), (25, 55, 170), (235, 235, 235), (40, 40, 40))),
    "truck": _pick(_rgb((235, 235, 235), (40, 100, 180))),
    "bus": _pick(_rgb((245, 190, 30), (200, 40, 40))),
    "tram": _const((235, 235, 235)),
    "motorcycle": _pick(_rgb((30, 30, 30), (190, 30, 30))),
    "bicycle": _pick(_rgb((40, 60, 190), (30, 30, 30), (210, 200, 40))),
    "sign_round": _const((245, 245, 245)), "sign_triangle": _const((245, 245, 245)),
    "sign_square": _const((30, 80, 200)), "sign_rect": _const((20, 110, 60)),
}
SIM_SECONDARY: dict[str, Sampler] = {
    "building": _const((235, 230, 220)),
    "tree": _const((110, 75, 40)), "bush": _const((110, 75, 40)),
    "person": _pick(_rgb((40, 40, 110), (70, 70, 70))),
    "rider": _pick(_rgb((40, 40, 110), (70, 70, 70))),
    "truck": _pick(_rgb((220, 220, 220), (150, 150, 150))),
    "bus": _const((240, 240, 240)), "tram": _const((200, 20, 20)),
    "sign_round": _const((210, 20, 20)), "sign_triangle": _const((210, 20, 20)),
    "sign_square": _const((245, 245, 245)), "sign_rect": _const((245, 245, 245)),
}

# -- photo: wide, shifted distributions ------------------------------------------------------------

PHOTO_PART = {
    Part.SKY: (180, 200, 220), Part.LANE_MARK: (205, 205, 200), Part.RAIL: (120, 115, 110),
    Part.CURB: (150, 148, 142), Part.WINDOW: (45, 52, 60), Part.DOOR: (60, 50, 45),
    Part.WALL_CAP: (160, 158, 150), Part.LAMP: (215, 215, 205), Part.TL_HOUSING: (25, 27, 25),
    Part.TL_RED: (70, 20, 18), Part.TL_AMBER: (70, 55, 15), Part.TL_GREEN: (15, 60, 45),
    Part.SIGN_SYMBOL: (25, 25, 30), Part.SIGN_BACK: (125, 128, 130), Part.SKIN: (190, 145, 120),
    Part.HAIR: (40, 30, 25), Part.SHOE: (30, 28, 28), Part.GLASS: (35, 42, 50),
    Part.TYRE: (22, 22, 24), Part.RIM: (110, 110, 115), Part.HEADLIGHT: (200, 200, 195),
    Part.TAILLIGHT: (150, 25, 25), Part.PLATE: (200, 200, 190), Part.TRIM: (30, 30, 32),
    Part.DISPLAY: (50, 35, 20),
}
_CLOTHES = _mix((0.55, _hsv((0.0, 1.0), (0.0, 0.25), (0.08, 0.45))), (0.45, _hsv((0.0, 1.0), (0.25, 0.7), (0.2, 0.75))))
_PAINT = _mix((0.55, _hsv((0.0, 1.0), (0.0, 0.08), (0.06, 0.85))), (0.45, _hsv((0.0, 1.0), (0.3, 0.85), (0.15, 0.7))))
PHOTO_PRIMARY: dict[str, Sampler] = {
    "road": _hsv((0.55, 0.7), (0.02, 0.1), (0.24, 0.34)),
    "sidewalk": _hsv((0.05, 0.15), (0.04, 0.15), (0.42, 0.6)),
    "terrain": _hsv((0.14, 0.24), (0.3, 0.55), (0.28, 0.45)),
    "building": _mix((0.35, _hsv((0.0, 1.0), (0.0, 0.06), (0.35, 0.8))),
                     (0.35, _hsv((0.06, 0.13), (0.12, 0.35), (0.45, 0.8))),
                     (0.3, _hsv((0.0, 0.06), (0.35, 0.6), (0.3, 0.55)))),
    "wall": _hsv((0.05, 0.15), (0.03, 0.15), (0.45, 0.7)),
    "fence": _mix((0.6, _hsv((0.0, 1.0), (0.0, 0.1), (0.12, 0.4))), (0.4, _hsv((0.05, 0.1), (0.3, 0.55), (0.3, 0.55)))),
    "pole": _hsv((0.0, 1.0), (0.0, 0.06), (0.3, 0.55)),
    "tree": _hsv((0.17, 0.3), (0.35, 0.65), (0.16, 0.32)),
    "bush": _hsv((0.17, 0.3), (0.35, 0.65), (0.16, 0.32)),
    "hedge": _hsv((0.2, 0.3), (0.4, 0.7), (0.14, 0.28)),
    "person": _CLOTHES, "rider": _CLOTHES,
    "car": _PAINT,
    "truck": _mix((0.6, _hsv((0.0, 1.0), (0.0, 0.06), (0.55, 0.9))), (0.4, _hsv((0.0, 1.0), (0.3, 0.8), (0.3, 0.75)))),
    "bus": _hsv((0.0, 1.0), (0.2, 0.8), (0.3, 0.85)),
    "tram": _mix((0.5, _hsv((0.0, 1.0), (0.0, 0.08), (0.6, 0.9))), (0.5, _hsv((0.0, 1.0), (0.35, 0.8), (0.35, 0.75)))),
    "motorcycle": _PAINT,
    "bicycle": _PAINT,
    "sign_round": _hsv((0.0, 1.0), (0.0, 0.05), (0.75, 0.9)),
    "sign_triangle": _hsv((0.0, 1.0), (0.0, 0.05), (0.75, 0.9)),
    "sign_square": _hsv((0.58, 0.64), (0.6, 0.85), (0.45, 0.7)),
    "sign_rect": _mix((0.5, _hsv((0.35, 0.42), (0.6, 0.85), (0.3, 0.5))), (0.5, _hsv((0.58, 0.64), (0.6, 0.85), (0.45, 0.7)))),
}
PHOTO_SECONDARY: dict[str, Sampler] = {
    "building": _hsv((0.0, 1.0), (0.0, 0.15), (0.5, 0.85)),
    "tree": _hsv((0.05, 0.1), (0.2, 0.45), (0.12, 0.25)),
    "bush": _hsv((0.05, 0.1), (0.2, 0.45), (0.12, 0.25)),
    "person": _CLOTHES, "rider": _CLOTHES,
    "truck": _mix((0.6, _hsv((0.0, 1.0), (0.0, 0.06), (0.5, 0.9))), (0.4, _hsv((0.0, 1.0), (0.3, 0.8), (0.3, 0.75)))),
    "bus": _hsv((0.0, 1.0), (0.0, 0.5), (0.4, 0.9)),
    "tram": _hsv((0.0, 1.0), (0.3, 0.8), (0.25, 0.7)),
    "sign_round": _hsv((0.98, 1.02), (0.7, 0.9), (0.5, 0.75)),
    "sign_triangle": _hsv((0.98, 1.02), (0.7, 0.9), (0.5, 0.75)),
    "sign_square": _hsv((0.0, 1.0), (0.0, 0.05), (0.8, 0.95)),
    "sign_rect": _hsv((0.0, 1.0), (0.0, 0.05), (0.8, 0.95)),
}

# Photo texture strength per material: (fine grain, blotches). Metal and glass are smooth,
# foliage and grass are the most textured.
TEXTURE: dict[Part, tuple[float, float]] = {
    Part.ASPHALT: (0.1, 0.08), Part.PAVING: (0.07, 0.1), Part.CURB: (0.06, 0.06), Part.GRASS: (0.22, 0.2),
    Part.FACADE: (0.05, 0.12), Part.WALL: (0.08, 0.15), Part.FENCE: (0.05, 0.08), Part.TRUNK: (0.12, 0.1),
    Part.FOLIAGE: (0.3, 0.35), Part.TOP: (0.05, 0.05), Part.BOTTOM: (0.05, 0.05), Part.BODY: (0.02, 0.04),
    Part.CARGO: (0.03, 0.06), Part.LANE_MARK: (0.12, 0.2), Part.SKY: (0.0, 0.0),
}


@dataclass(frozen=True)
class Palette:
    """Per-material base colour, where each material takes its colour from, and texture amounts."""

    part_rgb: np.ndarray  # (NUM_PARTS, 3) float in [0, 1]
    source: np.ndarray  # (NUM_PARTS,) FROM_PART / FROM_PRIMARY / FROM_SECONDARY
    texture: np.ndarray  # (NUM_PARTS, 2)
    primary: dict[str, Sampler]
    secondary: dict[str, Sampler]
    tint_spread: float  # per-instance brightness variation


def _table(colours: dict[Part, tuple[int, int, int]]) -> np.ndarray:
    out = np.full((NUM_PARTS, 3), 0.5, np.float32)
    for part, rgb in colours.items():
        out[int(part)] = np.array(rgb, np.float32) / 255.0
    return out


def _sources() -> np.ndarray:
    out = np.zeros(NUM_PARTS, np.uint8)
    for part, src in COLOUR_SOURCE.items():
        out[int(part)] = src
    return out


def _textures() -> np.ndarray:
    out = np.full((NUM_PARTS, 2), 0.03, np.float32)
    for part, amounts in TEXTURE.items():
        out[int(part)] = amounts
    return out


SIM = Palette(_table(SIM_PART), _sources(), np.zeros((NUM_PARTS, 2), np.float32), SIM_PRIMARY, SIM_SECONDARY, 0.05)
PHOTO = Palette(_table(PHOTO_PART), _sources(), _textures(), PHOTO_PRIMARY, PHOTO_SECONDARY, 0.15)


def instance_colours(palette: Palette, instances: list[Instance], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Primary colour, secondary colour and brightness tint of every instance, drawn per kind."""
    n = len(instances)
    primary = np.full((n, 3), 0.5, np.float32)
    secondary = np.full((n, 3), 0.5, np.float32)
    kinds = np.array([i.kind for i in instances])
    for kind in sorted(set(kinds.tolist())):
        ids = np.flatnonzero(kinds == kind)
        if kind in palette.primary:
            primary[ids] = palette.primary[kind](rng, len(ids))
        if kind in palette.secondary:
            secondary[ids] = palette.secondary[kind](rng, len(ids))
        else:
            secondary[ids] = primary[ids] * 0.8
    tint = rng.uniform(1.0 - palette.tint_spread, 1.0 + palette.tint_spread, n).astype(np.float32)
    return primary, secondary, tint


def jitter_palette(palette: Palette, rng: np.random.Generator, strength: float) -> Palette:
    """A per-image variant of the photo palette: hue/saturation/value shifts per material and kind.

    Used for "generated" images so that prompt-driven images come from a related but different
    appearance distribution than the target sets (as diffusion images differ from real photos).
    """
    part_rgb = np.clip(palette.part_rgb * rng.uniform(1 - strength, 1 + strength, (NUM_PARTS, 3)), 0, 1)

    def shifted(sampler: Sampler) -> Sampler:
        gain = rng.uniform(1 - strength, 1 + strength, 3).astype(np.float32)
        return lambda r, n: np.clip(sampler(r, n) * gain, 0.0, 1.0)

    return Palette(
        part_rgb.astype(np.float32), palette.source,
        palette.texture * rng.uniform(0.3, 1.2),
        {k: shifted(s) for k, s in palette.primary.items()},
        {k: shifted(s) for k, s in palette.secondary.items()},
        palette.tint_spread,
    )
