"""Mapillary Vistas v1.2: `{training,validation}/images/*.jpg` with `labels/*.png` (palette PNGs of ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.ingest.errors import DatasetError
from stages.ingest.labelmaps import MAPILLARY_LUT, apply_lut
from stages.ingest.readers import read_index_label
from stages.ingest.sources.base import FileSource, Pair, listed, pair_up, sample_key

# The config speaks of train/val like every other dataset; Vistas names its folders in full.
SPLIT_FOLDERS = {"train": "training", "training": "training", "val": "validation", "validation": "validation",
                 "test": "testing", "testing": "testing"}


class MapillarySource(FileSource):
    kind = "mapillary"

    @property
    def folder(self) -> Path:
        if self.spec.split not in SPLIT_FOLDERS:
            raise DatasetError(f"mapillary split {self.spec.split!r}: expected one of {sorted(SPLIT_FOLDERS)}")
        return self.root / SPLIT_FOLDERS[self.spec.split]

    def find_pairs(self) -> list[Pair]:
        images = listed(self.folder / "images", "*.jpg", f"mapillary {self.spec.split} images")
        labels = self.folder / "labels"
        return pair_up(images, lambda p: labels / (p.stem + ".png"), lambda p: sample_key(p.stem),
                       lambda p: {"split": self.spec.split})

    def read_label(self, path: Path) -> np.ndarray:
        return apply_lut(read_index_label(path), MAPILLARY_LUT)
