"""The 19 Cityscapes train-id classes every dataset in CLOUDS is mapped onto."""

from __future__ import annotations

import numpy as np

from clouds.errors import InputError

IGNORE = 255
NUM_CLASSES = 19

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

# The official Cityscapes colours, so overlays look like every other paper's figures.
PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)
IGNORE_COLOR = np.array((0, 0, 0), dtype=np.uint8)


def colorize(label: np.ndarray) -> np.ndarray:
    """Map an HxW train-id label to an HxWx3 Cityscapes-palette image (ignore is black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    lut[IGNORE] = IGNORE_COLOR
    return lut[label]


def check_train_ids(label: np.ndarray, where: str) -> None:
    """Refuse labels holding values that are neither a train id nor the ignore value."""
    bad = np.unique(label[(label >= NUM_CLASSES) & (label != IGNORE)])
    if bad.size:
        raise InputError(
            f"{where}: label values {bad.tolist()[:10]} are not train ids (0..{NUM_CLASSES - 1}) or {IGNORE}"
        )
