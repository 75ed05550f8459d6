"""Each shard-parallel stage's job, rebuilt from plain data, so any process (a Ray worker) can run shards.

A `ShardedJob` holds open artifacts and, once a shard has run, a loaded model: neither crosses a
process boundary. A `JobRecipe` is what does: the stage, the config and the run's root/name as JSON.
Every process builds the same job from it; only the driver prepares and commits the output folder.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass

from clouds.config import CloudsConfig
from clouds.device import resolve_device
from pipelines.context import RunContext
from pipelines.layout import RunLayout, absolute_root
from stages.sharded import ShardedJob


@dataclass(frozen=True)
class JobRecipe:
    stage: str
    config: str  # CloudsConfig as JSON, less its executor section
    root: str
    run: str
    round: int = 0

    @classmethod
    def of(cls, stage: str, ctx: RunContext, round: int = 0) -> JobRecipe:
        if stage not in BUILDERS:
            raise ValueError(f"{stage!r} is not a shard-parallel stage; choose from {sorted(BUILDERS)}")
        # Without `executor`: workers do not need it, and the recipe is a flow parameter that Prefect stores
        # and shows, while executor.init_kwargs may hold credentials (runtime_env env_vars for s3, say).
        return cls(stage, ctx.cfg.model_dump_json(exclude={"executor"}), ctx.layout.root, ctx.layout.run, round)

    def context(self) -> RunContext:
        return RunContext(CloudsConfig.model_validate_json(self.config), RunLayout(self.root, self.run))

    def for_workers(self) -> JobRecipe:
        """Workers may start in another directory: a relative local root is made absolute for them."""
        return JobRecipe(self.stage, self.config, absolute_root(self.root), self.run, self.round)

    def build(self, *, overwrite: bool = False, attach: bool = False) -> ShardedJob:
        return BUILDERS[self.stage](self.context(), self.round, overwrite, attach)


@functools.lru_cache(maxsize=1)
def _worker_job(recipe_json: str) -> ShardedJob:
    return JobRecipe(**json.loads(recipe_json)).build(attach=True)


def worker_job(recipe: JobRecipe) -> ShardedJob:
    """The job a worker process runs shards of, built once per process and stage: a worker given many
    shards loads the model once (the one deliberate cache; `maxsize=1` lets the next stage's model in)."""
    return _worker_job(json.dumps(recipe.__dict__, sort_keys=True))


def teacher_checkpoint(layout: RunLayout, k: int) -> str:
    """Round k is labelled by the EMA teacher saved by round k-1's training (round 0 = warm-up)."""
    return layout.round(k - 1, "train")


def synthesize_job(ctx: RunContext, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    from stages.synthesize.stage import prepare_synthesize

    cfg = ctx.cfg
    return prepare_synthesize(
        ctx.layout.once("prompts"), ctx.layout.once("synthesize"), cfg.synthesize, cfg.run.seed,
        cfg.artifacts.shard_max_samples, device=cfg.run.device, image_format=cfg.artifacts.image_format,
        overwrite=overwrite, attach=attach, verify=cfg.artifacts.verify_reads,
    )


def pseudo_label_job(ctx: RunContext, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    from stages.pseudo_label.stage import prepare_pseudo_label

    return prepare_pseudo_label(
        None, ctx.layout.once("synthesize"), teacher_checkpoint(ctx.layout, k), ctx.layout.round(k, "pseudo-label"),
        ctx.cfg.pseudo_label, device=resolve_device(ctx.cfg.run.device), overwrite=overwrite, attach=attach,
        verify=ctx.cfg.artifacts.verify_reads,
    )


def refine_job(ctx: RunContext, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    from stages.refine.stage import prepare_refine

    cfg = ctx.cfg
    return prepare_refine(
        ctx.layout.round(k, "pseudo-label"), ctx.layout.round(k, "refine"), cfg.refine, cfg.run.seed,
        cfg.artifacts.shard_max_samples, device=resolve_device(cfg.run.device), overwrite=overwrite, attach=attach,
        verify=cfg.artifacts.verify_reads,
    )


def evaluate_job(ctx: RunContext, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    """A folder artifact: nothing is prepared on storage until `finish`, so `attach` changes nothing."""
    from artifacts import Folder
    from stages.evaluate.stage import prepare_evaluate

    url = ctx.layout.round(k, "evaluate")
    if overwrite:
        Folder.at(url).remove(within=ctx.layout.base)
    targets = {t.name: ctx.layout.data(t.name) for t in ctx.cfg.data.targets}
    averages = {t.name: t.average for t in ctx.cfg.data.targets}
    return prepare_evaluate(ctx.layout.round(k, "train"), targets, ctx.cfg.evaluate, url,
                            device=ctx.cfg.run.device, averages=averages, verify=ctx.cfg.artifacts.verify_reads)


BUILDERS: dict[str, Callable[[RunContext, int, bool, bool], ShardedJob]] = {
    "synthesize": synthesize_job,
    "pseudo-label": pseudo_label_job,
    "refine": refine_job,
    "evaluate": evaluate_job,
}

