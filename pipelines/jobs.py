"""Each shard-parallel stage's job, rebuilt from plain data, so any process (a Ray worker) can run shards.

The job itself comes from the stage's entry in the stage table (stages/table.py); this module only
carries what rebuilding it takes across a process boundary.

A `ShardedJob` holds open artifacts and, once a shard has run, a loaded model: neither crosses a
process boundary. A `JobRecipe` is what does: the stage, the config and the run's root/name as JSON.
Every process builds the same job from it; only the driver prepares and commits the output folder.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from clouds.config import CloudsConfig
from clouds.layout import RunLayout, absolute_root
from pipelines.context import RunContext
from stages.sharded import ShardedJob
from stages.table import STAGES


@dataclass(frozen=True)
class JobRecipe:
    stage: str
    config: str  # CloudsConfig as JSON, less its executor section
    root: str
    run: str
    round: int = 0

    @classmethod
    def of(cls, stage: str, ctx: RunContext, round: int = 0) -> JobRecipe:
        sharded = sorted(name for name, entry in STAGES.items() if entry.job is not None)
        if stage not in sharded:
            raise ValueError(f"{stage!r} is not a shard-parallel stage; choose from {sharded}")
        # Without `executor`: workers do not need it, and the recipe is a flow parameter that Prefect stores
        # and shows, while executor.init_kwargs may hold credentials (runtime_env env_vars for s3, say).
        return cls(stage, ctx.cfg.model_dump_json(exclude={"executor"}), ctx.layout.root, ctx.layout.run, round)

    def context(self) -> RunContext:
        return RunContext(CloudsConfig.model_validate_json(self.config), RunLayout(self.root, self.run))

    def for_workers(self) -> JobRecipe:
        """Workers may start in another directory: a relative local root is made absolute for them."""
        return JobRecipe(self.stage, self.config, absolute_root(self.root), self.run, self.round)

    def build(self, *, overwrite: bool = False, attach: bool = False) -> ShardedJob:
        job = STAGES[self.stage].job
        assert job is not None
        ctx = self.context()
        return job(ctx.cfg, ctx.layout, self.round, overwrite, attach)


@functools.lru_cache(maxsize=1)
def _worker_job(recipe_json: str) -> ShardedJob:
    return JobRecipe(**json.loads(recipe_json)).build(attach=True)


def worker_job(recipe: JobRecipe) -> ShardedJob:
    """The job a worker process runs shards of, built once per process and stage: a worker given many
    shards loads the model once (the one deliberate cache; `maxsize=1` lets the next stage's model in)."""
    return _worker_job(json.dumps(recipe.__dict__, sort_keys=True))
