"""Shard-parallel stages on a real local Ray cluster (head + 2 worker nodes) through prefect-ray.

The same full round is run twice, once with Prefect's thread pool in this process and once with
every shard task on the Ray workers; each artifact must come out identical (content hashes and
per-member sha256), and evaluation identical to the last pixel count.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artifacts import Folder, open_artifact, read_lineage
from clouds.layout import RunLayout

MICRO = str(Path(__file__).parent / "micro.yaml")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A head that runs nothing (num_cpus=0) and two one-CPU worker nodes, so shards must spread."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def _ray_overrides(address: str) -> list[str]:
    return [
        "executor.kind=ray",
        f"executor.address={address}",
        "executor.resources={synthesize: {num_cpus: 1}, pseudo-label: {num_cpus: 1}, refine: {num_cpus: 1},"
        " evaluate: {num_cpus: 0.5}}",
    ]


@contextmanager
def _one_ray_job(address: str, **init_kwargs: Any) -> Iterator[None]:
    """This process connected to the cluster throughout: prefect-ray's task runner and Ray Train then use this
    connection (as they do any open one) instead of connecting, and ending the job, per stage."""
    import ray

    ray.init(address=address, **init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def test_full_round_on_ray_equals_single_process(harness, cluster, tmp_path):
    from prefect import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    from clouds.config import load_config
    from pipelines.clouds_flow import clouds
    from pipelines.ray_executor import driver_api_url, worker_init_kwargs

    local, remote = str(tmp_path / "local"), str(tmp_path / "ray")
    clouds(mode="full-round", config=MICRO, root=local, round=1)
    # One Ray job for the five sharded stages, connected with the init arguments each stage would use: the
    # stages share worker processes instead of each starting two that import torch, most of this test's time.
    # The tests below connect per stage, as `clouds run` does.
    executor = load_config(MICRO, _ray_overrides(cluster.address)).executor
    with _one_ray_job(cluster.address, **worker_init_kwargs(executor, driver_api_url())):
        clouds(mode="full-round", config=MICRO, root=remote, round=1, overrides=_ray_overrides(cluster.address))

    a, b = RunLayout(local, "micro"), RunLayout(remote, "micro")
    for pick in (lambda L: L.once("synthesize"), lambda L: L.round(1, "pseudo-label"), lambda L: L.round(1, "refine")):
        left, right = open_artifact(pick(a)), open_artifact(pick(b))
        assert len(right.shards) >= 2, right.url  # more than one task to spread over the workers
        assert right.lineage["content_hash"] == left.lineage["content_hash"], right.url
        assert right.manifest.column("member_sha256").to_pylist() == left.manifest.column("member_sha256").to_pylist()
        assert right.lineage["stats"] == left.lineage["stats"], right.url
    for k in (0, 1):
        left, right = read_lineage(a.round(k, "evaluate")), read_lineage(b.round(k, "evaluate"))
        assert right["stats"]["miou"] == left["stats"]["miou"]
        assert right["stats"]["images"] == left["stats"]["images"] == {"target-fog": 4}
        conf = [np.load(io.BytesIO(Folder.at(L.round(k, "evaluate")).read_bytes("confusion/target-fog.npy")))
                for L in (a, b)]
        assert np.array_equal(*conf)

    # The shard tasks really ran as Ray subflows (one "<stage>-shards" flow run per sharded stage).
    async def shard_flow_runs() -> list[str]:
        async with get_client() as client:
            return sorted(r.name for r in await client.read_flow_runs() if r.name.endswith("-shards"))

    names = run_coro_as_sync(shard_flow_runs())
    assert names == sorted(["synthesize-shards", "pseudo-label-shards", "refine-shards", "evaluate-shards",
                            "evaluate-shards"]), names


def test_ray_refuses_a_memory_root(harness, cluster):
    """Workers are other processes: they cannot see the driver's memory:// filesystem."""
    from pipelines.clouds_flow import clouds

    with pytest.raises(ValueError, match="memory://"):
        clouds(mode="full-round", config=MICRO, root="memory://ray-root", round=0,
               overrides=_ray_overrides(cluster.address))


def test_bad_shard_read_on_a_worker_is_named_and_nothing_is_committed(harness, cluster, tmp_path):
    """A worker's error reaches the driver with its message (the file); the output stays uncommitted."""
    from artifacts import ArtifactError, is_committed
    from pipelines.clouds_flow import clouds

    root = str(tmp_path / "runs")
    overrides = _ray_overrides(cluster.address)
    # The inputs are built in this process (the executor is no part of any artifact's identity): only the
    # stage under test pays for starting Ray workers.
    for stage in ("prompts", "synthesize", "ingest"):
        clouds(mode=stage, config=MICRO, root=root)
    layout = RunLayout(root, "micro")
    images = open_artifact(layout.once("synthesize"))
    broken = Path(root) / "micro" / "synthesize" / images.shards[1]
    broken.write_bytes(broken.read_bytes()[:700])
    clouds(mode="train", config=MICRO, root=root, round=0)
    with pytest.raises(ArtifactError, match=r"shard-000001\.tar"):
        clouds(mode="pseudo-label", config=MICRO, root=root, round=1, overrides=overrides)
    assert not is_committed(layout.round(1, "pseudo-label"))


