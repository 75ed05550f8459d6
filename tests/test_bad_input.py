"""Bad input not covered elsewhere (docs/BAD_INPUT.md lists every case and its test): a full disk, storage
that refuses connections, NaN images handed to the writer, and a damaged commit marker."""

from __future__ import annotations

import errno
from io import BytesIO

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

from artifacts import ArtifactError, ArtifactWriter, is_committed, open_artifact
from clouds.config import ArtifactConfig, DatasetSpec


class _LimitedFile(MemoryFile):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        fs = self.fs
        used = sum(f.getbuffer().nbytes for f in fs.store.values()) + len(data)
        if used > fs.capacity or any(name in self.path for name in fs.fail_names):
            raise OSError(errno.ENOSPC, "No space left on device", self.path)
        return BytesIO.write(self, data)


class FullDiskFileSystem(MemoryFileSystem):
    """An in-memory disk of `capacity` bytes whose writes fail with ENOSPC once full (or for `fail_names`)."""

    protocol = "fulldisk"
    store: dict = {}
    pseudo_dirs = [""]
    capacity = 1 << 30
    fail_names: tuple[str, ...] = ()

    def _open(self, path, mode="rb", **kwargs):
        if mode in {"wb", "w+b", "xb", "x+b"}:
            path = self._strip_protocol(path)
            f = _LimitedFile(self, path)
            f.commit()
            return f
        return super()._open(path, mode, **kwargs)


class DownFileSystem(MemoryFileSystem):
    """Storage that cannot be reached: every call is refused, as s3fs/gcsfs do when the endpoint is down."""

    protocol = "downfs"
    store: dict = {}
    pseudo_dirs = [""]

    def _refuse(self, *args, **kwargs):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    info = ls = makedirs = _open = _refuse


@pytest.fixture
def full_disk(monkeypatch):
    fsspec.register_implementation("fulldisk", FullDiskFileSystem, clobber=True)
    monkeypatch.setattr(FullDiskFileSystem, "store", {})
    monkeypatch.setattr(FullDiskFileSystem, "pseudo_dirs", [""])
    return FullDiskFileSystem


def _toycity(count: int = 6) -> DatasetSpec:
    return DatasetSpec(name="src", kind="toycity", domain="sim", count=count, seed=1, height=32, width=64)


def test_disk_full_while_writing_a_shard_names_the_file_and_commits_nothing(full_disk, monkeypatch):
    from stages.ingest.stage import ingest

    monkeypatch.setattr(full_disk, "capacity", 6000)  # room for the progress file and part of one shard
    with pytest.raises(ArtifactError, match=r"cannot (write|finish) fulldisk://out/shard-000000\.tar.*No space left"):
        ingest(_toycity(), "fulldisk://out", ArtifactConfig(shard_max_samples=4))
    assert not is_committed("fulldisk://out")
    with pytest.raises(ArtifactError, match="not a committed artifact"):
        open_artifact("fulldisk://out")


def test_disk_full_at_the_commit_marker_leaves_no_marker_and_the_rerun_commits(full_disk, monkeypatch):
    from stages.ingest.stage import ingest

    monkeypatch.setattr(full_disk, "fail_names", ("_COMMITTED",))
    with pytest.raises(ArtifactError, match=r"cannot write fulldisk://out/_COMMITTED\.json: .*No space left"):
        ingest(_toycity(), "fulldisk://out", ArtifactConfig(shard_max_samples=4))
    assert not is_committed("fulldisk://out")
    assert not [p for p in full_disk.store if "_COMMITTED" in p]  # the temporary marker was removed too
    monkeypatch.setattr(full_disk, "fail_names", ())  # space freed: the rerun keeps the shards and commits
    art = ingest(_toycity(), "fulldisk://out", ArtifactConfig(shard_max_samples=4))
    assert art.num_samples == 6 and len(art.shards) == 2


def test_storage_that_refuses_connections():
    fsspec.register_implementation("downfs", DownFileSystem, clobber=True)
    with pytest.raises(ArtifactError, match="cannot reach downfs://bucket/x/_COMMITTED.json: .*Connection refused"):
        ArtifactWriter("downfs://bucket/x", stage="s", config_hash="h")
    # An unreachable store is reported as such, never as a missing artifact.
    with pytest.raises(ArtifactError, match="cannot reach downfs://bucket/x: .*Connection refused"):
        open_artifact("downfs://bucket/x")
    assert not is_committed("downfs://bucket/x")


def test_unreachable_http_store_is_not_reported_as_missing():
    """fsspec's HTTP store raises FileNotFoundError for a refused connection; the cause is kept and named."""
    with pytest.raises(ArtifactError, match=r"cannot reach http://127\.0\.0\.1:9/x: .*Connect"):
        open_artifact("http://127.0.0.1:9/x")


