"""What the two pretraining stages share: the resumable loop that commits one weight file, its snapshots,
the loss plot, the learning-rate schedule.

A snapshot is one `torch.save`d dict in `<out>/_progress/state.pt`, tagged with the stage's config hash,
written atomically: a resumed run either continues from a whole snapshot of the same settings or starts
over, loudly, never from a torn file or from another configuration's weights.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from artifacts import Folder, commit_folder, read_lineage
from artifacts.identity import Identity
from clouds.progress import format_duration

log = logging.getLogger(__name__)

PROGRESS = "_progress"
SNAPSHOT = "state.pt"
LOG_EVERY_S = 10.0


def warmup_cosine(warmup_iters: int, iters: int) -> Callable[[int], float]:
    """The lr factor at a step: linear warm-up over `warmup_iters`, then cosine to 0 at `iters`."""
    def factor(step: int) -> float:
        if step < warmup_iters:
            return (step + 1) / warmup_iters
        done = (step - warmup_iters) / max(1, iters - warmup_iters)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return factor


def apply_gradients(loss: torch.Tensor, params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, max_norm: float = 1.0) -> None:
    """One optimizer step of a pretraining loop: backward, gradient clipping, step, schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    scheduler.step()


def save_snapshot(folder: Folder, stage: str, state: dict[str, Any], config_hash: str) -> None:
    buffer = io.BytesIO()
    torch.save({"config_hash": config_hash, **state}, buffer)
    folder.makedirs(PROGRESS)
    folder.write_atomic(f"{PROGRESS}/{SNAPSHOT}", buffer.getvalue())
    log.info("%s: snapshot at step %s in %s", stage, state.get("step"), folder.url_of(PROGRESS))


def load_snapshot(folder: Folder, stage: str, config_hash: str) -> dict[str, Any] | None:
    """The snapshot of these settings, or None (none there, unreadable, or of other settings: said why)."""
    name = f"{PROGRESS}/{SNAPSHOT}"
    if not folder.exists(name):
        return None
    try:
        state = torch.load(io.BytesIO(folder.read_bytes(name)), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a torn snapshot is not fatal: the run restarts, loudly
        log.warning("%s: ignoring unreadable snapshot %s (%s); starting over", stage, folder.url_of(name), err)
        return None
    if state.get("config_hash") != config_hash:
        log.warning("%s: ignoring snapshot %s of other settings; starting over", stage, folder.url_of(name))
        return None
    return state


def plot_history(history: Sequence[dict[str, float]], keys: Sequence[str], path: str, folder: Folder) -> None:
    """One panel per logged quantity against the step, as a PNG in the artifact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.5 * len(keys), 3), squeeze=False)
    steps = [r["step"] for r in history]
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(steps, [r[key] for r in history])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    folder.write_atomic(path, buffer.getvalue())


class Pretraining(Protocol):
    """One model being pretrained, as `run_pretraining` drives it: a step on a batch drawn from
    (seed, step), its state for snapshots, its log line and the weight file it commits."""

    step: int
    history: list[dict[str, float]]
    iters: int
    seed: int
    checkpoint_every: int
    logged: tuple[str, ...]  # row keys averaged over each log window, kept in the history and plotted
    summary: tuple[str, ...]  # last history keys that go into the committed stats
    weights_file: str

    def advance(self, data: Any, rng: np.random.Generator) -> dict[str, float]: ...

    def describe(self, mean: dict[str, float]) -> str: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def weights_bytes(self, provenance: dict[str, Any]) -> bytes: ...


def run_pretraining(stage: str, params: dict[str, Any], output_url: str, provenance: dict[str, Any] | None,
                    build: Callable[[], Pretraining], render: Callable[[], Any]) -> dict[str, Any]:
    """Build (or reuse, or resume) one pretrained weight file and commit it with its history and loss plot.

    The committed folder holds the trainer's `weights_file`, `<stage>.json` (provenance, stats, history) and
    `loss.png`; its identity is `params`. Batches come from a generator seeded by (seed, step), so a run
    resumed from a snapshot ends with the weights of an uninterrupted one."""
    identity = Identity.of(stage, params)
    config_hash = identity.config_hash
    if identity.check_reusable(output_url, f"{stage} weights"):
        log.info("%s: %s already committed, skipping", stage, output_url)
        return {**read_lineage(output_url).get("stats", {}), "skipped": True}
    folder = Folder.at(output_url)
    folder.makedirs()
    trainer = build()
    state = load_snapshot(folder, stage, config_hash)
    if state is not None:
        trainer.load_state_dict(state)
        log.info("%s: resuming at step %d of %d", stage, trainer.step, trainer.iters)
    data = render()
    started, said, window = time.monotonic(), time.monotonic(), []
    while trainer.step < trainer.iters:
        row = trainer.advance(data, np.random.default_rng([trainer.seed, trainer.step]))
        window.append(row)
        if time.monotonic() - said >= LOG_EVERY_S or trainer.step == trainer.iters:
            mean = {k: float(np.mean([r[k] for r in window])) for k in trainer.logged}
            trainer.history.append({**mean, "step": trainer.step, "lr": row["lr"]})
            rate = len(window) / max(time.monotonic() - said, 1e-9)
            log.info("%s: step %d/%d, %s, %.2f it/s, ETA %s", stage, trainer.step, trainer.iters,
                     trainer.describe(mean), rate, format_duration((trainer.iters - trainer.step) / rate))
            said, window = time.monotonic(), []
        if trainer.step % trainer.checkpoint_every == 0 and trainer.step < trainer.iters:
            save_snapshot(folder, stage, trainer.state_dict(), config_hash)
    provenance = {**(provenance or {}), "config_hash": config_hash, **params}
    folder.write_atomic(trainer.weights_file, trainer.weights_bytes(provenance))  # never half a file
    last = trainer.history[-1] if trainer.history else {}
    stats = {"url": output_url, "step": trainer.step, **{k: last.get(k) for k in trainer.summary},
             "wall_s": round(time.monotonic() - started, 1)}
    folder.write_atomic(f"{stage}.json", json.dumps({"provenance": provenance, "stats": stats,
                                                     "history": trainer.history}, indent=1).encode())
    if trainer.history:
        plot_history(trainer.history, trainer.logged[1:], "loss.png", folder)
    commit_folder(output_url, stage=stage, config_hash=config_hash, params=params, stats=stats,
                  content_files=[trainer.weights_file])
    folder.remove(PROGRESS)
    log.info("%s: committed %s (%s) at step %d", stage, output_url, trainer.weights_file, trainer.step)
    return stats
