"""BDD100K-10K: `images/10k/{split}/*.jpg` with `labels/sem_seg/masks/{split}/*.png` (train ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.ingest.sources.base import FileSource, Pair, listed, pair_up, read_train_ids, sample_key


class BDD10kSource(FileSource):
    kind = "bdd10k"

    def find_pairs(self) -> list[Pair]:
        images = listed(self.root / "images" / "10k" / self.spec.split, "*.jpg",
                        f"bdd10k {self.spec.split} images")
        masks = self.root / "labels" / "sem_seg" / "masks" / self.spec.split
        return pair_up(images, lambda p: masks / (p.stem + ".png"), lambda p: sample_key(p.stem),
                       lambda p: {"split": self.spec.split})

    def read_label(self, path: Path) -> np.ndarray:
        return read_train_ids(path)
