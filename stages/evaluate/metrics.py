"""Confusion-matrix mIoU over the 19 train-id classes (SPEC "Evaluation")."""

from __future__ import annotations

import numpy as np
import torch

from clouds.labels import IGNORE, NUM_CLASSES


def confusion_matrix(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int = NUM_CLASSES, ignore: int = IGNORE
) -> torch.Tensor:
    """[num_classes, num_classes] int64 counts, rows = ground truth, columns = prediction.

    Pixels labelled `ignore` are skipped; predictions outside 0..num_classes-1 are refused rather
    than silently folded into another cell.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
    label = label.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = label != ignore
    label, pred = label[keep], pred[keep]
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_classes):
        raise ValueError(f"label values must be 0..{num_classes - 1} or {ignore}, found {int(label.min())}..{int(label.max())}")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError(f"predictions must be 0..{num_classes - 1}, found {int(pred.min())}..{int(pred.max())}")
    counts = torch.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor | np.ndarray) -> np.ndarray:
    """IoU of each class; NaN where the class is neither in the labels nor predicted (zero union)."""
    conf = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: torch.Tensor | np.ndarray) -> float:
    """Mean IoU over classes with a non-zero union (NaN if there is none)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion: torch.Tensor | np.ndarray) -> float:
    conf = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")
