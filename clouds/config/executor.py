"""Where shard tasks run: threads of this process (local) or a Ray cluster (through prefect-ray)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from clouds.config.base import Section

SHARDED_STAGES = ("synthesize", "pseudo-label", "refine", "evaluate")


class TaskResources(Section):
    """What one shard task asks the Ray scheduler for (Ray's own `@ray.remote` options)."""

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0, description="fractions share a GPU, e.g. 0.5 = two tasks per GPU")
    memory: int | None = Field(None, ge=0, description="bytes of RAM to reserve per task")
    accelerator_type: str | None = Field(None, description="e.g. 'H100' (ray.util.accelerators)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom node resources")

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
        2, ge=1, description="'local': shard tasks running at once; they share one model and one device, so "
        "more only adds memory (a batch in flight each) once compute and I/O overlap"
    )
    address: str | None = Field(
        None, description="Ray cluster: 'auto', 'ray://head:10001' or 'host:6379'; null starts Ray on this machine"
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra ray.init arguments, e.g. runtime_env, namespace"
    )
    resources: dict[str, TaskResources] = Field(
        default_factory=dict, description="per-stage task resources, keyed by stage name"
    )

    @field_validator("resources")
    @classmethod
    def _known_stages(cls, value: dict[str, TaskResources]) -> dict[str, TaskResources]:
        unknown = sorted(set(value) - set(SHARDED_STAGES))
        if unknown:
            raise ValueError(f"no shard-parallel stage named {unknown}; choose from {list(SHARDED_STAGES)}")
        return value

    def task_resources(self, stage: str) -> TaskResources:
        return self.resources.get(stage, TaskResources())
