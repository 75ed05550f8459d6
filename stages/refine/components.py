"""Connected components of a teacher label and the SAM point prompts drawn from them.

Everything random here comes from a Generator derived from (run seed, sample key), so a sample's prompts
do not depend on which shard, worker or order it was processed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure

from clouds.labels import IGNORE, NUM_CLASSES

PAD_LABEL = -1  # SAM's "not a point" label: pads components that have fewer pixels than points asked for


@dataclass(frozen=True)
class Component:
    """One connected region of one class, stored as a bounding box and the mask inside it."""

    class_id: int
    area: int
    bbox: tuple[slice, slice]
    mask: np.ndarray  # bool, shape of the bbox

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        out[self.bbox] = self.mask
        return out


@dataclass(frozen=True)
class Prompts:
    """Batched point prompts, one row per kept component."""

    class_ids: np.ndarray  # [K] int, the class each component (and its SAM mask) stands for
    points: np.ndarray  # [K, N, 2] float32, (x, y) pixel coordinates
    labels: np.ndarray  # [K, N] int32, 1 = positive point, PAD_LABEL = padding
    components_found: int

    @property
    def num_components(self) -> int:
        return int(self.class_ids.shape[0])


def sample_rng(seed: int, key: str) -> np.random.Generator:
    """A Generator that depends only on the run seed and the sample key (not on Python's salted hash)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, digest]))


def area_threshold(shape: tuple[int, int], min_area: int, min_area_fraction: float | None) -> float:
    """Components must be strictly larger than this; the fraction makes the rule independent of size."""
    if min_area_fraction is not None:
        return min_area_fraction * shape[0] * shape[1]
    return float(min_area)


def find_components(
    label: np.ndarray, threshold: float, connectivity: int = 4
) -> tuple[list[Component], int]:
    """Components of every class with area > threshold, in (class, raster) order; and how many there were.

    One labelling pass over the whole map (skimage labels connected runs of equal value) gives exactly
    the components of every `label == c` that scipy.ndimage.label would find class by class, ~8x faster.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    regions, count = measure.label(
        label, background=IGNORE, connectivity=1 if connectivity == 4 else 2, return_num=True
    )
    areas = np.bincount(regions.ravel(), minlength=count + 1)
    class_of = np.full(count + 1, IGNORE, dtype=np.int64)
    class_of[regions.ravel()] = label.ravel()
    class_of[0] = IGNORE
    kept: list[Component] = []
    for index, bbox in enumerate(ndimage.find_objects(regions), start=1):
        if bbox is not None and class_of[index] < NUM_CLASSES and areas[index] > threshold:
            kept.append(Component(int(class_of[index]), int(areas[index]), bbox, regions[bbox] == index))
    kept.sort(key=lambda c: c.class_id)  # stable: raster order within a class
    return kept, int((class_of[1:] < NUM_CLASSES).sum())


def sample_points(component: Component, n: int, rng: np.random.Generator) -> np.ndarray:
    """min(n, area) distinct pixels of the component as (x, y)."""
    ys, xs = np.nonzero(component.mask)
    chosen = rng.choice(ys.size, size=min(n, ys.size), replace=False)
    return np.stack([xs[chosen] + component.bbox[1].start, ys[chosen] + component.bbox[0].start], axis=1)


def build_prompts(
    label: np.ndarray,
    threshold: float,
    points_per_component: int,
    rng: np.random.Generator,
    connectivity: int = 4,
) -> Prompts:
    """The components SAM is asked about, with their positive points packed into one batch."""
    if points_per_component < 1:
        raise ValueError(f"points_per_component must be at least 1, got {points_per_component}")
    components, found = find_components(label, threshold, connectivity)
    k = len(components)
    points = np.zeros((k, points_per_component, 2), dtype=np.float32)
    labels = np.full((k, points_per_component), PAD_LABEL, dtype=np.int32)
    for row, component in enumerate(components):
        chosen = sample_points(component, points_per_component, rng)
        points[row, : len(chosen)] = chosen
        labels[row, : len(chosen)] = 1
    class_ids = np.array([c.class_id for c in components], dtype=np.int64)
    return Prompts(class_ids=class_ids, points=points, labels=labels, components_found=found)
