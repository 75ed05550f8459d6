"""Shard files: names, one tar being written, and safe iteration over one tar's samples."""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import webdataset as wds
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_iterator

from artifacts.codecs import IMAGE_MEMBERS, encode_member
from artifacts.errors import ArtifactError
from artifacts.fence import check_fences
from artifacts.lineage import sha256_bytes
from artifacts.storage import Folder

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHARD_RE = re.compile(r"^shard-(\d{6})\.tar$")
KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
MEMBER_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def part_name(index: int) -> str:
    return f"_parts/shard-{index:06d}.json"


def encode_sample(sample: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
    """Check a sample's key and members and encode every member to bytes."""
    key = sample.get("__key__")
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ArtifactError(f"sample key {key!r} is invalid: keys are non-empty [A-Za-z0-9_-] (no dots or slashes)")
    encoded: dict[str, bytes] = {}
    for member, value in sample.items():
        if member.startswith("__"):
            continue
        if not MEMBER_RE.match(member):
            raise ArtifactError(f"sample {key!r}: member name {member!r} is invalid")
        try:
            encoded[member] = encode_member(member, value)
        except (ValueError, TypeError) as err:
            raise ArtifactError(f"sample {key!r}: cannot encode member {member!r}: {err}") from err
    if not encoded:
        raise ArtifactError(f"sample {key!r} has no members")
    return key, encoded


def member_hashes(encoded: dict[str, bytes]) -> dict[str, str]:
    return {m: sha256_bytes(b) for m, b in sorted(encoded.items())}


def describe(key: str, shard: str, encoded: dict[str, bytes], sample: dict[str, Any]) -> dict[str, Any]:
    """The manifest row of one sample (member hashes are filled in by the caller)."""
    row: dict[str, Any] = {
        "key": key,
        "shard": shard,
        "members": sorted(encoded),
        "member_bytes": {m: len(b) for m, b in sorted(encoded.items())},
        "bytes": sum(len(b) for b in encoded.values()),
    }
    row["height"], row["width"] = _image_size(sample, encoded)
    meta = sample.get("json") if isinstance(sample.get("json"), dict) else {}
    row["domain"] = str(meta["domain"]) if "domain" in meta else None
    row["meta"] = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) and k != "domain"}
    return row


def _image_size(sample: dict[str, Any], encoded: dict[str, bytes]) -> tuple[int | None, int | None]:
    """Height and width from the array, or from the image header when the member was passed as bytes."""
    for m in IMAGE_MEMBERS:
        if m not in sample:
            continue
        shape = getattr(sample[m], "shape", None)
        if shape is not None:
            return int(shape[0]), int(shape[1])
        data = encoded[m]
        if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":  # PNG keeps its size at a fixed offset
            width, height = struct.unpack(">II", data[16:24])
            return height, width
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.height, image.width
        except OSError as err:
            raise ArtifactError(f"sample {sample.get('__key__')!r}: member {m!r} is not a readable image: {err}") from err
    return None, None


class ShardSink:
    """One shard being written under a temporary name; `finish` moves it into place."""

    def __init__(self, folder: Folder, index: int):
        check_fences(folder, f"shard {shard_name(index)} of {folder.url}")  # a run that lost its lock stops here
        self.folder, self.index = folder, index
        # hashlib releases the GIL on large buffers: hashing overlaps with tar writing on a second core.
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._hashes: list[Future[dict[str, str]]] = []
        self.name = shard_name(index)
        self.tmp = folder.join(f".{self.name}.tmp")
        self.rows: list[dict[str, Any]] = []
        self.bytes = 0
        try:
            self._file = folder.fs.open(self.tmp, "wb")
        except OSError as err:
            raise ArtifactError(f"cannot create {folder.url_of(self.name)}: {err}") from err
        # mtime/user/group pinned: the same samples always give byte-identical shards. An int mtime keeps
        # tarfile from adding a pax header to every member (a float mtime forces one).
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=0, user="clouds", group="clouds", mode=0o444)

    def add(self, key: str, encoded: dict[str, bytes], sample: dict[str, Any]) -> None:
        try:
            self._tar.write({"__key__": key, **encoded})
        except OSError as err:
            self.abort()
            raise ArtifactError(f"cannot write {self.folder.url_of(self.name)} (sample {key!r}): {err}") from err
        self.rows.append(describe(key, self.name, encoded, sample))
        self._hashes.append(self._hasher.submit(member_hashes, encoded))
        self.bytes += sum(len(b) for b in encoded.values())

    def finish(self, stats: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        for row, hashes in zip(self.rows, self._hashes, strict=True):
            row["member_sha256"] = hashes.result()
        self._hasher.shutdown()
        try:
            self._tar.close()
            self.folder.sync(self._file)
            self._file.close()
            # The shard may have taken minutes: the right to write is checked again just before it appears.
            check_fences(self.folder, f"shard {self.name} of {self.folder.url}")
            self.folder.move_into_place(self.tmp, self.folder.join(self.name))
        except OSError as err:
            self.abort()
            raise ArtifactError(f"cannot finish {self.folder.url_of(self.name)}: {err}") from err
        except BaseException:  # refused by a fence, or interrupted: the temporary file goes too
            self.abort()
            raise
        # The part file is written after the tar is in place: a shard counts as complete only with it.
        self.folder.makedirs("_parts")
        part = {"rows": self.rows, "stats": stats or {}}
        self.folder.write_atomic(part_name(self.index), json.dumps(part, sort_keys=True, default=str).encode())
        return self.rows

    def abort(self) -> None:
        self._hasher.shutdown(cancel_futures=True)
        for closer in (self._tar.close, self._file.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort cleanup of a shard that is being thrown away
                pass
        self.folder.remove(f".{self.name}.tmp")


def _checked(files: Iterator[dict[str, Any]], where: str) -> Iterator[dict[str, Any]]:
    for item in files:
        name = item["fname"]
        if name.startswith("/") or ".." in name.split("/") or "/" in name:
            raise ArtifactError(f"{where}: tar member {name!r} escapes the artifact folder; refusing to read it")
        item["__url__"] = where
        yield item


def iter_shard_raw(folder: Folder, shard: str) -> Iterator[dict[str, Any]]:
    """Samples of one shard as {'__key__', member: bytes}, with unsafe or corrupt tars reported by name."""
    where = folder.url_of(shard)
    try:
        stream = folder.fs.open(folder.join(shard), "rb")
    except FileNotFoundError:
        raise ArtifactError(f"shard {where} is missing") from None
    with stream:
        try:
            for sample in group_by_keys(_checked(tar_file_iterator(stream), where)):
                sample.pop("__url__", None)
                sample.pop("__local_path__", None)
                yield sample
        except ArtifactError:
            raise
        except Exception as err:  # tarfile/webdataset raise a zoo of types for damaged archives
            raise ArtifactError(f"shard {where} is corrupt or truncated: {err}") from err
