"""Reading dataset images and label maps with Pillow, failing with the file's name on bad content.

Label PNGs are read as stored values (palette indices for "P" images), never as colours: GTA5 and
Mapillary ship palette PNGs whose RGB rendering is unrelated to the class ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.ingest.errors import DatasetError

_INDEX_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I")
# Pillow decodes 16-bit colour PNGs to 8-bit RGB by keeping each sample's high byte. Decoding the
# same pixel stream once more with the little-endian raw mode keeps the low bytes instead, and the
# two together are the exact 16-bit values (what the reference gets from cv2.IMREAD_UNCHANGED).
_LOW_BYTE_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{path}: file does not exist")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from err


def _load(image: Image.Image, path: Path) -> np.ndarray:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as err:  # Pillow reports truncated/corrupt data as these
        raise DatasetError(f"{path}: corrupt or truncated image data ({err})") from err
    return np.asarray(image)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header only, so a whole dataset can be checked cheaply."""
    with _open(path) as image:
        return image.height, image.width


def read_rgb(path: Path) -> np.ndarray:
    """An HxWx3 uint8 RGB image; palette, grey or alpha images are converted to RGB."""
    with _open(path) as image:
        array = _load(image, path)
        if image.mode != "RGB":
            try:
                array = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as err:
                raise DatasetError(f"{path}: cannot convert mode {image.mode!r} to RGB ({err})") from err
    if array.dtype != np.uint8 or array.ndim != 3:
        raise DatasetError(f"{path}: expected an 8-bit colour image, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def read_index_label(path: Path) -> np.ndarray:
    """An HxW array of the stored label values (palette indices for "P" PNGs)."""
    with _open(path) as image:
        if image.mode not in _INDEX_MODES:
            raise DatasetError(
                f"{path}: label image has mode {image.mode!r}; expected a single-channel id map "
                f"({', '.join(_INDEX_MODES)}), not a colour rendering"
            )
        return np.array(_load(image, path))


def read_synthia_label(path: Path) -> np.ndarray:
    """The class-id channel of a SYNTHIA GT/LABELS PNG as HxW uint16.

    The files are 16-bit colour PNGs with the class id in the first (red) channel and the instance id
    in the second; the reference's cv2 read is BGR, so its "last channel" is this same red channel.
    """
    with _open(path) as image:
        if image.mode in ("RGB", "RGBA") and len(image.tile) == 1:
            tile = image.tile[0]
            rawmode = tile.args if isinstance(tile.args, str) else None
            if rawmode in _LOW_BYTE_RAWMODES:
                high = _load(image, path)[..., 0].astype(np.uint16)
                with _open(path) as again:
                    again.tile = [again.tile[0]._replace(args=_LOW_BYTE_RAWMODES[rawmode])]
                    low = _load(again, path)[..., 0].astype(np.uint16)
                return (high << 8) | low
        if image.mode in ("RGB", "RGBA"):  # an 8-bit copy of the labels: the ids are the red values
            return _load(image, path)[..., 0].astype(np.uint16)
        raise DatasetError(
            f"{path}: SYNTHIA label has mode {image.mode!r}; expected the dataset's 16-bit colour PNG "
            "(class id in the first channel)"
        )
