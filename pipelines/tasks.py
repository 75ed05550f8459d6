"""Running a stage's shards as Prefect tasks, and reporting what was reused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from artifacts import Artifact, is_committed
from pipelines.reuse import is_up_to_date
from stages.sharded import ShardedJob


@task(name="shard", cache_policy=NONE, task_run_name="{job.name}-shard-{index:06d}")
def run_shard(job: ShardedJob, index: int) -> Any:
    return job.run_shard(index)


def run_sharded(job: ShardedJob) -> Artifact:
    """Submit one task per pending shard, wait for all, then commit (in the flow, after every shard)."""
    logger = get_run_logger()
    pending = job.pending()
    done = job.num_shards - len(pending)
    if done:
        logger.info("%s: %d of %d shards already complete from an earlier run", job.name, done, job.num_shards)
    futures = [run_shard.submit(job, i) for i in pending]
    for f in futures:
        f.result()
    return job.finish()


def reuse_or_run(
    name: str, url: str, stage: str, config_hash: str, inputs: list[str], force: bool, run: Callable[[bool], Any]
) -> dict[str, Any]:
    """Skip a stage whose committed output matches; otherwise run it (overwriting a stale output)."""
    logger = get_run_logger()
    if not force and is_up_to_date(url, stage, config_hash, inputs):
        logger.info("%s: reusing %s (inputs and config unchanged)", name, url)
        return {"stage": name, "url": url, "reused": True}
    overwrite = is_committed(url)
    if overwrite:
        logger.info("%s: %s is stale or --force was given; rebuilding", name, url)
    run(overwrite)
    return {"stage": name, "url": url, "reused": False}
