"""Pseudo-labelling, SAM refinement, training, evaluation and the round loop."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

from clouds.config.base import MAX_BATCH, MAX_ITERS, MAX_SIDE, MAX_WEIGHT, Section
from clouds.config.variants import MethodTag, Variants

Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
Scale = Annotated[float, Field(gt=0.0, le=100.0)]


class PseudoLabelConfig(Section):
    batch_size: int = Field(4, ge=1, le=MAX_BATCH)
    confidence_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="softmax confidence below which a pixel is ignored; null = reference (none)"
    )


class SamRefine(Section):
    """SAM (the reference): points sampled from each teacher component prompt a mask that relabels it."""

    method: Literal["sam"] = "sam"
    model_type: Literal["vit_t", "vit_b", "vit_l", "vit_h", "tiny", "toy"] = Field(
        "vit_t", description="vit_t = MobileSAM (reference default), vit_h = SAM ViT-H; tiny = random test model; "
        "toy = the CPU demo's SAM (`clouds run pretrain-sam`, shipped in models/weights/)"
    )
    checkpoint: str | None = None
    min_area: int = Field(5000, ge=0, le=MAX_SIDE * MAX_SIDE, description="components at or below this pixel area are dropped (768x768)")
    min_area_fraction: float | None = Field(
        None, ge=0.0, lt=1.0, description="if set, overrides min_area as a share of H*W (5000/768^2 = 0.00848)"
    )
    points_per_component: int = Field(5, ge=1, le=1000)
    multimask: bool = True
    connectivity: Literal[4, 8] = 4


SLIC_OPTIONS = ("segments", "compactness")
FELZENSZWALB_OPTIONS = ("scale", "sigma", "min_size")


class SuperpixelRefine(Section):
    """Every superpixel takes its majority teacher class (no weights; the CPU demo's refiner before its toy SAM). It finds no
    components, so SAM's `min_area` and `connectivity` do not apply."""

    method: Literal["superpixel"] = "superpixel"
    algorithm: Literal["slic", "felzenszwalb"] = "slic"
    segments: int = Field(400, ge=1, le=MAX_SIDE * MAX_SIDE, description="slic: about this many superpixels")
    compactness: float = Field(10.0, gt=0.0, le=MAX_WEIGHT, description="slic: higher means squarer superpixels")
    scale: float = Field(100.0, gt=0.0, le=MAX_WEIGHT, description="felzenszwalb: higher means larger superpixels")
    sigma: float = Field(0.8, ge=0.0, le=100.0, description="felzenszwalb: Gaussian smoothing before segmenting")
    min_size: int = Field(50, ge=0, le=MAX_SIDE * MAX_SIDE, description="felzenszwalb: smallest superpixel")

    def _unused(self) -> tuple[tuple[str, ...], str]:
        """The options of the algorithm not chosen, and that algorithm."""
        return (FELZENSZWALB_OPTIONS, "felzenszwalb") if self.algorithm == "slic" else (SLIC_OPTIONS, "slic")

    @model_validator(mode="after")
    def _options_of_the_algorithm(self) -> SuperpixelRefine:
        """An option of the other algorithm would be ignored: refuse one that is set explicitly."""
        unused, owner = self._unused()
        for option in unused:
            if option in self.model_fields_set:
                raise ValueError(f"refine.{option} applies to refine.algorithm: {owner}, not {self.algorithm}")
        return self

    @model_serializer(mode="wrap")
    def _dump_the_algorithm_in_use(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the chosen algorithm's options are hashed and recorded (the others do not change the labels),
        and a dump loads back, as the Ray workers' copy of the config does."""
        return {k: v for k, v in handler(self).items() if k not in self._unused()[0]}


class NoRefine(Section):
    """The teacher labels as they are: the control that shows what refinement adds."""

    method: Literal["none"] = "none"


RefineConfig = Annotated[
    Annotated[SamRefine, Tag("sam")] | Annotated[SuperpixelRefine, Tag("superpixel")] | Annotated[NoRefine, Tag("none")],
    Discriminator(MethodTag("method", "sam")),
]
"""`refine`: the options of the method `refine.method` names (absent: sam)."""

REFINE_VARIANTS = Variants.of("refine", RefineConfig, renamed={
    "sam_model_type": "model_type", "sam_checkpoint": "checkpoint", "superpixel_algorithm": "algorithm",
    "superpixel_segments": "segments", "superpixel_compactness": "compactness", "felzenszwalb_scale": "scale",
    "felzenszwalb_sigma": "sigma", "felzenszwalb_min_size": "min_size",
})


class TrainConfig(Section):
    warmup_iters: int = Field(40000, ge=1, le=MAX_ITERS)
    joint_iters: int = Field(40000, ge=1, le=MAX_ITERS)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)
    lr: float = Field(1e-5, gt=0.0, le=10.0)
    schedule: Literal["constant", "poly"] = "constant"
    poly_power: float = Field(0.9, gt=0.0, le=100.0)
    weight_decay: float = Field(0.05, ge=0.0, le=10.0)
    grad_clip: float = Field(0.01, ge=0.0, le=MAX_WEIGHT, description="max gradient norm; 0 = no clipping")
    crop_size: tuple[Side, Side] = Field((768, 768), description="(H, W) of training crops")
    scale_range: tuple[Scale, Scale] = Field((0.5, 2.0), description="random rescaling (low, high), 0 < low <= high")
    base_size: tuple[Side, Side] = Field((1052, 1914), description="source (H, W) that random scaling starts from")
    color_jitter: bool = True
    repeat_factor: float = Field(2.0, ge=0.0, le=1000.0, description="oversampling of generated images (GTA 2.0, SYNTHIA 0.7, CS 0.2)")
    ema_alpha: float = Field(0.999, ge=0.0, le=1.0)
    ema_period: int = Field(100, ge=1, le=MAX_ITERS, description="teacher EMA update every N iterations")
    checkpoint_every: int = Field(1000, ge=1, le=MAX_ITERS, description="resumable snapshot every N iterations")
    log_every: int = Field(20, ge=1, le=MAX_ITERS)
    num_workers: int = Field(2, ge=0, le=1024, description="DataLoader worker processes")

    @field_validator("scale_range")
    @classmethod
    def _scale_order(cls, value: tuple[float, float]) -> tuple[float, float]:
        """A field validator (not a model one) so that the error names `train.scale_range` itself."""
        if value[0] > value[1]:
            raise ValueError(f"low ({value[0]}) is larger than high ({value[1]})")
        return value


class EvaluateConfig(Section):
    short_side: int | None = Field(1024, ge=1, le=MAX_SIDE, description="resize short side to this (null = native size)")
    batch_size: int = Field(1, ge=1, le=MAX_BATCH, description="images per forward pass (only equal-sized images share one)")
    weights: Literal["student", "teacher"] = Field("student", description="which network of a checkpoint to score")
    label_resolution: Literal["resized", "native"] = Field(
        "resized",
        description="score against labels resized like the image (PIL nearest, the reference; docs/PROTOCOL.md), or "
        "upsample the scores to the label's native size (as Cityscapes' official evaluator sees it)",
    )


class LoopConfig(Section):
    rounds: int = Field(1, ge=1, le=1000)
    round_iters: int | None = Field(None, ge=1, le=MAX_ITERS, description="joint iterations per round (default: joint_iters/rounds)")
