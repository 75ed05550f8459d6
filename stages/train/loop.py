"""The training loop: one optimizer step per iteration, EMA teacher update, metrics, periodic checkpoints."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from clouds.progress import format_duration
from stages.train.distributed import average_gradients
from stages.train.optim import clip_gradients

log = logging.getLogger(__name__)

PROGRESS_LOG_INTERVAL_S = 10.0
"""Least seconds between two INFO progress lines: log files, `nohup`, Prefect workers and the Prefect UI see
training move (the tqdm bar only reaches a terminal) without a line per step on a fast GPU."""

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where an interrupted one stopped."""

    student: nn.Module
    ema: Any | None  # models.ema.EmaTeacher (decoder-only EMA) in joint mode, None in warm-up
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    mode: str
    step: int = 0  # optimizer steps taken in this mode (continues across rounds)
    total_iters: int = 0  # schedule length of this mode
    position: int = 0  # sampler draws consumed
    metrics: list[dict[str, float]] = field(default_factory=list)

    @property
    def trainable(self) -> list[nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def capture_rng() -> dict[str, Any]:
    """Global RNG states (python, numpy, torch, CUDA): the model's point sampling draws from torch's."""
    np_state = np.random.get_state()
    rng: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _scalars(out: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def _log_progress(state: TrainState, end: int, row: dict[str, float]) -> None:
    rate = row["it_per_s"]
    eta = (end - state.step) / rate if rate > 0 else float("inf")
    log.info("train %s: step %d/%d, loss %.4f, lr %.2e, %.2f it/s, ETA %s",
             state.mode, state.step, end, row["loss"], row["lr"], rate, format_duration(eta))


def run_iterations(
    state: TrainState,
    batches: Batches,
    iters: int,
    *,
    grad_clip: float | None,
    batch_size: int,
    device: torch.device | str = "cpu",
    log_every: int = 20,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    progress: bool = True,
) -> TrainState:
    """Train `iters` more iterations from `state` (used by the train stage and by the round loop).

    `batches` must start at `state.position` (TrainData.batches(state.position)). Metrics rows go to
    `state.metrics` every `log_every` steps and at the last one; `on_checkpoint` is called every
    `checkpoint_every` steps, never on the last (the caller finalises that one itself).
    """
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    device = torch.device(device)
    student = state.student
    student.train()
    params = state.trainable
    end = state.step + iters
    started = time.perf_counter()
    window_start, window_steps = started, 0
    last_info = started
    bar = tqdm(total=end, initial=state.step, desc=f"train {state.mode}", unit="it", disable=None if progress else True,
               dynamic_ncols=True)
    try:
        while state.step < end:
            images, labels = next(batches)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            lr = state.lr()
            out = student(images, labels)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {float(loss)} at {state.mode} step {state.step + 1}: lower train.lr or check "
                    "the labels of the last batch"
                )
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(params)  # a no-op in one process
            grad_norm = clip_gradients(params, grad_clip) if grad_clip else float("nan")
            state.optimizer.step()
            state.scheduler.step()
            state.step += 1
            state.position += batch_size
            if state.ema is not None:
                # 0-based index of the iteration just done, as the reference's hook sees it (updates at 0, P, 2P...)
                state.ema.update(state.step - 1)
            window_steps += 1
            bar.update(1)
            if state.step % max(1, log_every) == 0 or state.step == end:
                now = time.perf_counter()
                row = {"step": state.step, **_scalars(out), "lr": lr, "grad_norm": grad_norm,
                       "time_s": now - started, "it_per_s": window_steps / max(now - window_start, 1e-9)}
                state.metrics.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
                log.debug("%s step %d: %s", state.mode, state.step, row)
                if now - last_info >= PROGRESS_LOG_INTERVAL_S or state.step == end:
                    _log_progress(state, end, row)
                    last_info = now
                window_start, window_steps = now, 0
            if on_checkpoint and checkpoint_every and state.step % checkpoint_every == 0 and state.step < end:
                on_checkpoint(state)
    finally:
        bar.close()
    return state
