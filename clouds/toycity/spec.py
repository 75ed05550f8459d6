"""What a toycity scene contains, independent of how it is rendered.

A `SceneSpec` is the *content* of an image (how many of each object, the condition it was
described with, and the seed of the layout). The same spec rendered in two visual domains gives
the same label map; only the appearance changes. That separation is what makes toycity usable
as a stand-in for GTA5 -> Cityscapes/ACDC: one world, several "cameras and weathers".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

TIMES: tuple[str, ...] = ("day", "dusk", "night", "morning")
WEATHERS: tuple[str, ...] = ("clear", "fog", "rain", "snow")

COUNT_FIELDS: tuple[str, ...] = (
    "cars", "trucks", "buses", "persons", "cyclists", "motorcyclists", "bicycles", "motorcycles",
    "poles", "traffic_lights", "signs", "trees",
)
# Beyond this a street stops looking like a street (and rasterising gets slow); prompts asking
# for "a hundred cars" are clamped by the prompt parser, not here.
MAX_COUNT = 40


@dataclass(frozen=True)
class SceneSpec:
    """Content of one street scene.

    cyclists / motorcyclists are riders on their vehicle (class rider + bicycle / motorcycle);
    bicycles / motorcycles are parked ones without a rider. poles counts street lights; traffic
    lights and signs bring their own poles.
    """

    cars: int = 3
    trucks: int = 0
    buses: int = 0
    persons: int = 3
    cyclists: int = 0
    motorcyclists: int = 0
    bicycles: int = 0
    motorcycles: int = 0
    poles: int = 3
    traffic_lights: int = 1
    signs: int = 2
    trees: int = 3
    has_train: bool = False
    time_of_day: str = "day"
    weather: str = "clear"
    layout_seed: int = 0

    def __post_init__(self) -> None:
        for name in COUNT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"SceneSpec.{name} must be an int, got {value!r}")
            if not 0 <= value <= MAX_COUNT:
                raise ValueError(f"SceneSpec.{name} must be in 0..{MAX_COUNT}, got {value}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.has_train, (bool, np.bool_)):
            raise ValueError(f"SceneSpec.has_train must be a bool, got {self.has_train!r}")
        object.__setattr__(self, "has_train", bool(self.has_train))
        if self.time_of_day not in TIMES:
            raise ValueError(f"SceneSpec.time_of_day {self.time_of_day!r} is not one of {TIMES}")
        if self.weather not in WEATHERS:
            raise ValueError(f"SceneSpec.weather {self.weather!r} is not one of {WEATHERS}")
        if isinstance(self.layout_seed, (bool, np.bool_)) or not isinstance(self.layout_seed, (int, np.integer)):
            raise ValueError(f"SceneSpec.layout_seed must be an int, got {self.layout_seed!r}")
        if self.layout_seed < 0:
            raise ValueError(f"SceneSpec.layout_seed must be >= 0, got {self.layout_seed}")
        object.__setattr__(self, "layout_seed", int(self.layout_seed))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, e.g. for a sample's metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        """Inverse of `to_dict`; unknown keys are an error so a typo cannot silently become a default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SceneSpec: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def sample_scene(rng: np.random.Generator) -> SceneSpec:
    """Draw plausible street content: sometimes empty, sometimes busy, every class reachable.

    The probabilities are chosen so that over ~30 scenes every one of the 19 classes shows up,
    while rare classes (train, motorcycle) stay rare as in real driving data.
    """
    busy = rng.uniform(0.3, 1.6)
    return SceneSpec(
        cars=int(min(rng.poisson(4.0 * busy), 12)),
        trucks=int(rng.binomial(2, 0.3)),
        buses=int(rng.binomial(2, 0.2)),
        persons=int(min(rng.poisson(4.0 * busy), 14)),
        cyclists=int(rng.binomial(3, 0.25)),
        motorcyclists=int(rng.binomial(2, 0.25)),
        bicycles=int(rng.binomial(4, 0.2)),
        motorcycles=int(rng.binomial(2, 0.2)),
        poles=int(rng.integers(1, 7)),
        traffic_lights=int(rng.binomial(4, 0.35)),
        signs=int(rng.integers(0, 5)),
        trees=int(rng.integers(0, 9)),
        has_train=bool(rng.random() < 0.25),
        time_of_day=str(rng.choice(TIMES, p=[0.55, 0.15, 0.15, 0.15])),
        weather=str(rng.choice(WEATHERS, p=[0.6, 0.13, 0.14, 0.13])),
        layout_seed=int(rng.integers(0, 2**31 - 1)),
    )
