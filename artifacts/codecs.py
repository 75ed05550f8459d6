"""Member encoding by file extension, fixed so that the same sample always gives the same bytes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

# PNG compression level is pinned: byte-identical reruns are part of the artifact contract.
PNG_LEVEL = 6
JPEG_QUALITY = 95
IMAGE_MEMBERS = ("png", "jpg", "jpeg")
"""The members a sample's image may be stored as (also the extensions decoded as images), in preference order."""


def _ext(member: str) -> str:
    return member.rsplit(".", 1)[-1].lower()


def _encode_image(member: str, value: np.ndarray, fmt: str) -> bytes:
    array = np.asarray(value)
    if array.dtype != np.uint8:
        raise ValueError(f"member {member!r}: images must be uint8, got {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ValueError(f"member {member!r}: expected HxW or HxWx3, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(array))
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=PNG_LEVEL)
    else:
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def encode_member(member: str, value: Any) -> bytes:
    """Encode one sample member by its extension: png/jpg images, json, npy, txt, raw bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    ext = _ext(member)
    if ext == "png":
        return _encode_image(member, value, "png")
    if ext in ("jpg", "jpeg"):
        return _encode_image(member, value, "jpg")
    if ext == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if ext == "npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        return buf.getvalue()
    if ext in ("txt", "cls"):
        return str(value).encode("utf-8")
    raise ValueError(f"member {member!r}: no encoder for extension {ext!r} and value of type {type(value).__name__}")


def decode_member(member: str, data: bytes) -> Any:
    """Decode one member by its extension; unknown extensions stay bytes."""
    ext = _ext(member)
    if ext in IMAGE_MEMBERS:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            return np.asarray(image).copy()
    if ext == "json":
        return json.loads(data)
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if ext in ("txt", "cls"):
        return data.decode("utf-8")
    return data


def image_member_name(members: Iterable[str]) -> str | None:
    """Which of the image members a sample (or a manifest row's member list) holds, in preference order."""
    present = set(members)
    return next((m for m in IMAGE_MEMBERS if m in present), None)


def image_member(sample: dict[str, Any]) -> Any:
    """The sample's image, whichever of png/jpg it was stored as."""
    name = image_member_name(sample)
    if name is not None:
        return sample[name]
    raise KeyError(f"sample {sample.get('__key__')!r} has no image member (png/jpg); members: {sorted(sample)}")
