"""Reading a committed artifact: manifest, lineage, and decoded samples one shard at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from artifacts.codecs import decode_member
from artifacts.errors import ArtifactError
from artifacts.lineage import MANIFEST, read_lineage, sha256_bytes
from artifacts.manifest import read_manifest
from artifacts.shards import iter_shard_raw
from artifacts.storage import Folder


class Artifact:
    """A committed artifact folder. Construct with `open_artifact(url)`."""

    def __init__(self, url: str, lineage: dict[str, Any]):
        self.url = url.rstrip("/")
        self.folder = Folder.at(url)
        self.lineage = lineage

    @classmethod
    def open(cls, url: str) -> Artifact:
        lineage = read_lineage(str(url))
        if "shards" not in lineage:
            raise ArtifactError(f"{url} is a committed folder artifact ({lineage.get('stage')}), not a sharded one")
        return cls(str(url), lineage)

    @property
    def stage(self) -> str:
        return self.lineage["stage"]

    @property
    def shards(self) -> list[str]:
        return list(self.lineage["shards"])

    @property
    def num_samples(self) -> int:
        return int(self.lineage["num_samples"])

    @cached_property
    def manifest(self) -> pa.Table:
        data = self.folder.read_bytes(MANIFEST)
        if sha256_bytes(data) != self.lineage.get("manifest_sha256"):
            raise ArtifactError(
                f"manifest {self.folder.url_of(MANIFEST)} does not match the checksum in its commit marker: "
                "the artifact was modified after it was committed"
            )
        return read_manifest(data, self.folder.url_of(MANIFEST))

    def _shard_rows(self, shard: str) -> dict[str, dict[str, Any]]:
        """Manifest rows of one shard only, so reading memory stays flat however many shards there are."""
        table = self.manifest.select(["key", "shard", "members", "member_sha256"])
        rows = table.filter(pc.equal(table.column("shard"), shard)).to_pylist()
        return {r["key"]: r for r in rows}

    @property
    def keys(self) -> list[str]:
        return self.manifest.column("key").to_pylist()

    def shard_url(self, shard: str) -> str:
        return self.folder.url_of(shard)

    def _check(self, rows: dict[str, dict[str, Any]], shard: str, sample: dict[str, Any], verify: bool) -> None:
        key = sample["__key__"]
        where = f"{self.folder.url_of(shard)}, sample {key!r}"
        row = rows.get(key)
        if row is None:
            raise ArtifactError(f"{where}: not listed in the manifest for this shard")
        members = sorted(m for m in sample if not m.startswith("__"))
        if members != sorted(row["members"]):
            missing = sorted(set(row["members"]) - set(members))
            raise ArtifactError(f"{where}: members {missing or members} disagree with the manifest {row['members']}")
        if verify:
            hashes = dict(row["member_sha256"])
            for m in members:
                if sha256_bytes(sample[m]) != hashes[m]:
                    raise ArtifactError(f"{where}: member {m!r} fails its sha256 check (corrupt data)")

    def iter_samples(
        self,
        shards: Iterable[str] | None = None,
        *,
        decode: bool = True,
        verify: bool = False,
        members: Iterable[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Samples in manifest order, one shard at a time (so parallel tasks can each take shards)."""
        wanted = set(members) if members is not None else None
        for shard in self.shards if shards is None else list(shards):
            if shard not in self.lineage["shards"]:
                raise ArtifactError(f"{self.url} has no shard {shard!r}")
            count, rows = 0, self._shard_rows(shard)
            for raw in iter_shard_raw(self.folder, shard):
                self._check(rows, shard, raw, verify)
                count += 1
                out: dict[str, Any] = {"__key__": raw["__key__"], "__shard__": shard}
                for m, data in raw.items():
                    if m.startswith("__") or (wanted is not None and m not in wanted):
                        continue
                    try:
                        out[m] = decode_member(m, data) if decode else data
                    except Exception as err:  # PIL/json/numpy each raise their own types on bad bytes
                        raise ArtifactError(
                            f"{self.folder.url_of(shard)}, sample {raw['__key__']!r}: member {m!r} cannot be decoded: {err}"
                        ) from err
                yield out
            if count != len(rows):
                raise ArtifactError(f"{self.folder.url_of(shard)} holds {count} samples, the manifest lists {len(rows)}")

    def get(self, key: str, *, decode: bool = True) -> dict[str, Any]:
        keys = self.manifest.column("key")
        match = self.manifest.filter(pc.equal(keys, key)).column("shard").to_pylist()
        if not match:
            raise KeyError(f"{self.url} has no sample {key!r}")
        row = {"shard": match[0]}
        for sample in self.iter_samples([row["shard"]], decode=decode):
            if sample["__key__"] == key:
                return sample
        raise ArtifactError(f"{self.url}: sample {key!r} listed in the manifest is not in {row['shard']}")

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return f"Artifact({self.url!r}, stage={self.stage!r}, samples={self.num_samples}, shards={len(self.shards)})"


def open_artifact(url: str) -> Artifact:
    return Artifact.open(url)
