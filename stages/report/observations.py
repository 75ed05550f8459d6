"""Plain sentences about what a run's numbers say, so a flat result is stated in the report, not hidden."""

from __future__ import annotations

from stages.report.figures import is_in_domain
from stages.report.html import RoundResult


def observations(rounds: list[RoundResult]) -> list[str]:
    """One sentence on the target mIoU change, one on the last round's pseudo-label quality."""
    notes: list[str] = []
    first, last = rounds[0], rounds[-1]
    targets = [d for d in first.miou if not is_in_domain(d)]
    if targets and last is not first:
        before = sum(first.miou[d] for d in targets) / len(targets)
        after = sum(last.miou.get(d, 0.0) for d in targets) / len(targets)
        verdict = "improved" if after - before >= 0.01 else "did not clearly improve"
        notes.append(
            f"Mean target mIoU {verdict}: {100 * before:.1f} (source only) -> {100 * after:.1f} after round "
            f"{last.round}. Later rounds also train longer, so compare with a source-only run of the same length "
            "before crediting the pseudo labels, and over several seeds: benchmarks/bench_effect.py runs both "
            "(mean and spread over seeds)."
        )
    pseudo = [r for r in rounds if r.pseudo_before is not None]
    if pseudo:
        r = pseudo[-1]
        after = "n/a" if r.pseudo_after is None else f"{100 * r.pseudo_after:.1f}"
        notes.append(
            f"Round {r.round}: the teacher's pseudo labels score {100 * r.pseudo_before:.1f} mIoU against the "
            f"generated images' true labels, {after} after refinement. A student can only learn from the target-like "
            "images what its teacher gets right on them."
        )
    return notes
