"""`clouds pretrain`: the label-free pretraining that stands in for a foundation model's web-scale one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from clouds.config.base import MAX_BATCH, MAX_COUNT, MAX_ITERS, MAX_SEED, MAX_WEIGHT, Section

Domain = Literal["sim", "real", "fog", "night", "rain", "snow"]


class PretrainConfig(Section):
    """Streets rendered in every domain, and the dense cross-domain objective (stages/pretrain/objective.py).

    Target-domain images are allowed (a web-scale model has seen fog and night), their labels never: the
    objective reads depth and object ids, no class. `scene_seed` keeps the streets apart from the data sets
    the demo trains and scores on (seeds 1-5).
    """

    domains: tuple[Domain, ...] = ("sim", "real", "fog", "night", "rain", "snow")
    scenes: int = Field(1500, ge=1, le=MAX_COUNT, description="streets rendered, each in every domain")
    scene_seed: int = Field(1000, ge=0, le=MAX_SEED)
    height: int = Field(64, ge=16, le=4096)
    width: int = Field(128, ge=16, le=4096)
    iters: int = Field(4000, ge=1, le=MAX_ITERS)
    batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="pairs per step (two renders each)")
    lr: float = Field(1.0e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.05, ge=0.0, le=1.0)
    warmup_iters: int = Field(200, ge=0, le=MAX_ITERS, description="linear lr warm-up, then cosine to 0")
    crop_min_scale: float = Field(
        0.5, gt=0.0, le=1.0, description="each view is a random crop of this share of the image or more (1 = none)"
    )
    dim: int = Field(64, ge=8, le=4096, description="width of the objective's heads (not kept)")
    temperature: float = Field(0.1, gt=0.0, le=10.0)
    match_weight: float = Field(1.0, ge=0.0, le=MAX_WEIGHT)
    depth_weight: float = Field(1.0, ge=0.0, le=MAX_WEIGHT)
    edge_weight: float = Field(1.0, ge=0.0, le=MAX_WEIGHT)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    checkpoint_every: int = Field(250, ge=1, le=MAX_ITERS)

    @field_validator("domains")
    @classmethod
    def _two_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or len(value) < 2:
            raise ValueError(f"needs at least two distinct domains to pair, got {list(value)}")
        return value
