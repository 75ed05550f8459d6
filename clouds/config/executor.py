"""Where shard tasks run: threads of this process (local) or a Ray cluster (through prefect-ray)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from clouds.config.base import Section

SHARDED_STAGES = ("synthesize", "pseudo-label", "refine", "evaluate")
RAY_STAGES = (*SHARDED_STAGES, "train")


class TaskResources(Section):
    """What one shard task asks the Ray scheduler for (Ray's own `@ray.remote` options)."""

    num_cpus: float = Field(1.0, ge=0, le=1 << 16)
    num_gpus: float = Field(0.0, ge=0, le=1024, description="fractions share a GPU, e.g. 0.5 = two tasks per GPU")
    memory: int | None = Field(None, ge=0, le=1 << 50, description="bytes of RAM to reserve per task")
    accelerator_type: str | None = Field(None, description="e.g. 'H100' (ray.util.accelerators)")
    resources: dict[str, Annotated[float, Field(ge=0, le=1e12)]] = Field(
        default_factory=dict, description="custom node resources"
    )

    def remote_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory is not None:
            options["memory"] = self.memory
        if self.accelerator_type is not None:
            options["accelerator_type"] = self.accelerator_type
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


class ExecutorConfig(Section):
    kind: Literal["local", "ray"] = Field(
        "local", description="'local': Prefect's thread pool in this process; 'ray': prefect-ray's RayTaskRunner"
    )
    local_workers: int = Field(
        2, ge=1, le=1024, description="'local': shard tasks running at once; they share one model and one device, so "
        "more only adds memory (a batch in flight each) once compute and I/O overlap"
    )
    address: str | None = Field(
        None, description="Ray cluster: 'auto', 'ray://head:10001' or 'host:6379'; null starts Ray on this machine"
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra ray.init arguments, e.g. runtime_env, namespace"
    )
    resources: dict[str, TaskResources] = Field(
        default_factory=dict, description="per-stage task resources, keyed by stage name ('train': per worker)"
    )
    train_workers: int = Field(
        0, ge=0, le=100_000, description="'ray': N > 0 trains each round data-parallel on N Ray Train workers (DDP); "
        "0 trains in the flow's process"
    )
    train_max_failures: int = Field(
        0, ge=-1, le=100_000, description="Ray Train restarts of the worker group after a failure (-1: unlimited); each "
        "restart resumes from the last progress snapshot (train.checkpoint_every)"
    )
    train_storage: str | None = Field(
        None, description="Ray Train's run storage (its own logs, not our checkpoints): a path or URL all "
        "nodes see; null = Ray's default (~/ray_results), enough on one machine"
    )

    @field_validator("resources")
    @classmethod
    def _known_stages(cls, value: dict[str, TaskResources]) -> dict[str, TaskResources]:
        unknown = sorted(set(value) - set(RAY_STAGES))
        if unknown:
            raise ValueError(f"no stage that runs on Ray named {unknown}; choose from {list(RAY_STAGES)}")
        return value

    @model_validator(mode="after")
    def _train_workers_need_ray(self) -> ExecutorConfig:
        if self.train_workers and self.kind != "ray":
            raise ValueError("train_workers > 0 trains on Ray Train: it needs executor.kind 'ray' (for training "
                             "on GPUs without Ray, use torchrun -m stages.train.launch)")
        return self

    def task_resources(self, stage: str) -> TaskResources:
        return self.resources.get(stage, TaskResources())
