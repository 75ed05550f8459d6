"""Gathering per-round results from committed artifacts' lineage, for the Prefect UI, the report, the model
card and `RUN:best`. Which folders a round has comes from the stage table (stages/table.py)."""

from __future__ import annotations

from typing import Any

from artifacts import image_member, is_committed, open_artifact, read_lineage
from clouds.layout import RunLayout
from stages.report.html import RoundResult
from stages.table import STAGES, round_stages


def _stats(url: str) -> dict[str, Any] | None:
    return read_lineage(url).get("stats", {}) if is_committed(url) else None


def round_result(layout: RunLayout, k: int) -> RoundResult | None:
    evaluation = _stats(STAGES["evaluate"].output(layout, k))
    if evaluation is None:
        return None
    refined = _stats(STAGES["refine"].output(layout, k)) if k > 0 else None
    pseudo = _stats(STAGES["pseudo-label"].output(layout, k)) if k > 0 else None
    before = (refined or {}).get("miou_teacher", (pseudo or {}).get("pseudo_miou"))
    folders = {s: STAGES[s].output(layout, k) for s in round_stages()}
    links = {s: url for s, url in folders.items() if is_committed(url)}
    return RoundResult(
        round=k,
        miou={name: float(v) for name, v in evaluation.get("miou", {}).items()},
        pseudo_before=before,
        pseudo_after=(refined or {}).get("miou_refined"),
        links=links,
        average={name: str(rule) for name, rule in evaluation.get("average", {}).items()},
    )


def collect_rounds(layout: RunLayout, last: int) -> list[RoundResult]:
    return [r for r in (round_result(layout, k) for k in range(last + 1)) if r is not None]


def gallery_samples(layout: RunLayout, k: int, count: int = 4) -> list[dict[str, Any]]:
    """The first samples of round k's refined labels with their prompt, for the report's gallery."""
    url = STAGES["refine"].output(layout, k)
    if k < 1 or not is_committed(url):
        return []
    out = []
    for sample in open_artifact(url).iter_samples():
        meta = sample.get("json") or {}
        out.append({
            "image": image_member(sample),
            **{m: sample[m] for m in ("seg.png", "teacher.seg.png", "true.seg.png") if m in sample},
            "caption": str(meta.get("prompt", meta.get("text", sample["__key__"]))),
        })
        if len(out) == count:
            break
    return out


def miou_rows(rounds: list[RoundResult]) -> list[dict[str, Any]]:
    """One table row per round and target domain, as the Prefect UI's table artifact shows it."""
    return [
        {"round": r.round, "domain": d, "miou": round(100 * v, 2), "classes_averaged": r.average.get(d),
         "pseudo_miou_teacher": None if r.pseudo_before is None else round(100 * r.pseudo_before, 2),
         "pseudo_miou_refined": None if r.pseudo_after is None else round(100 * r.pseudo_after, 2)}
        for r in rounds for d, v in sorted(r.miou.items())
    ]

