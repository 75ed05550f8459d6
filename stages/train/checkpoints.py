"""Checkpoint folders of the train stage: weights (models.checkpoint), train state, metrics log.

A checkpoint folder holds what `save_checkpoint` writes (safetensors weights + model.json) plus
`train_state.pt` (optimizer, scheduler, RNG states, step, sampler position) and `metrics.parquet`.
While training, numbered folders under `<out>/_progress/` are written whole and then named by the
`LATEST.json` pointer (moved into place atomically), so a crash mid-save leaves the previous one usable.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from artifacts import ArtifactError, Folder
from models.checkpoint import save_checkpoint
from stages.train.loop import TrainState, capture_rng

log = logging.getLogger(__name__)

TRAIN_STATE = "train_state.pt"
METRICS = "metrics.parquet"
PROGRESS = "_progress"
LATEST = "LATEST.json"


def train_state_dict(state: TrainState, identity: dict[str, Any], extra: dict[str, Any],
                     rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`rng_ranks`: every rank's RNG state (each rank's point sampling draws its own stream); default: this
    process's. Rank 0's is also `rng`, what a run of another world size resumes from."""
    rng_ranks = rng_ranks or [capture_rng()]
    return {
        "identity": json.dumps(identity, sort_keys=True),
        "extra": json.dumps(extra, sort_keys=True),
        "mode": state.mode,
        "step": state.step,
        "total_iters": state.total_iters,
        "position": state.position,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "rng": rng_ranks[0],
        **({"rng_ranks": rng_ranks} if len(rng_ranks) > 1 else {}),
    }


def rank_rng(saved: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """The RNG state this rank resumes from: its own when the world size is the one that saved it."""
    per_rank = saved.get("rng_ranks") or [saved["rng"]]
    if len(per_rank) == world_size:
        return per_rank[rank]
    log.warning("resuming a train state saved by %d process(es) with %d: every rank continues rank 0's random "
                "stream, so the result will not be bit-identical to an uninterrupted run", len(per_rank), world_size)
    return per_rank[0]


def write_train_state(url: str, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    Folder.at(url).write_atomic(TRAIN_STATE, buf.getvalue())


def read_train_state(url: str) -> dict[str, Any]:
    data = Folder.at(url).read_bytes(TRAIN_STATE)
    try:
        # weights_only: a checkpoint is data, never code to unpickle.
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError/EOFError for damaged files
        raise ArtifactError(f"{Folder.at(url).url_of(TRAIN_STATE)} is corrupt or not a train state: {err}") from err


def write_metrics(url: str, rows: list[dict[str, float]]) -> None:
    columns = sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k))
    table = pa.table({c: pa.array([r.get(c) for r in rows], type=pa.int64() if c == "step" else pa.float64())
                      for c in columns}) if rows else pa.table({"step": pa.array([], pa.int64())})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    Folder.at(url).write_atomic(METRICS, buf.getvalue())


def read_metrics(url: str) -> list[dict[str, float]]:
    folder = Folder.at(url)
    if not folder.exists(METRICS):
        return []
    try:
        table = pq.read_table(io.BytesIO(folder.read_bytes(METRICS)))
    except (pa.ArrowInvalid, OSError) as err:
        raise ArtifactError(f"{folder.url_of(METRICS)} is corrupt: {err}") from err
    return [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]


def save_folder(url: str, state: TrainState, model_cfg: Any, identity: dict[str, Any], extra: dict[str, Any],
                rng_ranks: list[dict[str, Any]] | None = None) -> None:
    """Write one complete checkpoint folder (weights, train state, metrics)."""
    Folder.at(url).makedirs()
    teacher = state.ema.teacher if state.ema is not None else None
    save_checkpoint(url, state.student, teacher, model_cfg,
                    {**extra, "mode": state.mode, "step": state.step, "total_iters": state.total_iters})
    write_train_state(url, train_state_dict(state, identity, extra, rng_ranks))
    write_metrics(url, state.metrics)


def save_progress(output_url: str, state: TrainState, model_cfg: Any, identity: dict[str, Any],
                  extra: dict[str, Any], rng_ranks: list[dict[str, Any]] | None = None) -> str:
    """A resumable snapshot under <out>/_progress/step-N, then LATEST.json pointed at it."""
    progress = Folder.at(Folder.at(output_url).url_of(PROGRESS))
    name = f"step-{state.step:08d}"
    progress.remove(name)
    save_folder(progress.url_of(name), state, model_cfg, identity, extra, rng_ranks)
    previous = latest_progress(output_url)
    progress.write_atomic(LATEST, json.dumps({"dir": name, "step": state.step, "identity": identity},
                                             sort_keys=True).encode())
    if previous is not None and previous != progress.url_of(name):
        Folder.at(previous).remove(within=progress.url)  # LATEST.json is read from storage: never trust its 'dir'
    log.info("saved progress checkpoint %s", progress.url_of(name))
    return progress.url_of(name)


def latest_progress(output_url: str, identity: dict[str, Any] | None = None) -> str | None:
    """URL of the newest complete snapshot (matching `identity` if given), or None."""
    progress = Folder.at(Folder.at(output_url).url_of(PROGRESS))
    if not progress.exists(LATEST):
        return None
    try:
        pointer = json.loads(progress.read_bytes(LATEST))
    except json.JSONDecodeError:
        log.warning("ignoring corrupt %s", progress.url_of(LATEST))
        return None
    if identity is not None and pointer.get("identity") != json.loads(json.dumps(identity)):
        log.warning("ignoring progress in %s: it belongs to a run with other inputs or settings", progress.url)
        return None
    url = progress.url_of(pointer["dir"])
    return url if Folder.at(url).exists(TRAIN_STATE) else None


def clear_progress(output_url: str) -> None:
    Folder.at(output_url).remove(PROGRESS)
