"""Pseudo-labelling, SAM refinement, training, evaluation and the round loop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from clouds.config.base import Section


class PseudoLabelConfig(Section):
    batch_size: int = 4
    confidence_threshold: float | None = Field(None, description="null = reference (no threshold)")


class RefineConfig(Section):
    method: Literal["sam", "superpixel", "none"] = "sam"
    sam_model_type: Literal["vit_t", "vit_b", "vit_l", "vit_h", "tiny"] = Field(
        "vit_t", description="vit_t = MobileSAM (reference default), vit_h = SAM ViT-H; tiny = random test model"
    )
    sam_checkpoint: str | None = None
    min_area: int = Field(5000, ge=0, description="components at or below this pixel area are dropped (768x768)")
    min_area_fraction: float | None = Field(
        None, ge=0.0, lt=1.0, description="if set, overrides min_area as a share of H*W (5000/768^2 = 0.00848)"
    )
    points_per_component: int = Field(5, ge=1)
    multimask: bool = True
    connectivity: Literal[4, 8] = 4
    superpixel_algorithm: Literal["slic", "felzenszwalb"] = "slic"
    superpixel_segments: int = 400
    superpixel_compactness: float = 10.0
    felzenszwalb_scale: float = Field(100.0, description="felzenszwalb: higher means larger superpixels")
    felzenszwalb_sigma: float = 0.8
    felzenszwalb_min_size: int = 50


class TrainConfig(Section):
    warmup_iters: int = Field(40000, ge=1)
    joint_iters: int = Field(40000, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = 1e-5
    schedule: Literal["constant", "poly"] = "constant"
    poly_power: float = 0.9
    weight_decay: float = 0.05
    grad_clip: float = 0.01
    crop_size: tuple[int, int] = (768, 768)
    scale_range: tuple[float, float] = (0.5, 2.0)
    base_size: tuple[int, int] = Field((1052, 1914), description="source (H, W) that random scaling starts from")
    color_jitter: bool = True
    repeat_factor: float = Field(2.0, ge=0.0, description="oversampling of generated images (GTA 2.0, SYNTHIA 0.7, CS 0.2)")
    ema_alpha: float = Field(0.999, ge=0.0, le=1.0)
    ema_period: int = Field(100, ge=1, description="teacher EMA update every N iterations")
    checkpoint_every: int = Field(1000, ge=1, description="resumable snapshot every N iterations")
    log_every: int = Field(20, ge=1)
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")


class EvaluateConfig(Section):
    short_side: int | None = Field(1024, ge=1, description="resize short side to this (null = native size)")
    batch_size: int = Field(1, ge=1, description="images per forward pass (only equal-sized images share one)")
    weights: Literal["student", "teacher"] = Field("student", description="which network of a checkpoint to score")
    label_resolution: Literal["resized", "native"] = Field(
        "resized",
        description="score against labels resized like the image (nearest; SPEC for BDD/Mapillary/ACDC), or "
        "upsample the scores to the label's native size (as Cityscapes' official evaluator sees it)",
    )


class LoopConfig(Section):
    rounds: int = Field(1, ge=1)
    round_iters: int | None = Field(None, description="joint iterations per round (default: joint_iters/rounds)")
