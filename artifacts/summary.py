"""What `clouds inspect` reports: an artifact's size, members, domains, lineage and class pixel shares."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from artifacts.errors import ArtifactError
from artifacts.lineage import read_lineage
from artifacts.reader import Artifact
from clouds.labels import CLASS_NAMES, IGNORE, NUM_CLASSES


def label_members(members: list[str]) -> list[str]:
    return sorted(m for m in members if m == "seg.png" or m.endswith(".seg.png"))


def summarize(url: str, class_pixels: bool = True) -> dict[str, Any]:
    """A JSON-able description of the artifact at `url` (folder artifacts get their lineage and files)."""
    lineage = read_lineage(url)
    if "shards" not in lineage:
        return {
            "url": url, "committed": True, "kind": "folder", "stage": lineage.get("stage"),
            "files": lineage.get("files", {}), "lineage": lineage, "shards": 0, "samples": 0, "keys": [],
            "class_pixels": {},
        }
    art = Artifact.open(url)
    m = art.manifest
    members = sorted({x for row in m.column("members").to_pylist() for x in row})
    per_shard = Counter(m.column("shard").to_pylist())
    domains = Counter(d for d in m.column("domain").to_pylist() if d is not None)
    out: dict[str, Any] = {
        "url": art.url,
        "committed": True,
        "kind": "shards",
        "stage": art.stage,
        "shards": len(art.shards),
        "samples": art.num_samples,
        "bytes": int(sum(m.column("bytes").to_pylist())),
        "keys": members,
        "samples_per_shard": {s: per_shard.get(s, 0) for s in art.shards},
        "domains": dict(sorted(domains.items())),
        "lineage": lineage,
        "class_pixels": {},
    }
    if class_pixels:
        out["class_pixels"] = _class_pixels(art, label_members(members))
    return out


def _class_pixels(art: Artifact, members: list[str]) -> dict[str, dict[str, Any]]:
    """Pixel share of each class per label member (ignore counted apart), over the whole artifact."""
    if not members:
        return {}
    counts = {m: np.zeros(256, dtype=np.int64) for m in members}
    for sample in art.iter_samples(members=members):
        for m in members:
            if m in sample:
                counts[m] += np.bincount(np.asarray(sample[m]).ravel(), minlength=256)
    result = {}
    for m, c in counts.items():
        total = int(c.sum())
        if total == 0:
            raise ArtifactError(f"{art.url}: label member {m} is empty")
        result[m] = {
            "pixels": total,
            "ignore_share": float(c[IGNORE] / total),
            "share": {CLASS_NAMES[k]: float(c[k] / total) for k in range(NUM_CLASSES)},
            "invalid_pixels": int(c[NUM_CLASSES:IGNORE].sum() + c[IGNORE + 1 :].sum()),
        }
    return result
