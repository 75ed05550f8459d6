"""Plots for the report, returned as PNG bytes so the page can embed them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from clouds.labels import colorize  # noqa: E402

if TYPE_CHECKING:
    from stages.report.html import RoundResult


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def is_in_domain(name: str) -> bool:
    """Validation sets of the source domain are named 'val-*': shown, but not averaged with the targets."""
    return name.startswith("val")


def miou_per_round(rounds: Sequence[RoundResult]) -> bytes:
    """One line per target domain across rounds, round 0 being the source-only warm-up."""
    domains = sorted({d for r in rounds for d in r.miou})
    targets = [d for d in domains if not is_in_domain(d)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    xs = [r.round for r in rounds]
    for d in domains:
        style = {"linestyle": "--", "color": "grey"} if is_in_domain(d) else {}
        ax.plot(xs, [100 * r.miou.get(d, np.nan) for r in rounds], marker="o", label=d, **style)
    if targets:
        mean = [100 * np.nanmean([r.miou.get(d, np.nan) for d in targets]) for r in rounds]
        ax.plot(xs, mean, marker="s", color="black", linewidth=2.2, label="mean of targets")
    ax.set_xticks(xs, ["source only" if x == 0 else f"round {x}" for x in xs])
    ax.set_ylabel("mIoU (%)")
    ax.set_title("Target-domain mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


def pseudo_quality(rounds: Sequence[RoundResult]) -> bytes:
    """Pseudo-label mIoU against the generated images' true labels, before and after refinement."""
    rows = [r for r in rounds if r.pseudo_before is not None]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [100 * r.pseudo_before for r in rows], 0.4, label="teacher")
    ax.bar(x + 0.2, [100 * (r.pseudo_after if r.pseudo_after is not None else np.nan) for r in rows], 0.4, label="refined")
    ax.set_xticks(x, [f"round {r.round}" for r in rows])
    ax.set_ylabel("pseudo-label mIoU (%)")
    ax.set_title("Pseudo-label quality on generated images")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def gallery(samples: Sequence[dict[str, Any]]) -> bytes:
    """Rows of generated image / teacher label / refined label (/ true label when known)."""
    cols = [("image", None), ("teacher", "teacher.seg.png"), ("refined", "seg.png"), ("true", "true.seg.png")]
    cols = [c for c in cols if c[1] is None or any(c[1] in s for s in samples)]
    h, w = samples[0]["image"].shape[:2]
    fig, axes = plt.subplots(len(samples), len(cols), figsize=(2.6 * len(cols) * w / h * 0.55, 1.55 * len(samples) + 0.4))
    axes = np.atleast_2d(axes)
    for i, s in enumerate(samples):
        for j, (title, member) in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(s["image"] if member is None else colorize(s[member]) if member in s else np.zeros((h, w, 3), np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(s.get("caption", "")[:38], fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return _png(fig)
