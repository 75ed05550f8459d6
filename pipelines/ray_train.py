"""A round's training, data-parallel on Ray Train workers (`executor.train_workers` > 0).

Ray Train's TorchTrainer places the workers (`executor.resources.train` each), sets up the
torch.distributed process group (nccl on GPUs, gloo on CPUs) and runs the round's `TrainRecipe` on every
worker, built and run as torchrun's launcher and the train flow do, so the gradient averaging, rank-0
commit and per-rank resume of stages.train are unchanged. After a failure (`executor.train_max_failures`)
Ray Train restarts the group and the recipe resumes from its last progress snapshot.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from artifacts import read_lineage
from clouds.config import CloudsConfig, ExecutorConfig
from clouds.threads import apply_num_threads
from pipelines.ray_cluster import check_reachable, check_shared_storage
from stages.train.plan import RoundPlan


def _train_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: the process group is up, this worker's GPU (if any) is visible."""
    import logging

    import torch

    from stages.train.distributed import world
    from stages.train.recipe import TrainRecipe

    # Rank 0's progress (resume, snapshots, commit) reaches the driver's console through Ray's log forwarding.
    # `force`: this worker process runs only our loop, whatever handlers its imports installed.
    logging.basicConfig(level=logging.INFO if world()[0] == 0 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    if torch.cuda.is_available():
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())  # run.device 'auto'/'cuda' then means this worker's GPU
    cfg = CloudsConfig.model_validate_json(loop_config["config"])
    apply_num_threads(cfg.run.num_threads)
    plan = RoundPlan(**loop_config["plan"])
    TrainRecipe.of(cfg, plan).run()


def trainer_options(executor: ExecutorConfig) -> dict[str, Any]:
    """ScalingConfig arguments: N workers, each with the resources `executor.resources.train` asks for."""
    res = executor.task_resources("train")
    per_worker: dict[str, float] = {"CPU": res.num_cpus, **res.resources}
    if res.num_gpus:
        per_worker["GPU"] = res.num_gpus
    if res.memory is not None:
        per_worker["memory"] = res.memory
    options: dict[str, Any] = {"num_workers": executor.train_workers, "use_gpu": res.num_gpus > 0,
                               "resources_per_worker": per_worker}
    if res.accelerator_type is not None:
        options["accelerator_type"] = res.accelerator_type
    return options


def train_on_ray(cfg: CloudsConfig, plan: RoundPlan, executor: ExecutorConfig, name: str) -> dict[str, Any]:
    """Train `plan` on Ray Train workers; returns the summary rank 0 committed with the checkpoint (what
    the recipe returns; Ray Train keeps only metrics reported with its own checkpoints)."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    check_shared_storage(plan.output)
    check_reachable(executor.address)
    started = not ray.is_initialized()
    if started:
        ray.init(address=executor.address, **executor.init_kwargs)
    try:
        trainer = TorchTrainer(
            _train_worker,
            # Without `executor`: Ray keeps the loop config, and executor.init_kwargs may hold credentials.
            train_loop_config={"config": cfg.model_dump_json(exclude={"executor"}), "plan": asdict(plan)},
            scaling_config=ScalingConfig(**trainer_options(executor)),
            run_config=RunConfig(name=name, storage_path=executor.train_storage,
                                 failure_config=FailureConfig(max_failures=executor.train_max_failures)),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
    return read_lineage(plan.output)["stats"]
