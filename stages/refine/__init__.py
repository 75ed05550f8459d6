"""Refinement of teacher pseudo labels: SAM (CLOUDS part 4) or a weight-free superpixel vote."""

from stages.refine.algorithm import RefineStats, compose_label, refine_with_sam
from stages.refine.components import Component, Prompts, build_prompts, find_components, sample_rng
from stages.refine.predictor import MaskPredictor, SamMaskPredictor
from stages.refine.stage import Tally, build_refiner, prepare_refine, refine_settings, refine_shard
from stages.refine.superpixel import SuperpixelStats, refine_with_superpixels

__all__ = [
    "Component", "MaskPredictor", "Prompts", "RefineStats", "SamMaskPredictor", "SuperpixelStats", "Tally",
    "build_prompts", "build_refiner", "compose_label", "find_components", "prepare_refine", "refine_settings",
    "refine_shard", "refine_with_sam", "refine_with_superpixels", "sample_rng",
]
