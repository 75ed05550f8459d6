"""Stage `synthesize`: a text-to-image model (or the toy renderer) turns prompts into training images."""

from stages.synthesize.backend import ImageBackend, Rendered, build_backend, image_problem, to_uint8
from stages.synthesize.plan import ImageJob, image_seed, num_shards, plan_images, shard_jobs
from stages.synthesize.stage import (
    ImageGenerationError,
    prepare_synthesize,
    render_samples,
    synthesize_settings,
    synthesize_shard,
)

__all__ = [
    "ImageBackend", "ImageGenerationError", "ImageJob", "Rendered", "build_backend", "image_problem",
    "image_seed", "num_shards", "plan_images", "prepare_synthesize", "render_samples", "shard_jobs", "synthesize_settings",
    "synthesize_shard", "to_uint8",
]
