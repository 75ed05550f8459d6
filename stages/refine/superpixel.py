"""A weight-free refiner: every superpixel takes the majority teacher class inside it.

It snaps teacher labels to image edges without any model download, which makes it the CPU demo's refiner
and the baseline a SAM refinement has to beat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from skimage.segmentation import felzenszwalb, slic

from clouds.config import SuperpixelRefine
from clouds.labels import IGNORE, NUM_CLASSES


@dataclass(frozen=True)
class SuperpixelStats:
    superpixels: int
    pixels_changed: int
    pixels_ignored: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def superpixels(image: np.ndarray, cfg: SuperpixelRefine) -> np.ndarray:
    """An HxW map of superpixel ids 0..S-1."""
    if cfg.algorithm == "slic":
        return slic(
            image,
            n_segments=cfg.segments,
            compactness=cfg.compactness,
            start_label=0,
            channel_axis=-1,
        )
    return felzenszwalb(
        image,
        scale=cfg.scale,
        sigma=cfg.sigma,
        min_size=cfg.min_size,
        channel_axis=-1,
    )


def majority_vote(segments: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Each segment gets its most frequent teacher class (ties: lowest id); all-ignore segments stay ignore."""
    ids = np.unique(segments, return_inverse=True)[1].reshape(segments.shape)
    num_segments = int(ids.max()) + 1
    classes = np.where(teacher == IGNORE, NUM_CLASSES, teacher).astype(np.int64)  # ignore gets its own bin
    votes = np.bincount(
        (ids * (NUM_CLASSES + 1) + classes).ravel(), minlength=num_segments * (NUM_CLASSES + 1)
    )
    votes = votes.reshape(num_segments, NUM_CLASSES + 1)[:, :NUM_CLASSES]
    winner = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), IGNORE).astype(np.uint8)
    return winner[ids]


def refine_with_superpixels(
    image: np.ndarray, teacher: np.ndarray, cfg: SuperpixelRefine
) -> tuple[np.ndarray, SuperpixelStats]:
    segments = superpixels(image, cfg)
    refined = majority_vote(segments, teacher)
    stats = SuperpixelStats(
        superpixels=int(np.unique(segments).size),
        pixels_changed=int((refined != teacher).sum()),
        pixels_ignored=int((refined == IGNORE).sum()),
    )
    return refined, stats
