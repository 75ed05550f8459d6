"""What `clouds predict` reads: an image file, a folder, a glob, or a committed artifact, as units of work.

Inputs are resolved once, up front and in sorted order, so the same INPUTS always give the same units
(one output shard each) and a rerun can keep the shards an interrupted run completed. File headers are read
here (cheap) so a non-image is refused before any model is loaded; pixel data is decoded by the shard that
needs it, and a file whose data is corrupt fails there, by name.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artifacts import IMAGE_MEMBERS, ArtifactError, image_member, is_committed, open_artifact
from stages.ingest.errors import DatasetError
from stages.ingest.readers import image_size, read_rgb
from stages.predict.errors import PredictInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Files a folder or glob contributes; other files in a folder are ignored (a README, a label folder's json)."""
_GLOB_CHARS = re.compile(r"[*?\[]")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")

Loaded = tuple[str, str, np.ndarray]
"""(sample key, where it came from, HxWx3 uint8 RGB image)."""


@dataclass
class Unit:
    """Images that become one output shard; `load` decodes them in order."""

    keys: list[str]
    load: Callable[[], Iterator[Loaded]]


@dataclass
class InputSet:
    """Every image to predict, split into units; `identity` pins what was read (for resume and lineage)."""

    description: str
    units: list[Unit]
    artifacts: list[str] = field(default_factory=list)
    identity: list[list[object]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(u.keys) for u in self.units)


def _key_of(relative: str, taken: set[str]) -> str:
    """A sample key from a file's path relative to the input folder ('a/b c.png' -> 'a_b_c'), unique."""
    stem = relative.rsplit(".", 1)[0] if "." in relative.rsplit("/", 1)[-1] else relative
    base = _KEY_BAD.sub("_", stem).strip("_") or "image"
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    taken.add(key)
    return key


def _file_units(files: list[tuple[Path, str]], shard_size: int) -> tuple[list[Unit], list[list[object]]]:
    taken: set[str] = set()
    entries: list[tuple[str, Path]] = []
    identity: list[list[object]] = []
    for path, relative in files:
        try:
            height, width = image_size(path)  # header only: a non-image is refused before the model loads
        except DatasetError as err:
            raise PredictInputError(str(err)) from None
        key = _key_of(relative, taken)
        stat = path.stat()
        entries.append((key, path))
        identity.append([key, str(path.resolve()), stat.st_size, stat.st_mtime_ns, height, width])

    def loader(chunk: list[tuple[str, Path]]) -> Callable[[], Iterator[Loaded]]:
        def load() -> Iterator[Loaded]:
            for key, path in chunk:
                try:
                    yield key, str(path), read_rgb(path)
                except DatasetError as err:
                    raise PredictInputError(str(err)) from None
        return load

    chunks = [entries[i : i + shard_size] for i in range(0, len(entries), shard_size)]
    return [Unit([k for k, _ in c], loader(c)) for c in chunks], identity


def _artifact_units(url: str) -> tuple[list[Unit], list[list[object]]]:
    """One unit per shard of the artifact, so each shard is read once."""
    art = open_artifact(url)
    if art.num_samples == 0:
        raise PredictInputError(f"{url} holds no samples to predict")
    units = []
    keys_by_shard: dict[str, list[str]] = {}
    for key, shard in zip(art.manifest.column("key").to_pylist(), art.manifest.column("shard").to_pylist(), strict=True):
        keys_by_shard.setdefault(shard, []).append(key)

    def loader(shard: str) -> Callable[[], Iterator[Loaded]]:
        def load() -> Iterator[Loaded]:
            for sample in art.iter_samples([shard], members=set(IMAGE_MEMBERS)):
                try:
                    image = np.asarray(image_member(sample))
                except KeyError as err:
                    raise PredictInputError(f"{url}, sample {sample['__key__']!r}: {err.args[0]}") from None
                if image.ndim == 2:
                    image = np.repeat(image[:, :, None], 3, axis=2)
                yield sample["__key__"], f"{url}#{sample['__key__']}", np.ascontiguousarray(image)
        return load

    for shard in art.shards:
        units.append(Unit(keys_by_shard.get(shard, []), loader(shard)))
    return units, [[url, art.lineage.get("content_hash")]]


def _listed(files: list[Path], base: Path | None) -> list[tuple[Path, str]]:
    return [(p, p.relative_to(base).as_posix() if base else p.name) for p in files]


def resolve_inputs(spec: str, shard_size: int = 64) -> InputSet:
    """INPUTS as the user typed it: a committed artifact URL, an image file, a folder (recursive) or a glob."""
    if shard_size < 1:
        raise PredictInputError("shard size must be positive")
    if "://" in spec or (Path(spec).is_dir() and (is_committed(spec) or any(Path(spec).glob("shard-*.tar")))):
        try:
            units, identity = _artifact_units(spec)
        except ArtifactError as err:
            raise PredictInputError(str(err)) from None
        return InputSet(f"artifact {spec}", units, [spec], identity)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PredictInputError(f"folder {spec} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        listed, what = _listed(files, path), f"folder {spec}"
    elif path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise PredictInputError(f"{spec} is not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        listed, what = _listed([path], None), f"image {spec}"
    elif _GLOB_CHARS.search(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise PredictInputError(f"glob {spec!r} matches no image files ({len(files)} other file(s))")
        # Keys from the path below the glob's fixed prefix, so 'data/*/x.png' keeps the folder names apart.
        head = _GLOB_CHARS.split(spec, 1)[0]
        prefix = Path(head.rsplit("/", 1)[0] or "/") if "/" in head else Path(".")
        listed = [(p, p.resolve().relative_to(prefix.resolve()).as_posix()) for p in images]
        what = f"glob {spec!r}"
    else:
        raise PredictInputError(f"{spec} does not exist (INPUTS is an image file, a folder, a glob or an artifact URL)")
    units, identity = _file_units(listed, shard_size)
    return InputSet(what, units, [], identity)
