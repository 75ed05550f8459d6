"""How good pseudo labels are against true labels: confusion-matrix mIoU over the 19 classes.

Used to tell whether refinement helped (teacher vs refined) when the generated data carries true labels,
e.g. in tests and demos built from labelled images. The counting is the evaluate stage's
(`stages.evaluate.metrics.confusion_matrix` with `skip_ignored_predictions`: over the pixels the label
claims).
"""

from __future__ import annotations

import numpy as np

from clouds.labels import IGNORE
from stages.evaluate.metrics import iou_per_class, mean_iou

__all__ = ["coverage", "iou_per_class", "mean_iou"]


def coverage(label: np.ndarray) -> float:
    """Share of pixels that carry a class (not ignore)."""
    return float((label != IGNORE).mean()) if label.size else 0.0
