"""The parquet manifest: one row per sample, built at commit from the shards' part files."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.errors import ArtifactError
from artifacts.lineage import sha256_bytes

BASE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("members", pa.list_(pa.string())),
        ("member_bytes", pa.map_(pa.string(), pa.int64())),
        ("member_sha256", pa.map_(pa.string(), pa.string())),
        ("bytes", pa.int64()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("domain", pa.string()),
    ]
)


def _meta_column(values: list[Any]) -> pa.Array:
    """Metadata columns keep their type when consistent and fall back to text when samples disagree."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def build_manifest(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {
        name: pa.array(
            [list(r[name].items()) if isinstance(BASE_SCHEMA.field(name).type, pa.MapType) else r[name] for r in rows],
            type=BASE_SCHEMA.field(name).type,
        )
        for name in BASE_SCHEMA.names
    }
    meta_keys = sorted({k for r in rows for k in r.get("meta", {})})
    for k in meta_keys:
        columns[f"meta_{k}"] = _meta_column([r.get("meta", {}).get(k) for r in rows])
    return pa.table(columns)


def manifest_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _sample_line(shard: str, key: str, hashes: Iterable[tuple[str, str]]) -> str:
    """One sample's share of the content hash; the writer and the readers' check both go through here."""
    return f"{shard}/{key}:" + ",".join(f"{m}={h}" for m, h in sorted(hashes))


def content_hash(rows: list[dict[str, Any]]) -> str:
    """Hash of every sample's member hashes, in order: equal iff the artifact's content is equal."""
    text = "\n".join(_sample_line(r["shard"], r["key"], r["member_sha256"].items()) for r in rows)
    return sha256_bytes(text.encode())


def read_manifest(data: bytes, where: str) -> pa.Table:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise ArtifactError(f"manifest {where} is corrupt: {err}") from err
    require_columns(table, where)
    return table


# What readers and the integrity checks rely on; metadata columns vary by stage and are not required.
REQUIRED_COLUMNS = ("key", "shard", "members", "member_bytes", "member_sha256", "bytes")


def require_columns(table: pa.Table, where: str) -> None:
    """A manifest without these columns cannot be checked against its shards, so it is refused up front."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ArtifactError(f"manifest {where} lacks the column(s) {missing}")
    for name in ("key", "shard", "member_sha256"):
        if table.column(name).null_count:
            raise ArtifactError(f"manifest {where}: column {name!r} has empty (null) entries")


def manifest_content_hash(table: pa.Table) -> str:
    """The content hash recomputed from a manifest exactly as the writer computes it from its part rows,
    so a commit marker's `content_hash` can be checked against what the artifact really holds.

    The map column is read as flat key/value arrays: converting 100k maps to Python dicts one by one
    would make every open of a large artifact cost seconds.
    """
    hashes = table.column("member_sha256").combine_chunks()
    offsets = hashes.offsets.to_pylist()
    pairs = list(zip(hashes.keys.to_pylist(), hashes.items.to_pylist(), strict=True))
    shards, keys = table.column("shard").to_pylist(), table.column("key").to_pylist()
    lines = (
        _sample_line(shard, key, pairs[start:end])
        for shard, key, start, end in zip(shards, keys, offsets[:-1], offsets[1:], strict=True)
    )
    return sha256_bytes("\n".join(lines).encode())


def shard_order(table: pa.Table) -> list[str]:
    """The manifest's shards in order of first appearance (the writer lists rows shard by shard)."""
    return list(dict.fromkeys(table.column("shard").to_pylist()))


def duplicate_keys(table: pa.Table) -> list[str]:
    """Keys listed more than once: the writer refuses them, so any here were edited in."""
    seen: set[str] = set()
    dups: dict[str, None] = {}
    for key in table.column("key").to_pylist():
        if key in seen:
            dups[key] = None
        seen.add(key)
    return list(dups)
