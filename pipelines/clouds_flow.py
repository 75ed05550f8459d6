"""The parent flow `clouds`: a full round in DAG order, the round loop, or any single stage."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from clouds.prefect_env import project_loggers_at_info
from pipelines.context import DEFAULT_CONFIG, RunContext
from pipelines.lock import RunLock
from pipelines.stage_flows import ROUND_STAGES, STAGE_FLOWS
from stages.report import observations, write_report
from stages.report.rounds import collect_rounds, gallery_samples, miou_rows
from stages.table import run_order

MODES = ("full-round", "loop", *STAGE_FLOWS)


def _run_rounds(common: dict[str, Any], last: int) -> list[dict[str, Any]]:
    """Everything round `last` needs, in the stage table's DAG order; finished, unchanged stages are reused."""
    steps: list[dict[str, Any]] = []
    for entry, k in run_order(last):
        result = STAGE_FLOWS[entry.name](**common, **({"round": k} if entry.per_round else {}))
        steps += list(result.values()) if entry.fans_out else [result]
    return steps


def publish(ctx: RunContext, last: int) -> str | None:
    """Results in the Prefect UI (table + markdown) and the self-contained HTML report."""
    rounds = collect_rounds(ctx.layout, last)
    if not rounds:
        return None
    rows = miou_rows(rounds)
    slug = "".join(c if c.isalnum() else "-" for c in ctx.layout.run.lower())
    create_table_artifact(key=f"{slug}-miou", table=rows, description=f"Target mIoU per round, run {ctx.layout.run}")
    lines = [f"# CLOUDS run `{ctx.layout.run}`", "", "| round | " + " | ".join(sorted(rounds[0].miou)) + " | pseudo teacher | pseudo refined |",
             "|---" * (len(rounds[0].miou) + 3) + "|"]
    for r in rounds:
        cells = [f"{100 * r.miou[d]:.1f}" if d in r.miou else "–" for d in sorted(rounds[0].miou)]
        pb = "–" if r.pseudo_before is None else f"{100 * r.pseudo_before:.1f}"
        pa = "–" if r.pseudo_after is None else f"{100 * r.pseudo_after:.1f}"
        lines.append(f"| {r.round} | " + " | ".join(cells) + f" | {pb} | {pa} |")
    lines += ["", "Artifacts:"] + [f"- round {r.round} {s}: `{u}`" for r in rounds for s, u in r.links.items()]
    create_markdown_artifact(key=f"{slug}-summary", markdown="\n".join(lines), description="CLOUDS round summary")
    page = write_report(
        ctx.layout.report, f"CLOUDS — run {ctx.layout.run}", rounds, gallery_samples(ctx.layout, last),
        notes=observations(rounds), inputs=[u for r in rounds for u in r.links.values()],
    )
    get_run_logger().info("report: %s", page)
    return page


@flow(name="clouds")
def clouds(
    mode: str = "full-round",
    config: str = DEFAULT_CONFIG,
    overrides: list[str] | None = None,
    root: str | None = None,
    run: str | None = None,
    round: int = 1,
    rounds: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run CLOUDS. mode: 'full-round' (round `round` and what it needs), 'loop' (`rounds` rounds,
    default from the config), or one stage name (ingest, prompts, synthesize, pseudo-label, refine,
    train, evaluate) for round `round`."""
    project_loggers_at_info()  # progress lines reach the run's logs in Prefect, also under a worker
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    ctx = RunContext.load(config, overrides, root, run, force)
    common = {"config": config, "overrides": overrides, "root": root, "run": run, "force": force}
    # One run per {root}/{run} at a time: a second one is refused, naming the holder (pipelines/lock.py).
    with RunLock(ctx.layout.base, note=f"clouds {mode}"):
        if mode in STAGE_FLOWS:
            kwargs = {**common, "round": round} if mode in ROUND_STAGES else common
            return {"mode": mode, "steps": [STAGE_FLOWS[mode](**kwargs)]}
        last = round if mode == "full-round" else (rounds or ctx.cfg.loop.rounds)
        steps = _run_rounds(common, last)
        return {"mode": mode, "rounds": last, "steps": steps, "report": publish(ctx, last)}
