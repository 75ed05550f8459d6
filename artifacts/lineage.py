"""The commit marker: written last, it is what turns a folder into an artifact, and it records lineage."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import clouds
from artifacts.errors import ArtifactError
from artifacts.fence import check_fences
from artifacts.storage import Folder

COMMIT_MARKER = "_COMMITTED.json"
MANIFEST = "manifest.parquet"


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout (and '+dirty' if it has edits)."""
    version = clouds.__version__
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5,
            )
            version += f"+g{rev.stdout.strip()}" + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return version


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_record(url: str) -> dict[str, Any]:
    """How a consumer names one input: its URL and the hash that pins its exact content."""
    lineage = read_lineage(url)
    return {"url": url, "stage": lineage.get("stage"), "content_hash": lineage.get("content_hash")}


def write_marker(
    folder: Folder,
    *,
    stage: str,
    config_hash: str,
    inputs: list[dict[str, Any]],
    params: dict[str, Any],
    stats: dict[str, Any],
    content_hash: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    marker = {
        "format": "clouds-artifact/1",
        "stage": stage,
        "config_hash": config_hash,
        "code_version": code_version(),
        "inputs": inputs,
        "params": params,
        "stats": stats,
        "content_hash": content_hash,
        "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    try:
        payload = json.dumps(marker, indent=2, sort_keys=True, default=str).encode()
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"lineage of {folder.url} is not JSON-serialisable: {err}") from err
    check_fences(folder, f"the commit of {folder.url}")  # the marker is what publishes: last chance to refuse
    folder.write_atomic(COMMIT_MARKER, payload)
    return marker


def read_lineage(url: str) -> dict[str, Any]:
    """The commit marker of an artifact; refuses folders that were never committed."""
    folder = Folder.at(url)
    if not folder.exists():
        raise ArtifactError(f"artifact {url} does not exist")
    if not folder.exists(COMMIT_MARKER):
        raise ArtifactError(
            f"{url} is not a committed artifact (no {COMMIT_MARKER}): the stage that writes it did not finish; "
            "rerun that stage"
        )
    where = folder.url_of(COMMIT_MARKER)
    try:
        lineage = json.loads(folder.read_bytes(COMMIT_MARKER))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{where} is corrupt: {err}") from err
    except OSError as err:  # a folder or a symlink loop in the marker's place
        raise ArtifactError(f"{where} cannot be read: {err}") from err
    if not isinstance(lineage, dict):
        # Every caller indexes the marker by field name; a list or a number there is damage, not lineage.
        raise ArtifactError(f"{where} is corrupt: expected a JSON object, got {type(lineage).__name__}")
    return lineage


def is_committed(url: str) -> bool:
    try:
        folder = Folder.at(url)
        return folder.exists(COMMIT_MARKER)
    except ArtifactError:
        return False
