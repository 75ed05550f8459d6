"""One Prefect flow per stage, all made by one function from the stage table (stages/table.py).

Flows only wire stage logic (stages/) to artifact URLs: each asks its table entry what it expects to find
committed, reuses what is up to date (artifacts.identity) and builds the rest: shard-parallel stages as
shard tasks where `executor` says, the others in the flow's process (training on Ray Train when
`executor.train_workers` > 0).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NONE

from pipelines.context import DEFAULT_CONFIG, RunContext
from pipelines.jobs import JobRecipe
from pipelines.tasks import reuse_or_run, run_sharded
from stages.expected import Expected
from stages.table import STAGES, BuildRequest, StageEntry


def _trainer(ctx: RunContext, k: int) -> Callable[[Any, Any], Any] | None:
    """Ray Train for a training stage when the config asks for workers; None: train in this process."""
    if ctx.cfg.executor.train_workers <= 0:
        return None
    from pipelines.ray_train import train_on_ray

    def on_ray(cfg: Any, plan: Any) -> Any:
        return train_on_ray(cfg, plan, cfg.executor, name=f"{ctx.layout.run}-round-{k:03d}-train")

    return on_ray


def build_artifact(entry: StageEntry, ctx: RunContext, k: int, e: Expected, provenance: dict[str, Any]) -> dict[str, Any]:
    """Reuse `e` when it is up to date, else build it: the stage's shards, or its build in this process."""

    def run(overwrite: bool) -> Any:
        if entry.job is not None:
            recipe = JobRecipe.of(entry.name, ctx, k)
            return run_sharded(recipe.build(overwrite=overwrite), recipe, ctx.cfg.executor)
        assert entry.build is not None, f"stage {entry.name!r} has neither a job nor a build"
        trainer = _trainer(ctx, k) if entry.trains else None
        return entry.build(BuildRequest(ctx.cfg, ctx.layout, k, e, overwrite, provenance, trainer))

    return reuse_or_run(e.name, e.url, e.identity, ctx.force, run)


@task(name="build-artifact", cache_policy=NONE, task_run_name="{e.name}")
def build_artifact_task(entry: StageEntry, ctx: RunContext, k: int, e: Expected,
                        provenance: dict[str, Any]) -> dict[str, Any]:
    return build_artifact(entry, ctx, k, e, provenance)


def run_stage(entry: StageEntry, config: str, overrides: list[str] | None, root: str | None, run: str | None,
              k: int, force: bool) -> Any:
    """The body of every stage flow: one result per artifact (a dict by item for a fanning-out stage)."""
    ctx = RunContext.load(config, overrides, root, run, force)
    provenance = {"config": config, "overrides": list(overrides or [])}
    wanted = entry.expected(ctx.cfg, ctx.layout, k)
    if entry.fans_out:
        futures = {posixpath.basename(e.url): build_artifact_task.submit(entry, ctx, k, e, provenance) for e in wanted}
        return {name: f.result() for name, f in futures.items()}
    if not wanted:
        get_run_logger().warning(entry.when_empty or f"{entry.name}: nothing to build")
        return {"stage": entry.name, "url": None, "reused": False}
    (e,) = wanted
    return build_artifact(entry, ctx, k, e, provenance)


def stage_flow(entry: StageEntry) -> Flow:
    """The Prefect flow named for the stage; per-round stages take `round` (default: their first round)."""
    if entry.per_round:
        def body(config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
                 run: str | None = None, round: int = entry.first_round, force: bool = False) -> Any:
            return run_stage(entry, config, overrides, root, run, round, force)
    else:
        def body(config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,  # type: ignore[misc]
                 run: str | None = None, force: bool = False) -> Any:
            return run_stage(entry, config, overrides, root, run, entry.first_round, force)
    body.__doc__ = entry.summary
    body.__name__ = body.__qualname__ = f"{entry.name.replace('-', '_')}_flow"
    return flow(name=entry.name)(body)


def stage_flows(table: Mapping[str, StageEntry] = STAGES) -> dict[str, Flow]:
    return {name: stage_flow(entry) for name, entry in table.items()}


STAGE_FLOWS = stage_flows()
ROUND_STAGES = {name for name, entry in STAGES.items() if entry.per_round}

# The flows by name, for callers that import one (benchmarks/).
pretrain_flow = STAGE_FLOWS["pretrain"]
ingest_flow = STAGE_FLOWS["ingest"]
prompts_flow = STAGE_FLOWS["prompts"]
synthesize_flow = STAGE_FLOWS["synthesize"]
pseudo_label_flow = STAGE_FLOWS["pseudo-label"]
refine_flow = STAGE_FLOWS["refine"]
train_flow = STAGE_FLOWS["train"]
evaluate_flow = STAGE_FLOWS["evaluate"]
