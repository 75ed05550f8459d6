"""Which image is made from which prompt with which seed, and which shard holds it.

Everything here is a pure function of (prompts, num_images, run seed, shard size), so a shard can be
regenerated anywhere, alone, and come out the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stages.prompts import PromptRecord, derive_seed

KEY_FORMAT = "image-{:06d}"


def image_seed(run_seed: int, index: int, attempt: int = 0) -> int:
    """The seed of image `index`; a retry after a NaN/black image uses the next attempt's seed."""
    return derive_seed(run_seed, "image", index, attempt)


@dataclass(frozen=True)
class ImageJob:
    index: int
    prompt: PromptRecord
    run_seed: int

    @property
    def key(self) -> str:
        return KEY_FORMAT.format(self.index)

    def seed(self, attempt: int = 0) -> int:
        return image_seed(self.run_seed, self.index, attempt)


def plan_images(prompts: Sequence[PromptRecord], num_images: int, run_seed: int) -> list[ImageJob]:
    """Image i uses prompt i mod len(prompts), as the reference cycles its 100 prompts over 5K images."""
    if not prompts:
        raise ValueError("cannot plan images from an empty prompt list")
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    return [ImageJob(i, prompts[i % len(prompts)], run_seed) for i in range(num_images)]


def num_shards(num_images: int, shard_max_samples: int) -> int:
    if shard_max_samples < 1:
        raise ValueError(f"shard_max_samples must be at least 1, got {shard_max_samples}")
    return math.ceil(num_images / shard_max_samples)


def shard_jobs(jobs: Sequence[ImageJob], shard: int, shard_max_samples: int) -> list[ImageJob]:
    """Shard s holds images [s*k, (s+1)*k)."""
    count = num_shards(len(jobs), shard_max_samples)
    if not 0 <= shard < count:
        raise ValueError(f"shard {shard} does not exist: {len(jobs)} images make {count} shards of {shard_max_samples}")
    return list(jobs[shard * shard_max_samples:(shard + 1) * shard_max_samples])