def test_loopback_prefect_api_is_flagged_only_when_nodes_run_on_other_machines():
    from pipelines.ray_executor import unreachable_api_warning

    local = "http://127.0.0.1:4200/api"
    assert unreachable_api_warning(local, ["10.0.0.5"], "10.0.0.5") is None  # one machine: the head's own node
    assert unreachable_api_warning(local, ["10.0.0.5", "127.0.0.1"], "10.0.0.5") is None
    assert unreachable_api_warning("http://prefect.internal:4200/api", ["10.0.0.5", "10.0.0.6"], "10.0.0.5") is None
    warning = unreachable_api_warning(local, ["10.0.0.5", "10.0.0.7", "10.0.0.6"], "10.0.0.5")
    assert warning is not None and "Ray workers on 10.0.0.6, 10.0.0.7 cannot report to it" in warning


def _kill_the_writer_of_a_partial_shard(folder: Path, killed: list[tuple[int, str]], timeout: float = 120.0) -> None:
    """SIGKILL the process holding a shard open under its temporary name (a Ray worker mid-shard), once."""
    import os
    import signal
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        for partial in folder.glob(".shard-*.tmp") if folder.exists() else []:
            for proc in psutil.process_iter():
                try:
                    if any(f.path == str(partial) for f in proc.open_files()):
                        os.kill(proc.pid, signal.SIGKILL)
                        killed.append((proc.pid, partial.name))
                        return
                except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue
        time.sleep(0.005)


def test_a_worker_killed_mid_shard_is_retried_by_ray_to_the_same_artifact(harness, cluster, tmp_path):
    """A preempted node or an OOM-killed worker: Ray retries the shard's task on another worker, the
    shard is written whole (temporary name, then moved into place) and the stage commits unchanged."""
    import threading

    import yaml

    from pipelines.stage_flows import prompts_flow, synthesize_flow

    tree = yaml.safe_load(Path(MICRO).read_text())
    tree["synthesize"].update(num_images=16, height=256, width=512)  # shards of 4 that take a while to write
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump(tree))
    root = str(tmp_path / "runs")
    for run in ("local", "ray"):
        prompts_flow(config=str(config), root=root, run=run)
    synthesize_flow(config=str(config), root=root, run="local")

    killed: list[tuple[int, str]] = []
    killer = threading.Thread(target=_kill_the_writer_of_a_partial_shard, args=(Path(root) / "ray" / "synthesize", killed))
    killer.start()
    synthesize_flow(config=str(config), root=root, run="ray", overrides=_ray_overrides(cluster.address))
    killer.join()
    assert killed, "no shard was caught mid-write: nothing was killed"

    left, right = open_artifact(f"{root}/local/synthesize"), open_artifact(f"{root}/ray/synthesize")
    assert right.lineage["content_hash"] == left.lineage["content_hash"]
    assert right.manifest.column("member_sha256").to_pylist() == left.manifest.column("member_sha256").to_pylist()
    assert not list((Path(root) / "ray" / "synthesize").glob(".*.tmp"))


# A round 0 with a snapshot half way (the kill below comes there), and more queries than classes: how many masks
# are matched, and so how many random points a rank draws, then depends on its images, and each rank's stream differs.
TRAIN_OVERRIDES = ["train.warmup_iters=8", "train.checkpoint_every=4", "model.decoder.num_queries=32"]


def _ray_train_overrides(address: str, storage: Path) -> list[str]:
    return ["executor.kind=ray", f"executor.address={address}", "executor.train_workers=2",
            "executor.resources={train: {num_cpus: 1}}", f"executor.train_storage={storage}",
            "executor.train_max_failures=1", *TRAIN_OVERRIDES]


@pytest.fixture(scope="module")
def trained_on_ray(harness, cluster, tmp_path_factory) -> Path:
    """A run root whose round 0 was trained, uninterrupted, on two Ray Train workers: what the torchrun run and
    the killed-and-restarted run below must both end on (one Ray Train run for the two tests)."""
    from pipelines.clouds_flow import clouds

    root = tmp_path_factory.mktemp("trained-on-ray")
    overrides = _ray_train_overrides(cluster.address, root / "ray-train")
    clouds(mode="ingest", config=MICRO, root=str(root), overrides=overrides)
    clouds(mode="train", config=MICRO, root=str(root), round=0, overrides=overrides)
    return root


def _weights(root: Path) -> dict[str, Any]:
    from models.checkpoint import load_checkpoint

    return load_checkpoint(RunLayout(str(root), "micro").round(0, "train"), device="cpu")[0].state_dict()


