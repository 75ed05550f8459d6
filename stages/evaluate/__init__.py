"""The evaluate stage: confusion-matrix mIoU per target domain, with a parquet/markdown/PNG report."""

from stages.evaluate.metrics import confusion_matrix, iou_per_class, mean_iou
from stages.evaluate.stage import evaluate, evaluate_settings, resize_short_side

__all__ = ["confusion_matrix", "evaluate", "evaluate_settings", "iou_per_class", "mean_iou", "resize_short_side"]
