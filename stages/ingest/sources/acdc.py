"""ACDC: `rgb_anon/<condition>/{split}/<seq>/<name>_rgb_anon.png` with `gt/.../<name>_gt_labelTrainIds.png`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.ingest.errors import DatasetError
from stages.ingest.sources.base import FileSource, Pair, listed, pair_up, read_train_ids, sample_key

IMAGE_SUFFIX = "_rgb_anon.png"
LABEL_SUFFIX = "_gt_labelTrainIds.png"
CONDITIONS = ("fog", "night", "rain", "snow")


class ACDCSource(FileSource):
    """One adverse condition of ACDC; each condition is its own target domain."""

    kind = "acdc"

    @property
    def condition(self) -> str:
        condition = self.spec.condition
        if condition not in CONDITIONS:
            raise DatasetError(f"acdc condition {condition!r}: expected one of {', '.join(CONDITIONS)}")
        return condition

    @property
    def domain(self) -> str:
        return f"acdc/{self.condition}"

    def _label_of(self, image: Path) -> Path:
        name = image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX
        return self.root / "gt" / self.condition / self.spec.split / image.parent.name / name

    def find_pairs(self) -> list[Pair]:
        images = listed(self.root / "rgb_anon" / self.condition / self.spec.split, "*/*" + IMAGE_SUFFIX,
                        f"acdc {self.condition} {self.spec.split} images")
        return pair_up(images, self._label_of, lambda p: sample_key(p.name[: -len(IMAGE_SUFFIX)]),
                       lambda p: {"condition": self.condition, "sequence": p.parent.name, "split": self.spec.split})

    def read_label(self, path: Path) -> np.ndarray:
        return read_train_ids(path)