@pytest.mark.parametrize("url", ["s3://bucket/run/x", "gs://bucket/run/x"])
def test_storage_without_its_client_library_names_the_url(url):
    with pytest.raises(ArtifactError, match=rf"cannot open storage URL '{url}'"):
        open_artifact(url)


def test_nan_or_float_image_is_refused_naming_sample_and_member():
    w = ArtifactWriter("memory://nan", stage="s", config_hash="h")
    image = np.full((8, 8, 3), np.nan, np.float32)
    with pytest.raises(ArtifactError, match=r"sample 'k0': cannot encode member 'png'.*must be uint8, got float32"):
        w.write_shard(0, [{"__key__": "k0", "png": image}])
    assert not w.is_shard_complete(0)


def test_damaged_commit_marker_is_named():
    w = ArtifactWriter("memory://m", stage="s", config_hash="h")
    w.write_shard(0, [{"__key__": "k0", "txt": "x"}])
    w.commit()
    with fsspec.open("memory://m/_COMMITTED.json", "wb") as f:
        f.write(b'{"stage": "s", ')
    with pytest.raises(ArtifactError, match=r"memory://m/_COMMITTED\.json is corrupt"):
        open_artifact("memory://m")


def test_every_case_in_the_bad_input_table_cites_an_existing_test():
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    table = (repo / "docs" / "BAD_INPUT.md").read_text()
    rows = [line for line in table.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) >= 15
    for row in rows:
        cited = re.findall(r"(tests/\w+\.py)::(\w+)", row)
        assert cited, f"no test cited for: {row[:80]}"
        for path, name in cited:
            assert re.search(rf"^def {name}\(", (repo / path).read_text(), re.M), f"{path}::{name} does not exist"


# -- distributed execution ---------------------------------------------------------------------------
def test_worker_cannot_join_another_runs_output():
    """A Ray worker attaches to the folder its driver prepared; a different config or a finished
    artifact is refused, and attaching never deletes a sibling worker's in-flight temporary file."""
    driver = ArtifactWriter("memory://out", stage="s", config_hash="h1")
    fsspec.filesystem("memory").pipe("/out/.shard-000001.tar.abc.tmp", b"half a shard")
    ArtifactWriter("memory://out", stage="s", config_hash="h1", attach=True)
    assert fsspec.filesystem("memory").exists("/out/.shard-000001.tar.abc.tmp")
    with pytest.raises(ArtifactError, match="being written by another run"):
        ArtifactWriter("memory://out", stage="s", config_hash="h2", attach=True)
    with pytest.raises(ArtifactError, match="no run in progress to join"):
        ArtifactWriter("memory://elsewhere", stage="s", config_hash="h1", attach=True)
    driver.write_shard(0, [{"__key__": "k0", "txt": "x"}])
    driver.commit()
    with pytest.raises(ArtifactError, match="already committed"):
        ArtifactWriter("memory://out", stage="s", config_hash="h1", attach=True)


def test_unreachable_ray_address_fails_in_seconds():
    """Ray itself retries a dead head node for minutes; the address is probed first and named."""
    from pipelines.ray_cluster import check_reachable

    with pytest.raises(ConnectionError, match=r"cannot reach the Ray cluster at executor.address '127.0.0.1:9'"):
        check_reachable("127.0.0.1:9")
    with pytest.raises(ConnectionError, match=r"'ray://127.0.0.1:9'"):
        check_reachable("ray://127.0.0.1:9")
    with pytest.raises(ValueError, match="is not 'auto', 'host:port' or 'ray://host:port'"):
        check_reachable("head-node")


def test_executor_resources_for_an_unknown_stage_are_refused():
    from clouds.config import ConfigError, parse_config

    tree = {"data": {"source": {"name": "s", "kind": "toycity", "domain": "sim", "count": 2}},
            "executor": {"kind": "ray", "resources": {"synthesise": {"num_gpus": 1}}}}
    with pytest.raises(ConfigError, match=r"executor.resources: .*no stage that runs on Ray named \['synthesise'\]"):
        parse_config(tree, "cluster.yaml")
    tree["executor"] = {"kind": "dask"}
    with pytest.raises(ConfigError, match=r"executor.kind: Input should be 'local' or 'ray'"):
        parse_config(tree, "cluster.yaml")
    tree["executor"] = {"kind": "local", "train_workers": 2}
    with pytest.raises(ConfigError, match=r"train_workers > 0 trains on Ray Train: it needs executor.kind 'ray'"):
        parse_config(tree, "cluster.yaml")
