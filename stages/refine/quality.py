"""How good pseudo labels are against true labels: confusion-matrix mIoU over the 19 classes.

Used to tell whether refinement helped (teacher vs refined) when the generated data carries true labels,
e.g. in tests and demos built from labelled images.
"""

from __future__ import annotations

import numpy as np

from clouds.labels import IGNORE, NUM_CLASSES
from stages.evaluate.metrics import iou_per_class, mean_iou

__all__ = ["confusion_matrix", "coverage", "iou_per_class", "mean_iou"]


def confusion_matrix(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """[true, pred] pixel counts; pixels whose true or predicted label is ignore are left out.

    A refined label's ignore pixels are left out too: refinement trades coverage for precision, and the
    student never trains on them, so they must not count as errors.
    """
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and true label {true.shape} differ in size")
    valid = (true != IGNORE) & (pred != IGNORE) & (true < NUM_CLASSES) & (pred < NUM_CLASSES)
    index = true[valid].astype(np.int64) * NUM_CLASSES + pred[valid]
    return np.bincount(index, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def coverage(label: np.ndarray) -> float:
    """Share of pixels that carry a class (not ignore)."""
    return float((label != IGNORE).mean()) if label.size else 0.0
