"""Confusion-matrix mIoU over the 19 train-id classes (SPEC "Evaluation").

Two published rules average the per-class IoU, and they differ when a class is predicted but absent from
the target's labels (IoU 0 under one, not counted under the other):
* ``union``: classes with a non-zero union (Cityscapes' official evaluator, cityscapesscripts);
* ``gt-present``: classes with ground-truth pixels (the reference's evaluator for BDD, Mapillary, ACDC).
"""

from __future__ import annotations

import numpy as np
import torch

from clouds.labels import IGNORE, NUM_CLASSES

AVERAGE_RULES = ("union", "gt-present")


def confusion_matrix(
    pred: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray, num_classes: int = NUM_CLASSES,
    ignore: int = IGNORE, *, skip_ignored_predictions: bool = False,
) -> torch.Tensor | np.ndarray:
    """[num_classes, num_classes] int64 counts, rows = ground truth, columns = prediction (NumPy arrays in:
    a NumPy array out).

    Pixels labelled `ignore` are skipped; predictions outside 0..num_classes-1 are refused rather
    than silently folded into another cell. `skip_ignored_predictions` also skips pixels the prediction
    leaves at `ignore`: pseudo and refined labels trade coverage for precision and the student never
    trains on those pixels, so they are not errors (their coverage is reported on its own).
    """
    as_numpy = isinstance(pred, np.ndarray)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
    if as_numpy:
        pred, label = torch.from_numpy(np.ascontiguousarray(pred)), torch.from_numpy(np.ascontiguousarray(label))
    label = label.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = label != ignore
    if skip_ignored_predictions:
        keep &= pred != ignore
    label, pred = label[keep], pred[keep]
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_classes):
        raise ValueError(f"label values must be 0..{num_classes - 1} or {ignore}, found {int(label.min())}..{int(label.max())}")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError(f"predictions must be 0..{num_classes - 1}, found {int(pred.min())}..{int(pred.max())}")
    counts = torch.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes)
    return counts.numpy() if as_numpy else counts


def iou_per_class(confusion: torch.Tensor | np.ndarray) -> np.ndarray:
    """IoU of each class; NaN where the class is neither in the labels nor predicted (zero union)."""
    conf = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def scored_classes(confusion: torch.Tensor | np.ndarray, average: str = "union") -> np.ndarray:
    """Boolean mask of the classes that `average` counts in the mean (see the module docstring)."""
    conf = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    if average == "union":
        return np.isfinite(iou_per_class(conf))
    if average == "gt-present":
        return conf.sum(1) > 0  # rows are ground truth
    raise ValueError(f"average must be one of {AVERAGE_RULES}, got {average!r}")


def mean_iou(confusion: torch.Tensor | np.ndarray, average: str = "union") -> float:
    """Mean IoU over the classes `average` counts (NaN if there is none)."""
    keep = scored_classes(confusion, average)
    return float(iou_per_class(confusion)[keep].mean()) if keep.any() else float("nan")


def pixel_accuracy(confusion: torch.Tensor | np.ndarray) -> float:
    conf = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")
