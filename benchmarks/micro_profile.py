"""The micro test profile resized for a benchmark: the shared starting point of the flow benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
REPO = Path(__file__).resolve().parent.parent


def write_config(folder: Path, images: int, per_shard: int) -> Path:
    """tests/micro.yaml with `images` toycity images in shards of `per_shard`, written into `folder`."""
    tree = yaml.safe_load((REPO / "tests" / "micro.yaml").read_text())
    tree["synthesize"]["num_images"] = images
    tree["artifacts"]["shard_max_samples"] = per_shard
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path
