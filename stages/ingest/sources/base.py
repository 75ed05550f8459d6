"""What every dataset source shares: pairing image and label files, lazy loading, sample building.

A source lists its samples up front (cheap: paths, headers) in a sorted, deterministic order, and
defers the pixel work to one thunk per sample, so the writer can skip samples already on disk when a
run resumes without reading them again.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from clouds.config import DatasetSpec
from clouds.labels import check_train_ids
from stages.ingest.errors import DatasetError
from stages.ingest.readers import image_size, read_index_label, read_rgb

logger = logging.getLogger(__name__)

Sample = dict[str, Any]
LazySample = tuple[str, Callable[[], Sample]]
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Pair:
    """One image file and its label file, with the artifact key and per-sample metadata."""

    key: str
    image: Path
    label: Path
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Listing:
    """A source's planned samples in order, plus what its documented rules left out (and why)."""

    samples: list[LazySample]
    excluded: list[dict[str, str]] = field(default_factory=list)


def sample_key(name: str) -> str:
    """An artifact key from a file stem: the writer accepts only [A-Za-z0-9_-]."""
    return _KEY_UNSAFE.sub("_", name)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist")
    return path


def listed(folder: Path, pattern: str, what: str) -> list[Path]:
    """Files matching a pattern under an existing folder, sorted; an empty dataset is an error."""
    files = sorted(p for p in require_dir(folder, what).glob(pattern) if p.is_file())
    if not files:
        raise DatasetError(f"{what}: no files matching {pattern!r} in {folder}")
    return files


def pair_up(images: Iterable[Path], label_of: Callable[[Path], Path], key_of: Callable[[Path], str],
            meta_of: Callable[[Path], dict[str, Any]] | None = None) -> list[Pair]:
    """Pair every image with its label; a missing label or a key clash names the files."""
    pairs: list[Pair] = []
    seen: dict[str, Path] = {}
    for image in images:
        label = label_of(image)
        if not label.is_file():
            raise DatasetError(f"{image}: its label file {label} does not exist")
        key = key_of(image)
        if key in seen:
            raise DatasetError(f"{image} and {seen[key]} give the same sample key {key!r}")
        seen[key] = image
        pairs.append(Pair(key, image, label, meta_of(image) if meta_of else {}))
    return pairs


def as_train_ids(raw: np.ndarray, path: Path) -> np.ndarray:
    """Validate a label that a dataset ships as train ids already, and return it as uint8."""
    try:
        check_train_ids(raw, str(path))
    except ValueError as err:
        raise DatasetError(str(err)) from None
    return raw.astype(np.uint8)


def read_train_ids(path: Path) -> np.ndarray:
    return as_train_ids(read_index_label(path), path)


class FileSource(ABC):
    """A dataset of image/label file pairs under `spec.root`, in the layout SPEC.md lists."""

    kind: ClassVar[str]
    # GTA5's reference rule: pairs whose image and label sizes differ are dropped, not errors.
    exclude_size_mismatch: ClassVar[bool] = False

    def __init__(self, spec: DatasetSpec, image_format: str = "png"):
        if spec.root is None:
            raise DatasetError(f"a {spec.kind} dataset needs 'root'")
        if image_format not in ("png", "jpg"):
            raise DatasetError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        self.spec = spec
        self.root = Path(spec.root).expanduser()
        self.image_format = image_format
        require_dir(self.root, f"{self.kind} dataset")

    @property
    def domain(self) -> str:
        return self.kind

    @abstractmethod
    def find_pairs(self) -> list[Pair]:
        """Every image/label pair of the configured split, sorted by key."""

    @abstractmethod
    def read_label(self, path: Path) -> np.ndarray:
        """The label file as HxW uint8 train ids (255 ignore)."""

    def listing(self) -> Listing:
        pairs = self.find_pairs()
        excluded: list[dict[str, str]] = []
        if self.exclude_size_mismatch:
            pairs, excluded = self._drop_size_mismatch(pairs)
        if self.spec.count is not None:
            pairs = pairs[: self.spec.count]
        return Listing([(p.key, partial(self.load, p)) for p in pairs], excluded)

    def _drop_size_mismatch(self, pairs: list[Pair]) -> tuple[list[Pair], list[dict[str, str]]]:
        kept, dropped = [], []
        for pair in pairs:
            image_hw, label_hw = image_size(pair.image), image_size(pair.label)
            if image_hw == label_hw:
                kept.append(pair)
            else:
                dropped.append({"key": pair.key, "file": self._rel(pair.image),
                                "reason": f"image {image_hw} != label {label_hw}"})
        if dropped:
            logger.warning("%s: excluded %d pairs whose image and label sizes differ: %s", self.kind,
                           len(dropped), ", ".join(d["file"] for d in dropped))
        if not kept:
            raise DatasetError(f"{self.kind} dataset {self.root}: every pair has mismatched sizes")
        return kept, dropped

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def load(self, pair: Pair) -> Sample:
        image = read_rgb(pair.image)
        label = self.read_label(pair.label)
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"{pair.image} is {image.shape[0]}x{image.shape[1]} but its label {pair.label} is "
                f"{label.shape[0]}x{label.shape[1]}"
            )
        meta = {"dataset": self.kind, "domain": self.domain, "source_file": self._rel(pair.image),
                "label_file": self._rel(pair.label), **pair.meta}
        return {"__key__": pair.key, self.image_format: image, "seg.png": label, "json": meta}
