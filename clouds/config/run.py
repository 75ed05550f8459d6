"""Where a run writes its artifacts and how they are sharded."""

from __future__ import annotations

from pydantic import Field

from clouds.config.base import Section


class RunConfig(Section):
    name: str = Field("tiny", description="run name: artifacts go under {root}/{name}/")
    root: str = Field("runs", description="fsspec URL of the artifact root (local path, memory://, s3://...)")
    seed: int = 0
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'...")


class ArtifactConfig(Section):
    shard_max_samples: int = Field(256, ge=1)
    shard_max_bytes: int = Field(1 << 30, ge=1024)
    image_format: str = Field("png", pattern="^(png|jpg)$")