def test_training_on_two_ray_train_workers_equals_two_torchrun_processes(harness, cluster, trained_on_ray, tmp_path):
    """Ray Train sets up the same 2-rank gloo group torchrun does and runs the same `train()`: identical
    weights. (That 2 ranks match 1 process up to tolerance is tests/test_distributed.py's.)"""
    import os
    import subprocess
    import sys

    import torch

    from clouds.config import load_config
    from pipelines.clouds_flow import clouds
    from stages.ingest.stage import ingest

    torchrun_root = tmp_path / "torchrun"
    cfg = load_config(MICRO, TRAIN_OVERRIDES)
    ingest(cfg.data.source, RunLayout(str(torchrun_root), "micro").data(cfg.data.source.name), cfg.artifacts)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "stages.train.launch", "--config", MICRO, "--root", str(torchrun_root),
                           "--run-name", "micro", "--round", "0", *(a for o in TRAIN_OVERRIDES for a in ("--set", o))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    on_ray, with_torchrun = (RunLayout(str(r), "micro").round(0, "train") for r in (trained_on_ray, torchrun_root))
    assert read_lineage(on_ray)["stats"]["samples_seen"] == read_lineage(with_torchrun)["stats"]["samples_seen"]
    a, b = _weights(trained_on_ray), _weights(torchrun_root)
    for name, value in a.items():
        assert torch.equal(value, b[name]), name
    # The flow reuses the checkpoint Ray Train committed (same plan, same hash).
    overrides = _ray_train_overrides(cluster.address, trained_on_ray / "ray-train")
    again = clouds(mode="train", config=MICRO, root=str(trained_on_ray), round=0, overrides=overrides)
    assert all(step["reused"] for step in again["steps"]), again


def test_ray_train_workers_ask_for_the_train_resources():
    from clouds.config import ExecutorConfig
    from pipelines.ray_train import trainer_options

    executor = ExecutorConfig(kind="ray", train_workers=8, resources={"train": {
        "num_cpus": 8, "num_gpus": 1, "memory": 64 << 30, "accelerator_type": "H100", "resources": {"nvme": 1}}})
    assert trainer_options(executor) == {
        "num_workers": 8, "use_gpu": True, "accelerator_type": "H100",
        "resources_per_worker": {"CPU": 8.0, "GPU": 1.0, "memory": 64 << 30, "nvme": 1.0}}
    cpu_only = trainer_options(ExecutorConfig(kind="ray", train_workers=2))
    assert cpu_only == {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1.0}}


def _die_once_after_the_first_snapshot(marker: str) -> Callable[[], None]:
    """A worker_process_setup_hook (Ray runs it in each process it starts for the job): rank 0 of the train
    workers SIGKILLs itself right after saving its first progress snapshot, once in the job (it creates
    `marker` first; the restarted group trains on), as a preempted node would stop it.

    Made in a function, so that Ray pickles the hook by value (workers cannot import this test module). It
    patches stages.train.recipe once a process imports it (a train worker does), so Ray Train's other
    processes do not import torch for it."""

    def hook() -> None:
        import importlib.abc
        import importlib.util
        import os
        import signal
        import sys

        def patch(recipe: Any) -> None:
            save = recipe.save_progress

            def save_then_die_once(*args: Any, **kwargs: Any) -> Any:
                url = save(*args, **kwargs)
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return url
                os.kill(os.getpid(), signal.SIGKILL)

            recipe.save_progress = save_then_die_once

        class PatchOnImport(importlib.abc.MetaPathFinder):
            def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
                if name != "stages.train.recipe":
                    return None
                sys.meta_path.remove(self)
                spec = importlib.util.find_spec(name)
                execute = spec.loader.exec_module

                def execute_then_patch(module: Any) -> None:
                    execute(module)
                    patch(module)

                spec.loader.exec_module = execute_then_patch
                return spec

        sys.meta_path.insert(0, PatchOnImport())

    return hook


def test_a_ray_train_worker_killed_mid_round_is_restarted_and_resumes_to_the_same_weights(
        harness, cluster, trained_on_ray, tmp_path):
    """executor.train_max_failures: Ray Train restarts the group after a worker dies, and every worker's
    `train()` resumes from the last progress snapshot (each rank's own RNG stream), ending where an
    uninterrupted run ends."""
    import torch

    from pipelines.clouds_flow import clouds

    root, marker = tmp_path / "killed", tmp_path / "a-train-worker-was-killed"
    overrides = _ray_train_overrides(cluster.address, tmp_path / "ray-train")
    clouds(mode="ingest", config=MICRO, root=str(root), overrides=overrides)
    # This process holds the job (Ray Train then uses this connection), so that the job's processes run the hook.
    hook = _die_once_after_the_first_snapshot(str(marker))
    with _one_ray_job(cluster.address, runtime_env={"worker_process_setup_hook": hook}):
        clouds(mode="train", config=MICRO, root=str(root), round=0, overrides=overrides)
    assert marker.exists(), "no Ray Train worker was killed"
    # The restarted group resumed at the snapshot (rather than retrained from step 0, which would end on the
    # same weights).
    url = RunLayout(str(root), "micro").round(0, "train")
    logs = Path(cluster.head_node.get_logs_dir_path())
    worker_logs = "".join(f.read_text(errors="replace") for f in logs.glob("worker-*.err"))
    assert f"resuming {url} at step 4 of 8" in worker_logs

    a, b = _weights(trained_on_ray), _weights(root)
    for name, value in a.items():
        assert torch.equal(value, b[name]), name
