"""A self-contained HTML report (images inlined), readable offline and attachable anywhere."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from artifacts import Folder, commit_folder
from stages.report import figures


@dataclass
class RoundResult:
    round: int
    miou: dict[str, float]
    pseudo_before: float | None = None
    pseudo_after: float | None = None
    links: dict[str, str] = field(default_factory=dict)
    average: dict[str, str] = field(default_factory=dict)
    """Class-averaging rule of each domain's mIoU ("union" or "gt-present"), as the evaluate stage recorded it."""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _miou_table(rounds: Sequence[RoundResult]) -> str:
    domains = sorted({d for r in rounds for d in r.miou})
    targets = [d for d in domains if not figures.is_in_domain(d)]
    rules = {d: r.average[d] for r in rounds for d in r.average}
    head = "".join(
        f"<th>{html.escape(d)}{' (in-domain)' if figures.is_in_domain(d) else ''}"
        f"{f'<br><small>mean over {html.escape(rules[d])} classes</small>' if d in rules else ''}</th>"
        for d in domains
    )
    head += "<th>mean of targets</th>" if targets else ""
    base = rounds[0] if rounds else None
    rows = []
    for r in rounds:
        cells = []
        for d in domains:
            v = r.miou.get(d)
            delta = "" if base is None or r is base or v is None or d not in base.miou else f" <small>({100 * (v - base.miou[d]):+.1f})</small>"
            cells.append(f"<td>{_pct(v)}{delta}</td>")
        if targets:
            mean = sum(r.miou.get(d, 0.0) for d in targets) / len(targets)
            base_mean = None if base is None else sum(base.miou.get(d, 0.0) for d in targets) / len(targets)
            delta = "" if r is base or base_mean is None else f" <small>({100 * (mean - base_mean):+.1f})</small>"
            cells.append(f"<td><b>{_pct(mean)}</b>{delta}</td>")
        name = "source only (warm-up)" if r.round == 0 else f"round {r.round}"
        rows.append(
            f"<tr><td>{name}</td>{''.join(cells)}<td>{_pct(r.pseudo_before)}</td><td>{_pct(r.pseudo_after)}</td></tr>"
        )
    return (
        f"<table><tr><th></th>{head}<th>pseudo mIoU teacher</th><th>pseudo mIoU refined</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(title: str, rounds: Sequence[RoundResult], samples: Sequence[dict[str, Any]], notes: Sequence[str]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font:14px system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}"
        "table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%;margin:8px 0}small{color:#666}</style>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Target-domain mIoU (%)</h2>",
        "<p>Round 0 trains on the labelled source only; each later round pseudo-labels the generated images "
        "with the EMA teacher, refines the labels, and trains on source + generated. Brackets: change from source only.</p>",
        _miou_table(rounds),
    ]
    if rounds:
        parts.append(_img(figures.miou_per_round(rounds), "mIoU per round"))
    if any(r.pseudo_before is not None for r in rounds):
        parts += ["<h2>Pseudo-label quality</h2>",
                  "<p>mIoU of the pseudo labels against the generated images' true labels (known only for the "
                  "built-in toycity generator; never used for training). Refined pixels left unlabelled are not counted.</p>",
                  _img(figures.pseudo_quality(rounds), "pseudo-label quality")]
    if samples:
        parts += ["<h2>Gallery</h2><p>Prompt, generated image, teacher label, refined label (and true label).</p>",
                  _img(figures.gallery(samples), "gallery")]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    links = [(f"round {r.round} {k}", v) for r in rounds for k, v in r.links.items()]
    if links:
        parts.append("<h2>Artifacts</h2><ul>" + "".join(
            f"<li>{html.escape(n)}: <code>{html.escape(u)}</code></li>" for n, u in links) + "</ul>")
    return "\n".join(parts)


def write_report(
    url: str,
    title: str,
    rounds: Sequence[RoundResult],
    samples: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    inputs: Sequence[str] = (),
) -> str:
    """Write `index.html` plus the figures as PNG files, committed as a folder artifact; returns the page URL."""
    folder = Folder.at(url)
    folder.remove()
    folder.makedirs()
    folder.write_atomic("index.html", render_html(title, rounds, samples, notes).encode())
    if rounds:
        folder.write_atomic("miou.png", figures.miou_per_round(rounds))
    if any(r.pseudo_before is not None for r in rounds):
        folder.write_atomic("pseudo_quality.png", figures.pseudo_quality(rounds))
    if samples:
        folder.write_atomic("gallery.png", figures.gallery(samples))
    commit_folder(url, stage="report", config_hash="-", inputs=list(inputs),
                  stats={"rounds": [r.__dict__ for r in rounds]})
    return folder.url_of("index.html")
