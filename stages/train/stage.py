"""The train stage: warm-up on the source, or joint source + refined synthetic training (SPEC "Self-training").

Output is a committed checkpoint artifact folder. An interrupted run resumes from the newest snapshot
in `<out>/_progress/` and ends with the same weights as an uninterrupted run with the same seed.
Calling it with the previous round's checkpoint as `init_checkpoint` continues that joint schedule
(optimizer, lr, sampler position, EMA teacher) on the refreshed pseudo labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import torch

from artifacts import Folder, commit_folder, read_lineage
from artifacts.identity import Identity
from clouds.config import CloudsConfig, TrainConfig
from clouds.device import resolve_device
from models.build import build_segmenter
from models.checkpoint import load_checkpoint
from models.ema import EmaTeacher
from stages.train.checkpoints import (
    clear_progress,
    latest_progress,
    rank_rng,
    read_metrics,
    read_train_state,
    save_folder,
    save_progress,
)
from stages.train.data import TrainData
from stages.train.distributed import barrier, gather_objects, is_main, world
from stages.train.loop import TrainState, capture_rng, restore_rng, run_iterations, seed_everything
from stages.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

STAGE = "train"
MODES = ("warmup", "joint")


def _content_hash(url: str) -> str | None:
    return read_lineage(url).get("content_hash")


def train_params(cfg: CloudsConfig, mode: str, iters: int) -> dict[str, Any]:
    """What the checkpoint's lineage records of the settings its config hash covers (the input URLs are in
    its input records), so `clouds status` can name the key that changed."""
    return {"mode": mode, "iters": iters, "seed": cfg.run.seed,
            "model": cfg.model.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json")}


def train_settings(cfg: CloudsConfig, mode: str, iters: int, inputs: list[str]) -> dict[str, Any]:
    """What a committed checkpoint was made from: model + train sections, seed, mode, span length, input URLs
    (hashed: input *contents* are pinned separately by the lineage's input records)."""
    return {**train_params(cfg, mode, iters), "inputs": list(inputs)}


def mode_iters(cfg: TrainConfig, mode: str) -> int:
    return cfg.warmup_iters if mode == "warmup" else cfg.joint_iters


def mode_seed(seed: int, mode: str) -> int:
    """Warm-up and joint spans draw different streams from one run seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{mode}".encode()).digest()[:4], "little")


def _make_ema(student: torch.nn.Module, cfg: TrainConfig, teacher: torch.nn.Module | None) -> Any:
    return EmaTeacher(student, cfg.ema_alpha, cfg.ema_period, teacher=teacher)


def new_state(cfg: CloudsConfig, mode: str, device: torch.device, student: torch.nn.Module,
              teacher: torch.nn.Module | None) -> TrainState:
    """A fresh schedule from given weights: step 0, new optimizer, EMA teacher in joint mode."""
    t = cfg.train
    student.to(device)
    ema = _make_ema(student, t, teacher) if mode == "joint" else None
    optimizer = build_optimizer(student, t.lr, t.weight_decay)
    total = mode_iters(t, mode)
    scheduler = build_scheduler(optimizer, t.schedule, total, t.poly_power)
    return TrainState(student, ema, optimizer, scheduler, mode, step=0, total_iters=total)


def load_state(url: str, cfg: CloudsConfig, device: torch.device) -> tuple[TrainState, dict[str, Any]]:
    """Rebuild the exact TrainState saved in a checkpoint folder (weights, optimizer, scheduler, position)."""
    student, teacher, _, _ = load_checkpoint(url, device=device, cfg=cfg.model)
    saved = read_train_state(url)
    state = new_state(cfg, saved["mode"], device, student, teacher)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.step, state.total_iters, state.position = saved["step"], saved["total_iters"], saved["position"]
    state.metrics = read_metrics(url)
    return state, saved


def _initial_state(cfg: CloudsConfig, mode: str, init_checkpoint: str | None, device: torch.device) -> TrainState:
    if init_checkpoint is None:
        if mode == "joint":
            raise ValueError("joint training starts from a warm-up checkpoint: pass init_checkpoint")
        return new_state(cfg, mode, device, build_segmenter(cfg.model, device=device), None)
    read_lineage(init_checkpoint)  # refuses uncommitted folders, naming them
    if Folder.at(init_checkpoint).exists("train_state.pt"):
        saved_mode = read_train_state(init_checkpoint)["mode"]
        if saved_mode == mode:
            # The previous round of the same schedule: continue it (optimizer, lr, EMA, sampler, RNG).
            state, saved = load_state(init_checkpoint, cfg, device)
            restore_rng(rank_rng(saved, *world()))
            state.metrics = []
            return state
    student, teacher, _, _ = load_checkpoint(init_checkpoint, device=device, cfg=cfg.model)
    # A new span (warm-up -> joint): weights carry over, the teacher starts as a copy of the student.
    return new_state(cfg, mode, device, student, teacher if mode == "joint" else None)


def train(
    cfg: CloudsConfig,
    source_url: str,
    synthetic_urls: list[str],
    output_url: str,
    init_checkpoint: str | None = None,
    iters: int | None = None,
    mode: str = "warmup",
) -> dict[str, Any]:
    """Train `iters` iterations (default: the mode's full length) and commit a checkpoint artifact.

    Returns a summary: url, mode, step, iters, final loss, samples seen and the generated share.
    """
    if mode not in MODES:
        raise ValueError(f"train mode must be one of {MODES}, got {mode!r}")
    if mode == "joint" and not synthetic_urls:
        raise ValueError("joint training needs at least one synthetic (refined pseudo-label) artifact")
    if mode == "warmup" and synthetic_urls:
        raise ValueError("warm-up trains on the source only; got synthetic artifacts")
    t = cfg.train
    iters = mode_iters(t, mode) if iters is None else iters
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    inputs = [source_url, *synthetic_urls] + ([init_checkpoint] if init_checkpoint else [])
    expected = Identity.of(STAGE, train_settings(cfg, mode, iters, inputs), inputs)
    config_hash = expected.config_hash
    if expected.check_reusable(output_url, "checkpoint"):
        log.info("train %s: %s already committed, skipping", mode, output_url)
        return {**read_lineage(output_url).get("stats", {}), "skipped": True}
    # A snapshot is resumed only by a run with this config and these exact input contents.
    identity = {"config_hash": config_hash, "inputs": {u: _content_hash(u) for u in inputs}}

    device = resolve_device(cfg.run.device)
    seed = mode_seed(cfg.run.seed, mode)
    data = TrainData(t, source_url, synthetic_urls, seed, verify=cfg.artifacts.verify_reads)
    resume = latest_progress(output_url, identity)
    if resume is not None:
        state, saved = load_state(resume, cfg, device)
        restore_rng(rank_rng(saved, *world()))
        end = int(json.loads(saved["extra"])["end_step"])
        log.info("train %s: resuming %s at step %d of %d", mode, output_url, state.step, end)
    else:
        barrier()  # every rank has looked for a snapshot before rank 0 clears them
        if is_main():
            clear_progress(output_url)
        seed_everything(seed)
        state = _initial_state(cfg, mode, init_checkpoint, device)
        end = state.step + iters
    if end > state.total_iters:
        log.warning("train %s: training to step %d, past the schedule length train.%s_iters=%d",
                    mode, end, mode, state.total_iters)
    extra = {"end_step": end, "config_hash": config_hash}

    def snapshot(s: TrainState) -> None:
        # Ranks hold identical weights and optimizer state after each averaged step: rank 0 writes for all.
        rngs = gather_objects(capture_rng())  # every rank's own stream, so a resume continues each
        if is_main():
            save_progress(output_url, s, cfg.model, identity, extra, rngs)
        barrier()

    batches = data.batches(state.position, device)
    run_iterations(
        state, batches, end - state.step, grad_clip=t.grad_clip, batch_size=t.batch_size, device=device,
        log_every=t.log_every, checkpoint_every=t.checkpoint_every, on_checkpoint=snapshot,
    )
    last = state.metrics[-1] if state.metrics else {}
    generated = 1 - data.sampler.expected_share(0) if synthetic_urls else 0.0
    stats = {
        "url": output_url, "mode": mode, "step": state.step, "iters": iters, "total_iters": state.total_iters,
        "loss": last.get("loss"), "lr": state.lr(), "samples_seen": state.position,
        "generated_share": generated, "sizes": data.sizes,
    }
    rngs = gather_objects(capture_rng())  # the next round of the same schedule continues each rank's stream
    if is_main():
        save_folder(output_url, state, cfg.model, identity, extra, rngs)
        # Downstream stages pin the weights, not the wall-clock metrics or torch.save's random archive ids.
        weights = sorted(n for n in Folder.at(output_url).listdir()
                         if n.endswith(".safetensors") or n in ("model.json", "backbone.json"))
        commit_folder(output_url, stage=STAGE, config_hash=config_hash, inputs=inputs,
                      params=train_params(cfg, mode, iters), stats=stats, content_files=weights)
        clear_progress(output_url)  # after the commit: a crash before it can still resume from the snapshot
    barrier()  # no rank returns before the checkpoint is committed
    log.info("train %s: committed %s at step %d (loss %s)", mode, output_url, state.step, last.get("loss"))
    return stats
