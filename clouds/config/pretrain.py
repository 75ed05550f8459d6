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


class PretrainSamConfig(Section):
    """A small Segment Anything model trained once on the toy world's object masks (stages/pretrain/sam_stage.py).

    Class-agnostic, as SAM's SA-1B training is: the renderer's object ids, never a class. `scene_seed` keeps
    its streets apart from the pretrain section's and from every data set the demo trains and scores on.
    """

    model_type: Literal["toy", "tiny"] = Field(
        "toy", description="the segment_anything build trained (models/sam.py): toy = 0.5M parameters for 64x128 streets"
    )
    domains: tuple[Domain, ...] = ("sim", "real", "fog", "night", "rain", "snow")
    scenes: int = Field(1500, ge=1, le=MAX_COUNT, description="streets rendered, each in one domain drawn at random")
    scene_seed: int = Field(3000, ge=0, le=MAX_SEED)
    generated_share: float = Field(
        0.5, ge=0.0, le=1.0, description="share of photographic renders in the synthesize stage's `generated` style"
    )
    height: int = Field(64, ge=16, le=4096)
    width: int = Field(128, ge=16, le=4096)
    iters: int = Field(2500, ge=1, le=MAX_ITERS)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="images per step")
    masks_per_image: int = Field(8, ge=1, le=1024, description="objects prompted per image and step")
    points_per_mask: int = Field(5, ge=1, le=64, description="most positive points per prompt (refine.points_per_component)")
    min_area: int = Field(32, ge=1, le=1 << 24, description="objects smaller than this (pixels) are not prompted")
    lr: float = Field(1.0e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.05, ge=0.0, le=1.0)
    warmup_iters: int = Field(100, ge=0, le=MAX_ITERS, description="linear lr warm-up, then cosine to 0")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    checkpoint_every: int = Field(250, ge=1, le=MAX_ITERS)

    @field_validator("domains")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a domain twice: {list(value)}")
        return value
