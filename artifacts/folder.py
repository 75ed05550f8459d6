"""Artifacts that hold files rather than shards (checkpoints, evaluation reports)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from artifacts.errors import ArtifactError
from artifacts.lineage import COMMIT_MARKER, input_record, read_lineage, write_marker
from artifacts.reader import Artifact
from artifacts.storage import Folder


def _file_hashes(folder: Folder) -> dict[str, str]:
    hashes = {}
    for path in sorted(folder.fs.find(folder.path)):
        rel = path[len(folder.path.rstrip("/")) + 1 :]
        if rel == COMMIT_MARKER or rel.startswith("_progress") or rel.split("/")[-1].startswith("."):
            continue
        with folder.fs.open(path, "rb") as f:
            hashes[rel] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def commit_folder(
    url: str,
    *,
    stage: str,
    config_hash: str,
    inputs: Iterable[Artifact | str] = (),
    params: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
    content_files: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Commit a folder whose files are complete: record each file's hash, then write the marker last.

    Every file is hashed for verification. The content hash that consumers pin (and that decides
    whether downstream stages must rerun) covers `content_files` only when given: files such as a
    metrics log with wall-clock times differ between two otherwise identical runs.
    """
    folder = Folder.at(url)
    if not folder.exists():
        raise ArtifactError(f"cannot commit {url}: the folder does not exist")
    files = _file_hashes(folder)
    if not files:
        raise ArtifactError(f"cannot commit {url}: the folder is empty")
    pinned = files if content_files is None else {k: v for k, v in files.items() if k in set(content_files)}
    if content_files is not None and len(pinned) != len(set(content_files)):
        missing = sorted(set(content_files) - set(files))
        raise ArtifactError(f"cannot commit {url}: content files {missing} are missing")
    digest = hashlib.sha256("\n".join(f"{k}={v}" for k, v in pinned.items()).encode()).hexdigest()
    return write_marker(
        folder,
        stage=stage,
        config_hash=config_hash,
        inputs=[input_record(i.url if isinstance(i, Artifact) else str(i)) for i in inputs],
        params=params or {},
        stats=stats or {},
        content_hash=digest,
        extra={"files": files},
    )


def verify_folder(url: str) -> dict[str, Any]:
    """Check every file of a committed folder artifact against the hashes in its marker."""
    lineage = read_lineage(url)
    recorded = lineage.get("files")
    if recorded is None:
        raise ArtifactError(f"{url} is a sharded artifact; open it with open_artifact")
    actual = _file_hashes(Folder.at(url))
    for name, digest in recorded.items():
        if name not in actual:
            raise ArtifactError(f"{url}: file {name} listed in the commit marker is missing")
        if actual[name] != digest:
            raise ArtifactError(f"{url}: file {name} fails its sha256 check (modified after commit)")
    return lineage
