"""Pictures people look at: a sample beside its label overlays, with the class legend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from clouds.labels import CLASS_NAMES, PALETTE, colorize  # noqa: E402


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    colors = colorize(label).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colors * alpha).clip(0, 255).astype(np.uint8)


def sample_figure(sample: dict[str, Any], image: np.ndarray, label_members: list[str], out: Path) -> Path:
    """Write a PNG: the image, then one overlay per label member, then a legend of the classes present."""
    panels = [("image", image)] + [(m, overlay(image, sample[m])) for m in label_members if m in sample]
    present = sorted({int(c) for m in label_members if m in sample for c in np.unique(sample[m]) if c < len(CLASS_NAMES)})
    h, w = image.shape[:2]
    ncol = 1 if len(present) <= 10 else 2
    width = 4.0 * len(panels) * w / max(h, w) + 1.3 * ncol
    fig, axes = plt.subplots(1, len(panels), figsize=(width, max(4.0 * h / max(h, w) + 0.8, 3.2)))
    axes = np.atleast_1d(axes)
    for ax, (title, pic) in zip(axes, panels, strict=True):
        ax.imshow(pic)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    handles = [Patch(color=PALETTE[c] / 255.0, label=CLASS_NAMES[c]) for c in present]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False, ncol=ncol)
    meta = sample.get("json") or {}
    fig.suptitle(f"{sample['__key__']}  {meta.get('domain', '')}  {meta.get('text', meta.get('prompt', ''))}"[:140], fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 1.3 * ncol / width if handles else 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
