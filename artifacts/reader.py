"""Reading a committed artifact: manifest, lineage, and decoded samples one shard at a time.

Opening cross-checks the commit marker against the manifest and the shard files on storage, so an
edited marker (a shard dropped from its list, changed counts or content hash) fails by name instead of
making readers return fewer samples. Reading checks every member's sha256 against the manifest as the
bytes stream by (on by default; `verify=False` is for trusted storage), so bytes changed after commit
that still decode -- a label swapped between two samples, an edited json -- are refused by name too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from artifacts.codecs import decode_member
from artifacts.errors import ArtifactError
from artifacts.lineage import COMMIT_MARKER, MANIFEST, read_lineage, sha256_bytes
from artifacts.manifest import duplicate_keys, manifest_content_hash, read_manifest, shard_order
from artifacts.shards import SHARD_RE, iter_shard_raw
from artifacts.storage import Folder


class Artifact:
    """A committed artifact folder. Construct with `open_artifact(url)`.

    `verify` is the default of `iter_samples`: whether each member's bytes are checked against the
    sha256 the manifest recorded at commit.
    """

    def __init__(self, url: str, lineage: dict[str, Any], *, verify: bool = True):
        self.url = url.rstrip("/")
        self.folder = Folder.at(url)
        self.lineage = lineage
        self.verify = verify

    @classmethod
    def open(cls, url: str, *, verify: bool = True) -> Artifact:
        """Open and cross-check marker, manifest and shard files; fails naming the first disagreement."""
        lineage = read_lineage(str(url))
        if "shards" not in lineage:
            raise ArtifactError(f"{url} is a committed folder artifact ({lineage.get('stage')}), not a sharded one")
        art = cls(str(url), lineage, verify=verify)
        art.check_commit()
        return art

    @property
    def stage(self) -> str:
        return self.lineage["stage"]

    @property
    def shards(self) -> list[str]:
        return list(self.lineage["shards"])

    @property
    def num_samples(self) -> int:
        return int(self.lineage["num_samples"])

    @property
    def marker_url(self) -> str:
        return self.folder.url_of(COMMIT_MARKER)

    @cached_property
    def manifest(self) -> pa.Table:
        try:
            data = self.folder.read_bytes(MANIFEST)
        except OSError as err:  # a folder or a symlink loop in the manifest's place
            raise ArtifactError(f"manifest {self.folder.url_of(MANIFEST)} cannot be read: {err}") from err
        if sha256_bytes(data) != self.lineage.get("manifest_sha256"):
            raise ArtifactError(
                f"manifest {self.folder.url_of(MANIFEST)} does not match the checksum in its commit marker: "
                "the artifact was modified after it was committed"
            )
        return read_manifest(data, self.folder.url_of(MANIFEST))

    # -- integrity of the commit ----------------------------------------------------------------
    def check_commit(self) -> None:
        """The marker, the manifest and the shard files must tell the same story.

        Readers take the shard list and counts from the marker: a marker edited after commit would
        otherwise shrink or skew every read without an error. Costs one manifest read and one listing.
        """
        check_marker_fields(self.lineage, self.marker_url)
        check_marker_against_manifest(self.lineage, self.manifest, self.marker_url, self.folder.url_of(MANIFEST))
        check_shard_files(self.folder, self.shards, self.marker_url)

    # -- samples --------------------------------------------------------------------------------
    def _shard_rows(self, shard: str) -> dict[str, dict[str, Any]]:
        """Manifest rows of one shard only, so reading memory stays flat however many shards there are."""
        table = self.manifest.select(["key", "shard", "members", "member_sha256"])
        rows = table.filter(pc.equal(table.column("shard"), shard)).to_pylist()
        return {r["key"]: {**r, "member_sha256": dict(r["member_sha256"])} for r in rows}

    @property
    def keys(self) -> list[str]:
        return self.manifest.column("key").to_pylist()

    def shard_url(self, shard: str) -> str:
        return self.folder.url_of(shard)

    def _problems(self, rows: dict[str, dict[str, Any]], shard: str, sample: dict[str, Any], verify: bool) -> list[str]:
        """Everything wrong with one sample of a shard, one message per bad member (empty when sound)."""
        key = sample["__key__"]
        where = f"{self.folder.url_of(shard)}, sample {key!r}"
        row = rows.get(key)
        if row is None:
            return [f"{where}: not listed in the manifest for this shard"]
        members = sorted(m for m in sample if not m.startswith("__"))
        if members != sorted(row["members"]):
            missing = sorted(set(row["members"]) - set(members))
            return [f"{where}: members {missing or members} disagree with the manifest {row['members']}"]
        if not verify:
            return []
        hashes = row["member_sha256"]
        return [
            f"{where}: member {m!r} fails its sha256 check (corrupt data)"
            for m in members
            if sha256_bytes(sample[m]) != hashes.get(m)
        ]

    def iter_samples(
        self,
        shards: Iterable[str] | None = None,
        *,
        decode: bool = True,
        verify: bool | None = None,
        members: Iterable[str] | None = None,
        problems: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Samples in manifest order, one shard at a time (so parallel tasks can each take shards).

        `verify` (default: the artifact's `verify`) checks every member's sha256, also of members not
        asked for. With a `problems` list, each bad sample or shard is appended to it and skipped instead
        of raising, so a checker reports every bad member of the artifact in one pass.
        """
        check = self.verify if verify is None else verify
        wanted = set(members) if members is not None else None
        for shard in self.shards if shards is None else list(shards):
            if shard not in self.lineage["shards"]:
                raise ArtifactError(f"{self.url} has no shard {shard!r}")
            try:
                yield from self._shard_samples(shard, decode, check, wanted, problems)
            except ArtifactError as err:
                if problems is None:
                    raise
                problems.append(str(err))

    def _shard_samples(
        self, shard: str, decode: bool, verify: bool, wanted: set[str] | None, problems: list[str] | None
    ) -> Iterator[dict[str, Any]]:
        rows, seen = self._shard_rows(shard), 0
        try:
            for raw in iter_shard_raw(self.folder, shard):
                seen += 1
                bad = self._problems(rows, shard, raw, verify)
                if bad:
                    if problems is None:
                        raise ArtifactError(bad[0])
                    problems.extend(bad)
                    continue
                try:
                    out = self._decoded(shard, raw, decode, wanted)
                except ArtifactError as err:
                    if problems is None:
                        raise
                    problems.append(str(err))
                    continue
                yield out
        except OSError as err:  # permission denied, a symlink loop: anything but "missing", by name
            raise ArtifactError(f"shard {self.folder.url_of(shard)} cannot be read: {err}") from err
        if seen != len(rows):
            raise ArtifactError(f"{self.folder.url_of(shard)} holds {seen} samples, the manifest lists {len(rows)}")

    def _decoded(self, shard: str, raw: dict[str, Any], decode: bool, wanted: set[str] | None) -> dict[str, Any]:
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
        return out

    def check_members(self) -> list[str]:
        """Read every member of every shard and return one message per bad member, shard or sample."""
        problems: list[str] = []
        for _ in self.iter_samples(decode=False, verify=True, members=(), problems=problems):
            pass
        return problems

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


