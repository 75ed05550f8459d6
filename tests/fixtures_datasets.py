"""Tiny dataset trees in each real dataset's on-disk layout, with raw label ids, for ingest tests.

Each builder writes under `root/<dataset folder>` and returns a DatasetFixture holding the expected
train-id label of every sample, keyed and ordered as the ingest source lists them. Every raw id that
a dataset's map knows appears in every label, next to ids that must become 255 (ignore), so one
ingest checks the whole map. Palette PNGs get a palette whose colours differ from their indices, and
SYNTHIA labels carry other values in their other channels, so reading the wrong thing shows.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clouds.config import DatasetSpec
from stages.ingest.labelmaps import (
    CITYSCAPES_IDS,
    GTA5_IDS,
    MAPILLARY_IDS,
    SYNTHIA_IDS,
    make_lut,
)

SIZE = (32, 48)
TRAIN_IDS = [*range(19), 255]
# Raw ids planted in labels: every mapped id plus unmapped ones (and, for 16-bit SYNTHIA, ids whose
# low byte alone would look like a mapped class).
CITYSCAPES_RAW = [*range(41), 255]
MAPILLARY_RAW = [*range(66), 255]
SYNTHIA_RAW = [*range(23), 259, 1000, 65535]
_B64URL = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass
class DatasetFixture:
    """A written tree: where it is, and what ingesting it must give, sample by sample."""

    kind: str
    root: Path
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    image_files: dict[str, Path] = field(default_factory=dict)
    label_files: dict[str, Path] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    spec_fields: dict[str, Any] = field(default_factory=dict)

    def spec(self, **overrides: Any) -> DatasetSpec:
        """A DatasetSpec that ingests this tree (name 'fixture' unless overridden)."""
        fields = {"name": "fixture", "kind": self.kind, "root": str(self.root), **self.spec_fields, **overrides}
        return DatasetSpec(**fields)

    def add(self, key: str, image_file: Path, label_file: Path, image: np.ndarray, label: np.ndarray) -> None:
        self.image_files[key], self.label_files[key] = image_file, label_file
        self.images[key], self.labels[key] = image, label

    def sort(self) -> DatasetFixture:
        """Order samples as the sources do: by image path."""
        order = sorted(self.image_files, key=lambda k: str(self.image_files[k]))
        for name in ("labels", "images", "image_files", "label_files"):
            table = getattr(self, name)
            setattr(self, name, {k: table[k] for k in order})
        return self


def raw_label(ids: Sequence[int], index: int, size: tuple[int, int] = SIZE, dtype: Any = np.uint8) -> np.ndarray:
    """Every id in `ids` present, in a layout that differs from sample to sample."""
    h, w = size
    if h * w < len(ids):
        raise ValueError(f"a {h}x{w} label cannot hold {len(ids)} ids")
    values = np.asarray(ids, dtype=np.int64)
    order = np.random.default_rng(index).permutation(h * w)
    return values[order % len(values)].reshape(h, w).astype(dtype)


def expected_train_ids(raw: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    return make_lut(mapping)[np.where(raw < 256, raw, 255)]


def random_image(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(1000 + index).integers(0, 256, (*size, 3), dtype=np.uint8)


def save_png(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    """An 8-bit PNG; `palette` makes it a "P" image whose colours are not its indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette:
        colours = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)
        image.putpalette(colours.ravel().tolist())
        assert image.mode == "P"
    image.save(path)
    return path


def save_jpg(path: Path, array: np.ndarray) -> np.ndarray:
    """Write a JPEG and return the pixels a reader gets back from it (JPEG is lossy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def write_png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit colour PNG, as SYNTHIA ships its labels (Pillow cannot write one).

    Rows use the None, Sub and Up filters in turn, so the reader's un-filtering (which depends on the
    6-byte pixel stride) is exercised, not only stored bytes.
    """
    array = np.asarray(array, dtype=np.uint16)
    h, w, c = array.shape
    colour_type = {3: 2, 4: 6}[c]
    stride = 2 * c
    rows, previous = [], np.zeros(w * stride, dtype=np.uint8)
    for y in range(h):
        current = np.frombuffer(array[y].astype(">u2").tobytes(), dtype=np.uint8)
        kind = y % 3
        if kind == 1:
            left = np.concatenate([np.zeros(stride, np.uint8), current[:-stride]])
            payload = current - left
        elif kind == 2:
            payload = current - previous
        else:
            payload = current
        rows.append(bytes([kind]) + payload.astype(np.uint8).tobytes())
        previous = current

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                     + chunk(b"IEND", b""))
    return path


def make_gta5(root: Path, n: int, mismatched: Sequence[int] = (), size: tuple[int, int] = SIZE) -> DatasetFixture:
    """`gta5/{images,labels}/00001.png`; indices in `mismatched` get a label 2 rows taller (excluded)."""
    fx = DatasetFixture("gta5", Path(root) / "gta5")
    for i in range(1, n + 1):
        key = f"{i:05d}"
        image = random_image(i, size)
        label_size = (size[0] + 2, size[1]) if i in mismatched else size
        raw = raw_label(CITYSCAPES_RAW, i, label_size)
        image_file = save_png(fx.root / "images" / f"{key}.png", image)
        label_file = save_png(fx.root / "labels" / f"{key}.png", raw, palette=True)
        if i in mismatched:
            fx.excluded.append(key)
        else:
            fx.add(key, image_file, label_file, image, expected_train_ids(raw, GTA5_IDS))
    return fx.sort()


