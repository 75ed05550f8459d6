"""Repeat-factor sampling of source and generated images, addressable by position so training can resume.

Every image of dataset d gets a repeat factor r_d (1 for the source, ``repeat_factor`` for generated
images). An epoch holds each image floor(r) times plus once more with probability frac(r) (stochastic
rounding, as in detectron2's RepeatFactorTrainingSampler), shuffled. The expected share of generated
images in a batch is therefore

    share_gen = r * N_gen / (N_src + r * N_gen)

e.g. GTA5 (24,904) + 5,000 generated at r = 2.0 gives 10,000 / 34,904 = 28.7 %; SYNTHIA (9,400) at
r = 0.7 gives 27.1 %; Cityscapes (2,975) at r = 0.2 gives 25.2 % -- the 25-29 % of the paper.

The stream is a pure function of (seed, sizes, factors): the sample at any position can be recomputed,
so a resumed run only needs the number of samples already consumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


def generated_share(num_source: int, num_generated: int, repeat_factor: float) -> float:
    """Expected fraction of generated images per batch under repeat-factor sampling."""
    weighted = repeat_factor * num_generated
    total = num_source + weighted
    if total <= 0:
        raise ValueError("repeat-factor sampling needs at least one image with a positive repeat factor")
    return weighted / total


@dataclass(frozen=True)
class SampleRef:
    """One draw: which dataset, which image in it, and the seed of its augmentation."""

    dataset: int
    index: int
    seed: int


class RepeatFactorSampler:
    """An endless, seeded, epoch-shuffled stream of (dataset, index) draws with per-dataset repeat factors."""

    def __init__(self, sizes: Sequence[int], factors: Sequence[float], seed: int):
        if len(sizes) != len(factors) or not sizes:
            raise ValueError(f"need one repeat factor per dataset, got sizes {list(sizes)} and factors {list(factors)}")
        if any(n < 0 for n in sizes) or any(f < 0 for f in factors):
            raise ValueError(f"dataset sizes {list(sizes)} and repeat factors {list(factors)} must be non-negative")
        if sum(n * f for n, f in zip(sizes, factors, strict=True)) <= 0:
            raise ValueError(f"nothing to sample: sizes {list(sizes)} with repeat factors {list(factors)}")
        self.sizes = [int(n) for n in sizes]
        self.factors = [float(f) for f in factors]
        self.seed = int(seed)
        self._dataset_of = np.repeat(np.arange(len(self.sizes)), self.sizes)
        self._index_of = np.concatenate([np.arange(n) for n in self.sizes]) if sum(self.sizes) else np.zeros(0, int)
        self._factor_of = np.repeat(np.asarray(self.factors), self.sizes)
        self._epoch_lengths: list[int] = []

    def expected_share(self, dataset: int) -> float:
        """The fraction of draws expected to come from one dataset."""
        weights = [n * f for n, f in zip(self.sizes, self.factors, strict=True)]
        return weights[dataset] / sum(weights)

    def epoch(self, epoch: int) -> np.ndarray:
        """The flat image ids of one epoch, in order (ids index the concatenation of all datasets)."""
        rng = np.random.default_rng([self.seed, epoch])
        whole = np.floor(self._factor_of)
        repeats = whole + (rng.random(len(self._factor_of)) < (self._factor_of - whole))
        ids = np.repeat(np.arange(len(self._factor_of)), repeats.astype(np.int64))
        if ids.size == 0:
            raise ValueError(f"epoch {epoch} of the sampler is empty: repeat factors {self.factors} are all below 1 "
                             "and every stochastic rounding came out 0")
        return ids[rng.permutation(ids.size)]

    def _epoch_length(self, epoch: int) -> int:
        while len(self._epoch_lengths) <= epoch:
            self._epoch_lengths.append(int(self.epoch(len(self._epoch_lengths)).size))
        return self._epoch_lengths[epoch]

    def locate(self, position: int) -> tuple[int, int]:
        """(epoch, offset in that epoch) of the draw at a global position."""
        if position < 0:
            raise ValueError(f"sampler position must be >= 0, got {position}")
        epoch = 0
        while position >= self._epoch_length(epoch):
            position -= self._epoch_length(epoch)
            epoch += 1
        return epoch, position

    def draw_seed(self, position: int) -> int:
        """The augmentation seed of the draw at a position: independent of workers and of restarts."""
        return int(np.random.SeedSequence([self.seed, 0x5A3D, position]).generate_state(1, np.uint64)[0] >> 1)

    def iter_from(self, position: int) -> Iterator[SampleRef]:
        """Draws from a global position on, forever."""
        epoch, offset = self.locate(position)
        while True:
            for flat in self.epoch(epoch)[offset:]:
                yield SampleRef(int(self._dataset_of[flat]), int(self._index_of[flat]), self.draw_seed(position))
                position += 1
            epoch, offset = epoch + 1, 0

    def batches_from(self, position: int, batch_size: int) -> Iterator[list[SampleRef]]:
        """Batches of draws from a global position on, forever (a DataLoader batch_sampler)."""
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        stream = self.iter_from(position)
        while True:
            yield [next(stream) for _ in range(batch_size)]
