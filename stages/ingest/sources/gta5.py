"""GTA5: `images/00001.png` with `labels/00001.png`, palette PNGs of Cityscapes label ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.ingest.labelmaps import GTA5_LUT, apply_lut
from stages.ingest.readers import read_index_label
from stages.ingest.sources.base import FileSource, Pair, listed, pair_up, sample_key


class GTA5Source(FileSource):
    """All of GTA5 (the split option does not apply), minus the pairs of mismatched size."""

    kind = "gta5"
    exclude_size_mismatch = True

    def find_pairs(self) -> list[Pair]:
        images = listed(self.root / "images", "*.png", "gta5 images")
        labels = self.root / "labels"
        return pair_up(images, lambda p: labels / p.name, lambda p: sample_key(p.stem))

    def read_label(self, path: Path) -> np.ndarray:
        return apply_lut(read_index_label(path), GTA5_LUT)
