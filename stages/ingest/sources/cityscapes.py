"""Cityscapes: `leftImg8bit/{split}/<city>/*_leftImg8bit.png` with `gtFine/{split}/<city>/*_gtFine_*`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.ingest.labelmaps import CITYSCAPES_LUT, apply_lut
from stages.ingest.readers import read_index_label
from stages.ingest.sources.base import FileSource, Pair, listed, pair_up, read_train_ids, sample_key

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


class CityscapesSource(FileSource):
    """One split; `*_labelTrainIds.png` (from cityscapesScripts) is used as-is when present, else labelIds."""

    kind = "cityscapes"

    def _base(self, image: Path) -> str:
        return image.name[: -len(IMAGE_SUFFIX)]

    def _label_of(self, image: Path) -> Path:
        folder = self.root / "gtFine" / self.spec.split / image.parent.name
        train_ids = folder / (self._base(image) + TRAIN_IDS_SUFFIX)
        return train_ids if train_ids.is_file() else folder / (self._base(image) + LABEL_IDS_SUFFIX)

    def find_pairs(self) -> list[Pair]:
        images = listed(self.root / "leftImg8bit" / self.spec.split, "*/*" + IMAGE_SUFFIX,
                        f"cityscapes {self.spec.split} images")
        return pair_up(images, self._label_of, lambda p: sample_key(self._base(p)),
                       lambda p: {"city": p.parent.name, "split": self.spec.split})

    def read_label(self, path: Path) -> np.ndarray:
        if path.name.endswith(TRAIN_IDS_SUFFIX):
            return read_train_ids(path)
        return apply_lut(read_index_label(path), CITYSCAPES_LUT)