def open_artifact(url: str, *, verify: bool = True) -> Artifact:
    """A committed sharded artifact, cross-checked; `verify=False` skips member checksums on reads."""
    return Artifact.open(url, verify=verify)


# -- the cross-checks, as plain functions of what was read --------------------------------------------
def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_marker_fields(lineage: dict[str, Any], marker: str) -> None:
    """Types of the fields readers rely on; shard names are checked too, as a reader opens them as paths."""
    shards = lineage.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ArtifactError(f"{marker}: field 'shards' must be a non-empty list of shard names, got {shards!r}")
    for name in shards:
        if not isinstance(name, str) or not SHARD_RE.match(name):
            raise ArtifactError(f"{marker}: field 'shards' holds {name!r}, which is not a shard-NNNNNN.tar name")
    if len(set(shards)) != len(shards):
        twice = sorted({s for s in shards if shards.count(s) > 1})
        raise ArtifactError(f"{marker}: field 'shards' lists {twice} more than once")
    for field in ("num_samples", "num_shards", "bytes"):
        if (field in lineage or field == "num_samples") and not _is_count(lineage.get(field)):
            raise ArtifactError(f"{marker}: field {field!r} must be a count, got {lineage.get(field)!r}")
    for field in ("manifest_sha256", "content_hash"):
        if not isinstance(lineage.get(field), str):
            raise ArtifactError(f"{marker}: field {field!r} must be a sha256 hex string, got {lineage.get(field)!r}")


