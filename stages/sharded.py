"""A stage's work split into shards, so an orchestrator can run each shard as its own task.

Stage modules build a `ShardedJob`; running it inline (`run_all`) and running its shards as Prefect
tasks give the same artifact, because each shard is written atomically by index and the commit only
reads what the complete shards recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from artifacts import Artifact, ArtifactWriter


@dataclass
class ShardedJob:
    writer: ArtifactWriter
    num_shards: int
    run_shard: Callable[[int], Any]
    finish: Callable[[], Artifact]
    name: str = "stage"

    def pending(self) -> list[int]:
        return [i for i in range(self.num_shards) if not self.writer.is_shard_complete(i)]

    def run_all(self) -> Artifact:
        for i in self.pending():
            self.run_shard(i)
        return self.finish()
