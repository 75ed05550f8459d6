"""Human-readable outputs of an evaluation: a markdown table and a per-class IoU bar chart."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clouds.labels import CLASS_NAMES


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


AVERAGE_NOTES = {
    "union": "classes with a non-zero union (Cityscapes' official rule)",
    "gt-present": "classes with ground-truth pixels (the reference's BDD/Mapillary/ACDC rule)",
}


def markdown_table(per_class: dict[str, np.ndarray], miou: dict[str, float], images: dict[str, int],
                   title: str, averages: dict[str, str] | None = None) -> str:
    """Classes as rows, domains as columns, IoU in percent; '–' marks classes the domain's rule leaves out."""
    averages = averages or dict.fromkeys(per_class, "union")
    domains = list(per_class)
    lines = [f"# {title}", "", "| class | " + " | ".join(domains) + " |",
             "|---|" + "---:|" * len(domains)]
    for c, name in enumerate(CLASS_NAMES):
        lines.append(f"| {name} | " + " | ".join(_pct(per_class[d][c]) for d in domains) + " |")
    lines.append("| **mIoU** | " + " | ".join(f"**{_pct(miou[d])}**" for d in domains) + " |")
    lines.append("| images | " + " | ".join(str(images[d]) for d in domains) + " |")
    lines.append("| classes averaged | " + " | ".join(averages[d] for d in domains) + " |")
    if len(domains) > 1:
        finite = [v for v in miou.values() if not math.isnan(v)]
        mean = sum(finite) / len(finite) if finite else float("nan")
        lines += ["", f"Mean mIoU over {len(domains)} domains: **{_pct(mean)}**"]
    lines += ["", "IoU in percent. Each domain's mIoU averages "
              + "; ".join(f"`{rule}`: {AVERAGE_NOTES[rule]}" for rule in sorted(set(averages.values()))) + "."]
    return "\n".join(lines) + "\n"


def bar_chart(per_class: dict[str, np.ndarray], miou: dict[str, float], title: str) -> bytes:
    """PNG bytes: grouped bars per class (one colour per domain) plus the mIoU group at the end."""
    domains = list(per_class)
    names = [*CLASS_NAMES, "mIoU"]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(domains))
    fig = Figure(figsize=(min(20.0, 8.0 + 1.5 * len(domains)), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, d in enumerate(domains):
        values = np.nan_to_num(np.append(per_class[d], miou[d]), nan=0.0) * 100
        ax.bar(x + (i - (len(domains) - 1) / 2) * width, values, width, label=d)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if domains:
        ax.legend(fontsize=8, ncols=min(4, len(domains)))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
