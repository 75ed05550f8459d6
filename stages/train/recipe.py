"""One train span as a recipe: setup, load_checkpoint, train, save_checkpoint, cleanup.

The train flow, torchrun's launcher (stages.train.launch) and Ray Train's workers (pipelines.ray_train)
all build a `TrainRecipe` from the round's plan and call `run()`, so each step happens the same way
whoever launched it: the identity check and reuse, the resume from the newest matching snapshot in
`<out>/_progress/`, the barriers between ranks, rank 0's snapshots and commit. The process group is the
launcher's (torchrun's or Ray Train's): a recipe only uses it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

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
from stages.train.settings import MODES, STAGE, mode_iters, mode_seed, train_params, train_settings

if TYPE_CHECKING:
    from stages.train.plan import RoundPlan

log = logging.getLogger(__name__)


def _content_hash(url: str) -> str | None:
    return read_lineage(url).get("content_hash")


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


def initial_state(cfg: CloudsConfig, mode: str, init_checkpoint: str | None, device: torch.device) -> TrainState:
    """The state a span without a snapshot starts from: new weights (warm-up), or the previous checkpoint's."""
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


class TrainRecipe:
    """Train `iters` iterations (default: the mode's full length) of `mode` and commit a checkpoint artifact.

    Arguments are checked when the recipe is made, before any rank touches storage. Every rank runs every
    step; only rank 0 writes, and the barriers keep ranks in step around its writes.
    """

    def __init__(
        self,
        cfg: CloudsConfig,
        source_url: str,
        synthetic_urls: list[str],
        output_url: str,
        init_checkpoint: str | None = None,
        iters: int | None = None,
        mode: str = "warmup",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"train mode must be one of {MODES}, got {mode!r}")
        if mode == "joint" and not synthetic_urls:
            raise ValueError("joint training needs at least one synthetic (refined pseudo-label) artifact")
        if mode == "warmup" and synthetic_urls:
            raise ValueError("warm-up trains on the source only; got synthetic artifacts")
        iters = mode_iters(cfg.train, mode) if iters is None else iters
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        self.cfg, self.mode, self.iters = cfg, mode, iters
        self.source_url, self.synthetic_urls, self.output_url = source_url, list(synthetic_urls), output_url
        self.init_checkpoint = init_checkpoint
        self.inputs = [source_url, *synthetic_urls] + ([init_checkpoint] if init_checkpoint else [])
        self.config_hash = ""
        self.identity: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.device: torch.device | None = None
        self.data: TrainData | None = None
        self.state: TrainState | None = None
        self.end = 0

    @classmethod
    def of(cls, cfg: CloudsConfig, plan: RoundPlan, iters: int | None = None) -> TrainRecipe:
        """Round `plan` (stages.train.plan), as the flow, torchrun and Ray Train train it; `iters` overrides
        the plan's span length."""
        return cls(cfg, plan.source, plan.synthetic, plan.output, init_checkpoint=plan.init,
                   iters=iters or plan.iters, mode=plan.mode)

    def run(self) -> dict[str, Any]:
        """The whole span; returns a summary: url, mode, step, iters, final loss, samples seen, generated share
        (or the committed checkpoint's summary with `skipped`, when it is already up to date)."""
        skipped = self.setup()
        if skipped is not None:
            return skipped
        try:
            self.load_checkpoint()
            self.train()
            return self.save_checkpoint()
        finally:
            self.cleanup()

    def setup(self) -> dict[str, Any] | None:
        """The span's identity; the committed checkpoint's summary if it is already current, else None after
        opening the training data."""
        expected = Identity.of(STAGE, train_settings(self.cfg, self.mode, self.iters, self.inputs), self.inputs)
        self.config_hash = expected.config_hash
        if expected.check_reusable(self.output_url, "checkpoint"):
            log.info("train %s: %s already committed, skipping", self.mode, self.output_url)
            return {**read_lineage(self.output_url).get("stats", {}), "skipped": True}
        # A snapshot is resumed only by a run with this config and these exact input contents.
        self.identity = {"config_hash": self.config_hash, "inputs": {u: _content_hash(u) for u in self.inputs}}
        self.device = resolve_device(self.cfg.run.device)
        self.data = TrainData(self.cfg.train, self.source_url, self.synthetic_urls,
                              mode_seed(self.cfg.run.seed, self.mode), verify=self.cfg.artifacts.verify_reads)
        return None

    def load_checkpoint(self) -> None:
        """Resume from the newest snapshot of this identity, or start the span: from `init_checkpoint` (the
        previous round's schedule continues) or new weights, after rank 0 clears stale snapshots."""
        assert self.device is not None, "setup() first"
        resume = latest_progress(self.output_url, self.identity)
        if resume is not None:
            state, saved = load_state(resume, self.cfg, self.device)
            restore_rng(rank_rng(saved, *world()))
            end = int(json.loads(saved["extra"])["end_step"])
            log.info("train %s: resuming %s at step %d of %d", self.mode, self.output_url, state.step, end)
        else:
            barrier()  # every rank has looked for a snapshot before rank 0 clears them
            if is_main():
                clear_progress(self.output_url)
            seed_everything(mode_seed(self.cfg.run.seed, self.mode))
            state = initial_state(self.cfg, self.mode, self.init_checkpoint, self.device)
            end = state.step + self.iters
        if end > state.total_iters:
            log.warning("train %s: training to step %d, past the schedule length train.%s_iters=%d",
                        self.mode, end, self.mode, state.total_iters)
        self.state, self.end = state, end
        self.extra = {"end_step": end, "config_hash": self.config_hash}

    def train(self) -> None:
        """Run the iterations left up to the span's end, with a snapshot every `train.checkpoint_every`."""
        assert self.state is not None and self.data is not None and self.device is not None, "load_checkpoint() first"
        t = self.cfg.train
        batches = self.data.batches(self.state.position, self.device)
        run_iterations(
            self.state, batches, self.end - self.state.step, grad_clip=t.grad_clip, batch_size=t.batch_size,
            device=self.device, log_every=t.log_every, checkpoint_every=t.checkpoint_every,
            on_checkpoint=self.snapshot,
        )

    def snapshot(self, state: TrainState) -> None:
        """A resumable progress snapshot, written by rank 0 for all."""
        # Ranks hold identical weights and optimizer state after each averaged step: rank 0 writes for all.
        rngs = gather_objects(capture_rng())  # every rank's own stream, so a resume continues each
        if is_main():
            save_progress(self.output_url, state, self.cfg.model, self.identity, self.extra, rngs)
        barrier()

    def save_checkpoint(self) -> dict[str, Any]:
        """Rank 0 writes and commits the checkpoint folder, then drops the snapshots; returns the summary."""
        assert self.state is not None and self.data is not None, "train() first"
        state = self.state
        last = state.metrics[-1] if state.metrics else {}
        generated = 1 - self.data.sampler.expected_share(0) if self.synthetic_urls else 0.0
        stats = {
            "url": self.output_url, "mode": self.mode, "step": state.step, "iters": self.iters,
            "total_iters": state.total_iters, "loss": last.get("loss"), "lr": state.lr(),
            "samples_seen": state.position, "generated_share": generated, "sizes": self.data.sizes,
            # Not hashed: the scale the profile scores this checkpoint at, which `clouds predict` and
            # `clouds evaluate` default to (a 64x128 tiny model resized to 1024 predicts nothing useful).
            "inference": {"short_side": self.cfg.evaluate.short_side},
        }
        rngs = gather_objects(capture_rng())  # the next round of the same schedule continues each rank's stream
        if is_main():
            save_folder(self.output_url, state, self.cfg.model, self.identity, self.extra, rngs)
            # Downstream stages pin the weights, not the wall-clock metrics or torch.save's random archive ids.
            weights = sorted(n for n in Folder.at(self.output_url).listdir()
                             if n.endswith(".safetensors") or n in ("model.json", "backbone.json"))
            commit_folder(self.output_url, stage=STAGE, config_hash=self.config_hash, inputs=self.inputs,
                          params=train_params(self.cfg, self.mode, self.iters), stats=stats, content_files=weights)
            clear_progress(self.output_url)  # after the commit: a crash before it can still resume from the snapshot
        barrier()  # no rank returns before the checkpoint is committed
        log.info("train %s: committed %s at step %d (loss %s)", self.mode, self.output_url, state.step,
                 last.get("loss"))
        return stats

    def cleanup(self) -> None:
        """Let go of the model, optimizer and data readers, also after a failure: no barrier here, so a rank
        that raised never waits for the others."""
        self.state = None
        self.data = None
