"""Naming and loading the checkpoint to apply: a committed checkpoint folder, or `RUN:best` of a run.

`RUN:best` is the train checkpoint of the round whose committed evaluation has the highest mean target mIoU
(`RUN:best:DOMAIN` ranks by one target's mIoU instead), read from the evaluate artifacts' commit markers
(stages.report.rounds.collect_rounds), so it names the same round the report's table shows as best.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from artifacts import ArtifactError, Folder, read_lineage
from clouds.config import EvaluateConfig
from models.checkpoint import MODEL_JSON, CheckpointError, load_checkpoint
from stages.predict.errors import PredictInputError

BEST_RE = re.compile(r"^(?P<run>.+?):best(?::(?P<metric>[A-Za-z0-9_-]+))?$")
_ROUND_DIR = re.compile(r"^round-(\d{3})$")


@dataclass(frozen=True)
class BestRound:
    """Which round `RUN:best` picked, by which score, and its checkpoint URL."""

    round: int
    score: float
    metric: str
    checkpoint: str


def _run_layout(run: str, root: str):  # noqa: ANN202 - RunLayout (pipelines imports stay lazy for stage code)
    from clouds.layout import RunLayout

    if "/" in run or "://" in run:  # a run folder spelled out: root is its parent
        base = run.rstrip("/")
        parent, _, name = base.rpartition("/")
        return RunLayout(parent or ".", name)
    return RunLayout(root, run)


def best_round(run: str, root: str = "runs", metric: str | None = None) -> BestRound:
    """The round of `run` (a name under `root`, or a run folder) with the best committed evaluation."""
    from stages.report.rounds import collect_rounds

    try:
        layout = _run_layout(run, root)
    except ValueError as err:
        raise PredictInputError(f"{run}:best: {err}") from None
    base = Folder.at(layout.base)
    if not base.exists():
        raise PredictInputError(f"{run}:best: run folder {layout.base} does not exist (set --root to the run root)")
    rounds = [int(m.group(1)) for n in base.listdir() if (m := _ROUND_DIR.match(n))]
    results = collect_rounds(layout, max(rounds)) if rounds else []
    scored: list[tuple[float, int]] = []
    for r in results:
        if metric is None:
            values = [v for v in r.miou.values() if v is not None and not math.isnan(v)]
            score = sum(values) / len(values) if values else math.nan
        else:
            if metric not in r.miou:
                raise PredictInputError(f"{run}:best:{metric}: round {r.round} has no target {metric!r} "
                                        f"(targets: {', '.join(sorted(r.miou))})")
            score = r.miou[metric]
        if not math.isnan(score) and Folder.at(layout.round(r.round, "train")).exists(MODEL_JSON):
            scored.append((score, r.round))
    if not scored:
        raise PredictInputError(f"{run}:best: run {layout.base} has no round with a committed evaluation and "
                                "checkpoint; run `clouds run evaluate` first")
    score, k = max(scored, key=lambda s: (s[0], -s[1]))  # a tie goes to the earlier round
    return BestRound(k, score, metric or "mean target mIoU", layout.round(k, "train"))


def resolve_checkpoint(spec: str, root: str = "runs") -> tuple[str, BestRound | None]:
    """The checkpoint folder URL `spec` names (a folder/URL as is; `RUN:best[:DOMAIN]` looked up under `root`),
    and the round RUN:best picked (None for a plain folder)."""
    m = BEST_RE.match(spec)
    if m and not Folder.at(spec).exists():
        best = best_round(m.group("run"), root, m.group("metric"))
        return best.checkpoint, best
    return spec, None


def check_checkpoint(url: str) -> dict:
    """The lineage of a committed checkpoint folder; anything else is refused in one line."""
    try:
        lineage = read_lineage(url)
    except ArtifactError as err:
        raise PredictInputError(f"checkpoint {err}") from None
    if not Folder.at(url).exists(MODEL_JSON):
        raise PredictInputError(
            f"{url} is not a checkpoint folder: it is a committed {lineage.get('stage')!r} artifact without "
            f"{MODEL_JSON} (a checkpoint is a run's round-NNN/train folder)"
        )
    return lineage


def recorded_short_side(url: str) -> int | None:
    """The short side a checkpoint's own profile evaluates it at (None = native size), as its train stage
    recorded it; the reference's 1024 for checkpoints committed before clouds recorded it."""
    stats = check_checkpoint(url).get("stats")
    inference = stats.get("inference") if isinstance(stats, dict) else None
    if isinstance(inference, dict) and "short_side" in inference:
        side = inference["short_side"]
        if side is not None and (not isinstance(side, int) or side < 1):
            raise PredictInputError(f"checkpoint {url}: its lineage records short side {side!r}, not a positive "
                                    "integer or null; pass --short-side")
        return side
    return EvaluateConfig().short_side


def chosen_short_side(option: int | None, url: str) -> int | None:
    """The short side to infer at: `option` as given (0 = native size), else the checkpoint's own."""
    return recorded_short_side(url) if option is None else (option or None)


def _one_line(err: BaseException) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def load_predictor(url: str, device: torch.device, weights: str = "student") -> nn.Module:
    """The network of a committed checkpoint to apply, in eval mode; a checkpoint whose weights or model.json
    this code cannot rebuild (another architecture, an unknown tower) is refused in one line."""
    check_checkpoint(url)
    try:
        student, teacher, _, _ = load_checkpoint(url, device=device)
    except (CheckpointError, ValueError, KeyError, RuntimeError, FileNotFoundError) as err:
        raise PredictInputError(f"checkpoint {url} cannot be loaded by this version of clouds: {_one_line(err)}") from None
    if weights == "teacher":
        if teacher is None:
            raise PredictInputError(f"--weights teacher, but checkpoint {url} holds no EMA teacher (a warm-up?)")
        return teacher.eval()
    return student.eval()
