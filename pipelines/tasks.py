"""Running a stage's shards as Prefect tasks, and reporting what was reused."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.futures import as_completed

from artifacts import is_committed
from artifacts.identity import Identity
from clouds.config import ExecutorConfig
from clouds.progress import eta
from pipelines.jobs import JobRecipe
from stages.sharded import ShardedJob

log = logging.getLogger(__name__)


@task(name="shard", cache_policy=NONE, task_run_name="{job.name}-shard-{index:06d}")
def run_shard(job: ShardedJob, index: int) -> Any:
    return job.run_shard(index)


def run_local(job: ShardedJob, pending: list[int], workers: int) -> dict[int, Any]:
    """Shard tasks in this process's threads, at most `workers` at a time, in index order.

    Prefect's thread pool alone would start every shard at once: each holds a batch of the one shared
    model in memory (on a GPU, an out-of-memory error at real sizes) while two cores or one GPU run no
    faster. After a shard fails no new one starts; those running finish, then the first error is raised.
    """
    results: dict[int, Any] = {}
    queue, running = list(pending), {}
    error: BaseException | None = None
    started = time.monotonic()
    while queue or running:
        while queue and len(running) < workers and error is None:
            index = queue.pop(0)
            running[run_shard.submit(job, index)] = index
        if not running:
            break
        future = next(as_completed(list(running)))
        index = running.pop(future)
        try:
            results[index] = future.result()
            # One line per shard: log files, nohup and Prefect's run logs see the stage move (no tqdm bar there).
            log.info("%s: shard %d done, %d/%d of this run, ETA %s", job.name, index, len(results), len(pending),
                     eta(len(results), len(pending), time.monotonic() - started))
        except BaseException as err:  # noqa: BLE001 - re-raised below, once the running shards are done
            error = error or err
    if error is not None:
        raise error
    return results


def run_sharded(job: ShardedJob, recipe: JobRecipe, executor: ExecutorConfig) -> Any:
    """Run every pending shard, wait for all, then finish (commit) in the flow.

    Locally, shards are tasks in this process's threads and share `job` (one model). On Ray, workers
    rebuild the job from `recipe` and attach to the output folder `job` prepared here.
    """
    logger = get_run_logger()
    pending = job.pending()
    done = job.num_shards - len(pending)
    if done:
        logger.info("%s: %d of %d shards already complete from an earlier run", job.name, done, job.num_shards)
    if executor.kind == "local" or not pending:
        return job.finish(run_local(job, pending, executor.local_workers))
    from pipelines.ray_executor import run_on_ray

    return job.finish(run_on_ray(recipe, pending, executor))


def reuse_or_run(name: str, url: str, identity: Identity, force: bool, run: Callable[[bool], Any]) -> dict[str, Any]:
    """Skip a stage whose committed output matches (the one rule, artifacts.identity); otherwise run it
    (overwriting a stale output)."""
    logger = get_run_logger()
    if not force and identity.is_current(url):
        logger.info("%s: reusing %s (inputs and config unchanged)", name, url)
        return {"stage": name, "url": url, "reused": True}
    overwrite = is_committed(url)
    if overwrite:
        logger.info("%s: %s is stale or --force was given; rebuilding", name, url)
    run(overwrite)
    return {"stage": name, "url": url, "reused": False}
