"""Writing an artifact: atomic shards, resumable after a crash, committed by a marker written last."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from artifacts.errors import ArtifactError
from artifacts.fence import check_fences
from artifacts.lineage import COMMIT_MARKER, MANIFEST, input_record, sha256_bytes, write_marker
from artifacts.manifest import build_manifest, content_hash, manifest_bytes
from artifacts.reader import Artifact
from artifacts.shards import SHARD_RE, ShardSink, encode_sample, part_name, shard_name
from artifacts.storage import Folder

log = logging.getLogger(__name__)

PROGRESS = "_IN_PROGRESS.json"
LazySample = tuple[str, Callable[[], dict[str, Any]]]


class ArtifactWriter:
    """Writes one artifact folder.

    Work already done by an earlier, interrupted run with the same stage and config hash is kept
    (complete shards); anything else in the folder is discarded, so a rerun with the same inputs and
    seed ends byte-identical to an uninterrupted run.
    """

    def __init__(
        self,
        url: str,
        *,
        stage: str,
        config_hash: str,
        inputs: Iterable[Artifact | str] = (),
        params: dict[str, Any] | None = None,
        shard_max_samples: int = 256,
        shard_max_bytes: int = 1 << 30,
        overwrite: bool = False,
        attach: bool = False,
    ):
        """`attach=True` joins a run that another process prepared (a worker of a distributed stage): it
        checks the folder is that run's and touches nothing else, since sibling workers may be mid-shard."""
        if shard_max_samples < 1 or shard_max_bytes < 1:
            raise ValueError("shard_max_samples and shard_max_bytes must be positive")
        if overwrite and attach:
            raise ValueError("a writer attached to another process's run cannot also overwrite it")
        self.folder = Folder.at(url)
        self.stage, self.config_hash = stage, config_hash
        self.params = params or {}
        self.inputs = [input_record(i.url if isinstance(i, Artifact) else str(i)) for i in inputs]
        self.max_samples, self.max_bytes = shard_max_samples, shard_max_bytes
        if attach:
            self._attach()
        else:
            self._prepare(overwrite)

    @property
    def url(self) -> str:
        return self.folder.url

    def _identity(self) -> dict[str, Any]:
        return {"stage": self.stage, "config_hash": self.config_hash, "inputs": self.inputs}

    def _attach(self) -> None:
        """Input URLs may be spelled differently in another process (absolute vs relative paths), so the
        run is matched by stage, config hash and the content hashes of its inputs."""
        def pinned(identity: dict[str, Any]) -> tuple[Any, ...]:
            hashes = tuple(i.get("content_hash") for i in identity.get("inputs", []))
            return identity.get("stage"), identity.get("config_hash"), hashes

        if self.folder.exists(COMMIT_MARKER):
            raise ArtifactError(f"{self.url} is already committed; a worker cannot add shards to it")
        if not self.folder.exists(PROGRESS):
            raise ArtifactError(f"{self.url} has no run in progress to join (no {PROGRESS}); is the storage "
                                "shared between the driver and this worker?")
        try:
            previous = json.loads(self.folder.read_bytes(PROGRESS))
        except json.JSONDecodeError as err:
            raise ArtifactError(f"{self.url}/{PROGRESS} is not valid JSON: {err}") from None
        if pinned(previous) != pinned(self._identity()):
            raise ArtifactError(f"{self.url} is being written by another run (stage, config or inputs differ from "
                                "this worker's); driver and workers must run the same code and config")

    def _prepare(self, overwrite: bool) -> None:
        check_fences(self.folder, f"preparing {self.url}")  # before it may discard another run's partial work
        if self.folder.exists(COMMIT_MARKER):
            if not overwrite:
                raise ArtifactError(f"{self.url} is already a committed artifact; pass overwrite=True to replace it")
            log.info("replacing committed artifact %s", self.url)
            self.folder.remove()
        elif self.folder.exists():
            previous = None
            if self.folder.exists(PROGRESS):
                try:
                    previous = json.loads(self.folder.read_bytes(PROGRESS))
                except (json.JSONDecodeError, ArtifactError):
                    previous = None
            if previous != self._identity():
                log.info("discarding unrelated partial work in %s", self.url)
                self.folder.remove()
        self.folder.makedirs()
        self.folder.write_atomic(PROGRESS, json.dumps(self._identity(), sort_keys=True).encode())
        for name in self.folder.listdir():
            if name.startswith(".") and name.endswith(".tmp"):
                self.folder.remove(name)

    # -- shards -------------------------------------------------------------------------------
    def is_shard_complete(self, index: int) -> bool:
        return self.folder.exists(shard_name(index)) and self.folder.exists(part_name(index))

    def complete_shards(self) -> list[int]:
        found = (SHARD_RE.match(n) for n in self.folder.listdir())
        return sorted(int(m.group(1)) for m in found if m and self.is_shard_complete(int(m.group(1))))

    def _part(self, index: int) -> dict[str, Any]:
        return json.loads(self.folder.read_bytes(part_name(index)))

    def _part_rows(self, index: int) -> list[dict[str, Any]]:
        return self._part(index)["rows"]

    def shard_stats(self) -> dict[int, dict[str, Any]]:
        """Statistics each complete shard was written with (kept across resumes, unlike memory)."""
        return {i: self._part(i)["stats"] for i in self.complete_shards()}

    def write_shard(
        self, index: int, samples: Iterable[dict[str, Any]], stats: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Write shard `index` from scratch; it appears only once every sample is in it.

        `stats` may be filled by the sample generator while it runs; it is saved with the shard.
        """
        sink = ShardSink(self.folder, index)
        try:
            for sample in samples:
                key, encoded = encode_sample(sample)
                sink.add(key, encoded, sample)
        except BaseException:
            sink.abort()
            raise
        if not sink.rows:
            sink.abort()
            raise ArtifactError(f"shard {index} of {self.url} would be empty")
        return sink.finish(stats)

    def write_stream(self, items: Iterable[LazySample]) -> int:
        """Write lazily built samples in order, rolling over shards by count and bytes.

        On a rerun, samples whose key is already in a complete shard are skipped before they are built.
        Returns the number of samples written in this call.
        """
        done = self.complete_shards()
        if done and done != list(range(len(done))):
            raise ArtifactError(f"{self.url}: complete shards {done} are not contiguous; cannot resume a stream")
        done_keys = {r["key"] for i in done for r in self._part_rows(i)}
        index, sink, written = len(done), None, 0
        try:
            for key, build in items:
                if key in done_keys:
                    continue
                sample = build()
                if sample.get("__key__") != key:
                    raise ArtifactError(f"sample built for key {key!r} carries key {sample.get('__key__')!r}")
                key, encoded = encode_sample(sample)
                size = sum(len(b) for b in encoded.values())
                if sink is not None and (len(sink.rows) >= self.max_samples or sink.bytes + size > self.max_bytes):
                    sink.finish()
                    index, sink = index + 1, None
                if sink is None:
                    sink = ShardSink(self.folder, index)
                sink.add(key, encoded, sample)
                written += 1
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        if sink is not None:
            sink.finish()
        return written

    # -- commit -------------------------------------------------------------------------------
    def commit(self, stats: dict[str, Any] | None = None, expected_shards: int | None = None) -> Artifact:
        """Build the manifest from every complete shard and write the commit marker last."""
        shards = self.complete_shards()
        if not shards:
            raise ArtifactError(f"{self.url}: nothing to commit (no complete shard)")
        if shards != list(range(len(shards))) or (expected_shards is not None and len(shards) != expected_shards):
            want = expected_shards if expected_shards is not None else shards[-1] + 1
            missing = sorted(set(range(want)) - set(shards))
            raise ArtifactError(f"{self.url}: cannot commit, shards {missing} are missing or incomplete")
        rows = [r for i in shards for r in self._part_rows(i)]
        seen: set[str] = set()
        for r in rows:
            if r["key"] in seen:
                raise ArtifactError(f"{self.url}: sample key {r['key']!r} appears twice (second in {r['shard']})")
            seen.add(r["key"])
        data = manifest_bytes(build_manifest(rows))
        check_fences(self.folder, f"the commit of {self.url}")  # nothing of a run that lost its lock is committed
        self.folder.write_atomic(MANIFEST, data)
        write_marker(
            self.folder,
            stage=self.stage,
            config_hash=self.config_hash,
            inputs=self.inputs,
            params=self.params,
            stats=stats or {},
            content_hash=content_hash(rows),
            extra={
                "shards": [shard_name(i) for i in shards],
                "num_samples": len(rows),
                "num_shards": len(shards),
                "bytes": sum(r["bytes"] for r in rows),
                "manifest_sha256": sha256_bytes(data),
            },
        )
        self.folder.remove("_parts")
        self.folder.remove(PROGRESS)
        return Artifact.open(self.url)
