"""The parquet manifest: one row per sample, built at commit from the shards' part files."""

from __future__ import annotations

import io
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


def content_hash(rows: list[dict[str, Any]]) -> str:
    """Hash of every sample's member hashes, in order: equal iff the artifact's content is equal."""
    text = "\n".join(
        f"{r['shard']}/{r['key']}:" + ",".join(f"{m}={h}" for m, h in sorted(r["member_sha256"].items()))
        for r in rows
    )
    return sha256_bytes(text.encode())


def read_manifest(data: bytes, where: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise ArtifactError(f"manifest {where} is corrupt: {err}") from err