def check_marker_against_manifest(lineage: dict[str, Any], table: pa.Table, marker: str, manifest: str) -> None:
    """Shard list, counts and content hash of the marker against the manifest (whose checksum it pins)."""
    listed, in_manifest = list(lineage["shards"]), shard_order(table)
    per_shard = Counter(table.column("shard").to_pylist())
    for shard in in_manifest:
        if shard not in listed:
            raise ArtifactError(
                f"{marker}: field 'shards' lacks {shard!r}, which the manifest {manifest} lists with "
                f"{per_shard[shard]} samples"
            )
    for shard in listed:
        if shard not in in_manifest:
            raise ArtifactError(f"{marker}: field 'shards' lists {shard!r}, which has no sample in the manifest {manifest}")
    if listed != in_manifest:
        raise ArtifactError(f"{marker}: field 'shards' orders the shards differently from the manifest {manifest}")
    expected = {"num_samples": table.num_rows, "num_shards": len(in_manifest),
                "bytes": pc.sum(table.column("bytes")).as_py() or 0}
    for field, value in expected.items():
        if field in lineage and lineage[field] != value:
            raise ArtifactError(f"{marker}: field {field!r} is {lineage[field]} but the manifest {manifest} gives {value}")
    dups = duplicate_keys(table)
    if dups:
        raise ArtifactError(f"manifest {manifest}: sample key(s) {dups[:5]} are listed more than once")
    recomputed = manifest_content_hash(table)
    if lineage["content_hash"] != recomputed:
        raise ArtifactError(
            f"{marker}: field 'content_hash' ({lineage['content_hash'][:16]}…) does not match the hash of the "
            f"member checksums in the manifest {manifest} ({recomputed[:16]}…)"
        )


def _listing(folder: Folder) -> dict[str, dict[str, Any]] | None:
    """Entries of the folder by name, from one listing call (one LIST request on object storage);
    None from a store that cannot list folders (a plain HTTP server), whose shards are then asked one by one."""
    try:
        entries = folder.fs.ls(folder.path, detail=True)
    except (FileNotFoundError, NotImplementedError):
        return None
    except OSError as err:
        raise ArtifactError(f"cannot list {folder.url}: {err}") from err
    return {e["name"].rstrip("/").rsplit("/", 1)[-1]: e for e in entries}


def _shard_entry(folder: Folder, shard: str, listed: dict[str, Any] | None, marker: str) -> dict[str, Any]:
    """The shard's file info, following a symlink; a store that does not list is asked directly."""
    if listed is not None and listed.get("type") == "file" and not listed.get("islink"):
        return listed
    try:
        return folder.fs.info(folder.join(shard))
    except FileNotFoundError:
        raise ArtifactError(f"shard {folder.url_of(shard)} listed in {marker} field 'shards' is missing") from None
    except OSError as err:  # a symlink loop, permission denied
        raise ArtifactError(f"shard {folder.url_of(shard)} listed in {marker} cannot be read: {err}") from err


def check_shard_files(folder: Folder, shards: list[str], marker: str) -> None:
    """Every listed shard is a readable file, and no shard file is there that the marker does not list."""
    entries = _listing(folder)
    for shard in shards:
        info = _shard_entry(folder, shard, None if entries is None else entries.get(shard), marker)
        if info.get("type") != "file":
            kind = "a folder" if info.get("type") == "directory" else f"a {info.get('type')!r} entry"
            raise ArtifactError(f"shard {folder.url_of(shard)} listed in {marker} is {kind}, not a shard file")
    extra = sorted(n for n in entries or {} if SHARD_RE.match(n) and n not in shards)
    if extra:
        raise ArtifactError(
            f"{folder.url_of(extra[0])} is a shard file that {marker} field 'shards' does not list "
            f"({len(extra)} such file(s)); was a shard removed from the marker?"
        )
