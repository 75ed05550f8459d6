"""The evaluate stage: confusion-matrix mIoU per target domain, with a parquet/markdown/PNG report.

The metrics are imported eagerly; the stage (which builds segmenters, so imports open_clip and transformers,
~3 s) only when asked for: the pseudo-label and refine stages score with the metrics alone, in every worker.
"""

from typing import Any

from stages.evaluate.metrics import confusion_matrix, iou_per_class, mean_iou

_STAGE_NAMES = ("evaluate", "evaluate_settings", "resize_short_side")
__all__ = ["confusion_matrix", "evaluate", "evaluate_settings", "iou_per_class", "mean_iou", "resize_short_side"]


def __getattr__(name: str) -> Any:
    if name in _STAGE_NAMES:
        from stages.evaluate import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