def make_synthia(root: Path, n: int, size: tuple[int, int] = SIZE) -> DatasetFixture:
    """`synthia/{RGB,GT/LABELS}/0000000.png`; labels 16-bit RGB: class, instance, and a decoy channel."""
    fx = DatasetFixture("synthia", Path(root) / "synthia")
    for i in range(n):
        key = f"{i:07d}"
        image = random_image(i, size)
        classes = raw_label(SYNTHIA_RAW, i, size, np.uint16)
        instances = np.random.default_rng(50 + i).integers(0, 65536, size, dtype=np.uint16)
        decoy = ((classes.astype(np.int64) + 5) % 23).astype(np.uint16)
        image_file = save_png(fx.root / "RGB" / f"{key}.png", image)
        label_file = write_png16(fx.root / "GT" / "LABELS" / f"{key}.png", np.stack([classes, instances, decoy], -1))
        fx.add(key, image_file, label_file, image, expected_train_ids(classes, SYNTHIA_IDS))
    return fx.sort()


def make_cityscapes(root: Path, split: str, n: int, train_ids: bool = False,
                    size: tuple[int, int] = SIZE) -> DatasetFixture:
    """`cityscapes/{leftImg8bit,gtFine}/{split}/<city>/...`; labelIds, plus labelTrainIds if `train_ids`."""
    fx = DatasetFixture("cityscapes", Path(root) / "cityscapes", spec_fields={"split": split})
    for i in range(n):
        city = ("aachen", "bremen", "zurich")[i % 3]
        base = f"{city}_{i:06d}_000019"
        image = random_image(i, size)
        raw = raw_label(CITYSCAPES_RAW, i, size)
        expected = expected_train_ids(raw, CITYSCAPES_IDS)
        image_file = save_png(fx.root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", image)
        gt = fx.root / "gtFine" / split / city
        label_file = save_png(gt / f"{base}_gtFine_labelIds.png", raw)
        save_png(gt / f"{base}_gtFine_color.png", np.zeros((*size, 3), np.uint8))
        if train_ids:
            # Deliberately not the labelIds mapping: proves the train-id file is what gets used.
            expected = raw_label(TRAIN_IDS, 500 + i, size)
            label_file = save_png(gt / f"{base}_gtFine_labelTrainIds.png", expected)
        fx.add(base, image_file, label_file, image, expected)
    return fx.sort()


def make_bdd10k(root: Path, n: int, split: str = "val", size: tuple[int, int] = SIZE) -> DatasetFixture:
    """`bdd10k/images/10k/{split}/*.jpg` with `bdd10k/labels/sem_seg/masks/{split}/*.png` (train ids)."""
    fx = DatasetFixture("bdd10k", Path(root) / "bdd10k", spec_fields={"split": split})
    for i in range(n):
        key = f"{(i * 2654435761) % (1 << 32):08x}-{i:08x}"
        image_file = fx.root / "images" / "10k" / split / f"{key}.jpg"
        image = save_jpg(image_file, random_image(i, size))
        label = raw_label(TRAIN_IDS, i, size)
        label_file = save_png(fx.root / "labels" / "sem_seg" / "masks" / split / f"{key}.png", label)
        fx.add(key, image_file, label_file, image, label)
    return fx.sort()


def make_mapillary(root: Path, n: int, split: str = "val", size: tuple[int, int] = SIZE) -> DatasetFixture:
    """`mapillary_vistas/validation/{images/*.jpg, labels/*.png}` (v1.2 ids in palette PNGs)."""
    folder = {"val": "validation", "train": "training"}[split]
    fx = DatasetFixture("mapillary", Path(root) / "mapillary_vistas", spec_fields={"split": split})
    for i in range(n):
        key = "".join(np.random.default_rng(300 + i).choice(_B64URL, 22))
        image_file = fx.root / folder / "images" / f"{key}.jpg"
        image = save_jpg(image_file, random_image(i, size))
        raw = raw_label(MAPILLARY_RAW, i, size)
        label_file = save_png(fx.root / folder / "labels" / f"{key}.png", raw, palette=True)
        fx.add(key, image_file, label_file, image, expected_train_ids(raw, MAPILLARY_IDS))
    return fx.sort()


def make_acdc(root: Path, condition: str, n: int, split: str = "val", size: tuple[int, int] = SIZE) -> DatasetFixture:
    """`acdc/{rgb_anon,gt}/<condition>/{split}/<seq>/...` with `*_gt_labelTrainIds.png`."""
    fx = DatasetFixture("acdc", Path(root) / "acdc", spec_fields={"condition": condition, "split": split})
    for i in range(n):
        seq = ("GOPR0475", "GP010476")[i % 2]
        name = f"{seq}_frame_{i:06d}"
        image = random_image(i, size)
        label = raw_label(TRAIN_IDS, i, size)
        image_file = save_png(fx.root / "rgb_anon" / condition / split / seq / f"{name}_rgb_anon.png", image)
        gt = fx.root / "gt" / condition / split / seq
        label_file = save_png(gt / f"{name}_gt_labelTrainIds.png", label)
        save_png(gt / f"{name}_gt_labelIds.png", raw_label(CITYSCAPES_RAW, i, size))
        fx.add(name, image_file, label_file, image, label)
    # Reference images of the other split must not leak in.
    save_png(fx.root / "rgb_anon" / condition / f"{split}_ref" / "GOPR0475" / "GOPR0475_frame_000000_rgb_ref_anon.png",
             random_image(99, size))
    return fx.sort()
