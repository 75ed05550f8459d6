"""Raw dataset label ids -> the 19 Cityscapes train ids, one 256-entry lookup table per dataset.

The tables are the SPEC.md maps, written once here so ingest, tests and any later converter agree
on them. Every id absent from a map becomes 255 (ignore), which is why the tables start filled with 255.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from clouds.labels import IGNORE, NUM_CLASSES

# Cityscapes label ids (GTA5 uses the same ids): the official labelIds -> trainIds of cityscapesScripts.
CITYSCAPES_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
GTA5_IDS: dict[int, int] = dict(CITYSCAPES_IDS)

# SYNTHIA-RAND-CITYSCAPES class ids (class channel of GT/LABELS), from the dataset's README.
SYNTHIA_IDS: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13,
    18: 14, 19: 15, 20: 16, 12: 17, 11: 18,
}

# Mapillary Vistas v1.2 label ids; several Vistas classes fold into one Cityscapes class.
_MAPILLARY_GROUPS: dict[tuple[int, ...], int] = {
    (13, 24, 41): 0, (2, 15): 1, (17,): 2, (6,): 3, (3,): 4, (45, 47): 5, (48,): 6, (50,): 7,
    (30,): 8, (29,): 9, (27,): 10, (19,): 11, (20, 21, 22): 12, (55,): 13, (61,): 14, (54,): 15,
    (58,): 16, (57,): 17, (52,): 18,
}
MAPILLARY_IDS: dict[int, int] = {raw: train for group, train in _MAPILLARY_GROUPS.items() for raw in group}


def make_lut(mapping: Mapping[int, int]) -> np.ndarray:
    """A read-only 256-entry uint8 table: raw id -> train id, 255 for every unmapped id."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for raw, train in mapping.items():
        if not 0 <= raw < 256:
            raise ValueError(f"label map: raw id {raw} does not fit a 256-entry table")
        if not (0 <= train < NUM_CLASSES):
            raise ValueError(f"label map: raw id {raw} maps to {train}, not a train id 0..{NUM_CLASSES - 1}")
        lut[raw] = train
    lut.setflags(write=False)
    return lut


GTA5_LUT = make_lut(GTA5_IDS)
CITYSCAPES_LUT = make_lut(CITYSCAPES_IDS)
SYNTHIA_LUT = make_lut(SYNTHIA_IDS)
MAPILLARY_LUT = make_lut(MAPILLARY_IDS)


def apply_lut(raw: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map a raw id label through a table; ids outside 0..255 (16-bit sources) become ignore too."""
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"expected an HxW label of ids, got shape {raw.shape}")
    if lut.shape != (256,) or lut[IGNORE] != IGNORE:
        raise ValueError("a label table must have 256 entries and keep 255 as ignore")
    if raw.dtype == np.uint8:
        return lut[raw]
    # Out-of-range ids are routed to entry 255, which every table keeps as ignore.
    index = np.where((raw >= 0) & (raw < 256), raw, IGNORE).astype(np.intp)
    return lut[index]


def unmapped_ids(mapping: Mapping[int, int], candidates: Iterable[int] = range(256)) -> list[int]:
    """Raw ids a map sends to ignore: what fixtures plant to check that they do become 255."""
    return [i for i in candidates if i not in mapping]
