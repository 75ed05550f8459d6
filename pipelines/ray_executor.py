"""Shard tasks on a Ray cluster through prefect-ray's RayTaskRunner.

Each stage's pending shards become one `<stage>-shards` subflow whose task runner is Ray; every task
asks Ray for the stage's resources (`executor.resources`), and the worker rebuilds the stage's job
from its recipe. Ray is imported inside functions only, so the default install never needs it.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from clouds.config import ExecutorConfig
from pipelines.jobs import JobRecipe, worker_job
from pipelines.ray_cluster import check_reachable, check_shared_storage


@task(name="shard", cache_policy=NONE, task_run_name="{recipe.stage}-shard-{index:06d}")
def run_remote_shard(recipe: JobRecipe, index: int) -> Any:
    """Runs in a Ray worker: the job (and its model) is rebuilt there from the recipe, once per process."""
    return worker_job(recipe).run_shard(index)


@flow(name="shards")
def ray_shards(recipe: JobRecipe, indices: list[int], remote_options: dict[str, Any]) -> dict[int, Any]:
    import ray
    from prefect_ray.context import remote_options as ray_options

    nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
    warning = unreachable_api_warning(driver_api_url(), nodes, ray.util.get_node_ip_address())
    if warning:
        get_run_logger().warning(warning)
    with ray_options(**remote_options):
        futures = {i: run_remote_shard.submit(recipe, i) for i in indices}
    return {i: f.result() for i, f in futures.items()}


def driver_api_url() -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


def worker_init_kwargs(executor: ExecutorConfig, api_url: str) -> dict[str, Any]:
    """ray.init arguments, with the driver's Prefect API passed to every worker.

    Without it, a worker of a run on Prefect's temporary server starts a temporary server of its own
    (seconds per worker) and its task runs never reach the driver's UI.
    """
    kwargs = copy.deepcopy(executor.init_kwargs)
    kwargs.setdefault("runtime_env", {}).setdefault("env_vars", {}).setdefault("PREFECT_API_URL", api_url)
    return kwargs


def unreachable_api_warning(api_url: str, node_addresses: list[str], here: str) -> str | None:
    """A warning when the Prefect API listens on loopback and the cluster has nodes on other machines: their
    shards still run, but their task runs never reach the UI. Nodes on this machine can reach it."""
    if urlsplit(api_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    remote = sorted(set(node_addresses) - {here, "127.0.0.1"})
    if not remote:
        return None
    return (f"the Prefect API is {api_url}: Ray workers on {', '.join(remote)} cannot report to it (their shards "
            "still run); for one UI, run a Prefect server they can reach and set PREFECT_API_URL")


def ray_task_runner(executor: ExecutorConfig) -> Any:
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise RuntimeError("executor.kind is 'ray' but prefect-ray is not installed: pip install 'clouds[ray]'") from None
    check_reachable(executor.address)
    return RayTaskRunner(address=executor.address, init_kwargs=worker_init_kwargs(executor, driver_api_url()))


def run_on_ray(recipe: JobRecipe, indices: list[int], executor: ExecutorConfig) -> dict[int, Any]:
    """The results of shards `indices`, run as Ray tasks; the caller (the driver) finishes the job."""
    check_shared_storage(recipe.root)
    options = executor.task_resources(recipe.stage).remote_options()
    get_run_logger().info("%s: %d shards on Ray (%s), each with %s", recipe.stage, len(indices),
                          executor.address or "a Ray instance started here", options)
    runner = ray_shards.with_options(task_runner=ray_task_runner(executor), flow_run_name=f"{recipe.stage}-shards")
    return runner(recipe.for_workers(), indices, options)
