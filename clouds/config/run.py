"""Where a run writes its artifacts and how they are sharded."""

from __future__ import annotations

from pydantic import Field

from clouds.config.base import MAX_COUNT, MAX_SEED, SafeName, Section


class RunConfig(Section):
    name: SafeName = Field("tiny", description="run name: artifacts go under {root}/{name}/")
    root: str = Field("runs", min_length=1, description="fsspec URL of the artifact root (local path, memory://, s3://...)")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'...")
    num_threads: int | None = Field(
        1, ge=1, le=1024,
        description="CPU threads per process for torch, OpenMP, BLAS and OpenCV (null = each library's default: "
        "one per core); 1 is fastest on a small shared machine (benchmarks/bench_threads.py)",
    )


class ArtifactConfig(Section):
    shard_max_samples: int = Field(256, ge=1, le=MAX_COUNT)
    shard_max_bytes: int = Field(1 << 30, ge=1024, le=1 << 40)
    image_format: str = Field("png", pattern="^(png|jpg)$")
    verify_reads: bool = Field(
        True,
        description="stages check each member's sha256 against the manifest as they read it; turn off only "
        "for trusted storage (commit markers are cross-checked either way)",
    )
