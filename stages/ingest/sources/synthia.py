"""SYNTHIA-RAND-CITYSCAPES: `RGB/0000000.png` with 16-bit `GT/LABELS/0000000.png`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.ingest.labelmaps import SYNTHIA_LUT, apply_lut
from stages.ingest.readers import read_synthia_label
from stages.ingest.sources.base import FileSource, Pair, listed, pair_up, sample_key


class SynthiaSource(FileSource):
    """All of SYNTHIA-RAND-CITYSCAPES (the split option does not apply)."""

    kind = "synthia"

    def find_pairs(self) -> list[Pair]:
        images = listed(self.root / "RGB", "*.png", "synthia RGB images")
        labels = self.root / "GT" / "LABELS"
        return pair_up(images, lambda p: labels / p.name, lambda p: sample_key(p.stem))

    def read_label(self, path: Path) -> np.ndarray:
        return apply_lut(read_synthia_label(path), SYNTHIA_LUT)
