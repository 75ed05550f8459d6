"""What `clouds inspect` reports: an artifact's size, members, domains, lineage and class pixel shares."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from artifacts.errors import ArtifactError
from artifacts.lineage import COMMIT_MARKER, read_lineage, sha256_bytes
from artifacts.reader import Artifact
from artifacts.storage import Folder
from clouds.labels import CLASS_NAMES, IGNORE, NUM_CLASSES


def label_members(members: list[str]) -> list[str]:
    return sorted(m for m in members if m == "seg.png" or m.endswith(".seg.png"))


def default_verify(url: str) -> bool:
    """Checking every member means reading every byte: cheap on a local disk, a full download elsewhere."""
    return Folder.at(url).is_local


def summarize(url: str, class_pixels: bool = True, verify: bool | None = None) -> dict[str, Any]:
    """A JSON-able description of the artifact at `url` (folder artifacts get their lineage and files).

    Opening cross-checks the marker, manifest and shard files (errors raise). With `verify` (default:
    on for local storage) every member's sha256 is checked as well; each bad member becomes one entry
    of `problems` instead of an exception, so all of them are reported at once.
    """
    lineage = read_lineage(url)
    check = default_verify(url) if verify is None else verify
    if "shards" not in lineage:
        problems = _folder_problems(url, lineage) if check else []
        return {
            "url": url, "committed": True, "kind": "folder", "stage": lineage.get("stage"),
            "files": lineage.get("files", {}), "lineage": lineage, "shards": 0, "samples": 0, "keys": [],
            "class_pixels": {}, "verified": check, "problems": problems,
        }
    art = Artifact.open(url, verify=check)
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
        "verified": check,
        "problems": [],
    }
    labels = label_members(members) if class_pixels else []
    if labels:
        out["class_pixels"] = _class_pixels(art, labels, out["problems"])
    elif check:
        out["problems"] = art.check_members()
    return out


def _folder_problems(url: str, lineage: dict[str, Any]) -> list[str]:
    """Each file of a folder artifact against the hash in its marker: one message per bad file."""
    folder, problems = Folder.at(url), []
    recorded = lineage.get("files")
    if not isinstance(recorded, dict):
        return [f"{folder.url_of(COMMIT_MARKER)}: field 'files' must map file names to sha256, got {recorded!r}"]
    for name, digest in sorted(recorded.items()):
        try:
            actual = sha256_bytes(folder.read_bytes(name))
        except (ArtifactError, OSError) as err:
            problems.append(f"{url}: file {name} listed in the commit marker cannot be read: {err}")
            continue
        if actual != digest:
            problems.append(f"{url}: file {name} fails its sha256 check (modified after commit)")
    return problems


def _class_pixels(art: Artifact, members: list[str], problems: list[str]) -> dict[str, dict[str, Any]]:
    """Pixel share of each class per label member (ignore counted apart), over the whole artifact.

    The same pass checks members (when the artifact was opened to verify): bad samples go to `problems`
    and are left out of the counts, so one read both counts and verifies.
    """
    counts = {m: np.zeros(256, dtype=np.int64) for m in members}
    for sample in art.iter_samples(members=members, problems=problems):
        for m in members:
            if m in sample:
                counts[m] += np.bincount(np.asarray(sample[m]).ravel(), minlength=256)
    result = {}
    for m, c in counts.items():
        total = int(c.sum())
        if total == 0:
            if problems:  # every sample holding it was bad: the problems say why
                continue
            raise ArtifactError(f"{art.url}: label member {m} is empty")
        result[m] = {
            "pixels": total,
            "ignore_share": float(c[IGNORE] / total),
            "share": {CLASS_NAMES[k]: float(c[k] / total) for k in range(NUM_CLASSES)},
            "invalid_pixels": int(c[NUM_CLASSES:IGNORE].sum() + c[IGNORE + 1 :].sum()),
        }
    return result
