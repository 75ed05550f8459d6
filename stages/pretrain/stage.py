"""The pretrain stage: a label-free pretrained image tower, committed as one small weight file.

CLOUDS gets its domain robustness from a frozen foundation model; the tiny CPU profile had none (random
tower, trained), so its demo could not show the method's effect (issue 15). This stage makes one: it
renders streets in every domain (`pairs.PairBank`) and trains the open_clip tower of `model.backbone.name`
from random weights with the dense cross-domain objective (`objective.py`). The committed artifact holds
`image_tower.safetensors` (fp16 tower, loadable through `model.backbone.pretrained`), `pretrain.json`
(settings, provenance, loss history) and `loss.png`.

Resumable: a snapshot in `<out>/_progress/state.pt` every `pretrain.checkpoint_every` steps; batches are
drawn from a generator seeded by (seed, step), so a resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

from artifacts import Folder, commit_folder, read_lineage
from artifacts.identity import Identity
from clouds.config import BackboneConfig, CloudsConfig
from clouds.config.pretrain import PretrainConfig
from clouds.progress import format_duration
from models.backbone import build_backbone, create_clip
from models.tower_weights import save_image_tower
from stages.pretrain.objective import DenseCrossDomainObjective, ObjectiveWeights
from stages.pretrain.pairs import PairBank

log = logging.getLogger(__name__)

STAGE = "pretrain"
TOWER_FILE = "image_tower.safetensors"
PROGRESS = "_progress"
SNAPSHOT = "state.pt"
LOG_EVERY_S = 10.0


def pretrain_params(cfg: CloudsConfig) -> dict[str, Any]:
    """What the weights depend on: the tower architecture and the pretrain section (not the run's data)."""
    return {"model": cfg.model.backbone.name, "pretrain": cfg.pretrain.model_dump(mode="json")}


def _schedule(p: PretrainConfig) -> Any:
    def factor(step: int) -> float:
        if step < p.warmup_iters:
            return (step + 1) / p.warmup_iters
        done = (step - p.warmup_iters) / max(1, p.iters - p.warmup_iters)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return factor


class Pretrainer:
    """Tower + objective heads + optimizer: what a snapshot saves and a resume restores."""

    def __init__(self, cfg: CloudsConfig):
        p = self.p = cfg.pretrain
        self.model_name = cfg.model.backbone.name
        torch.manual_seed(p.seed)
        backbone_cfg = BackboneConfig(name=self.model_name, pretrained=None, freeze=False,
                                      pixel_mean=cfg.model.backbone.pixel_mean, pixel_std=cfg.model.backbone.pixel_std)
        self.tower = build_backbone(backbone_cfg, create_clip(backbone_cfg))
        weights = ObjectiveWeights(p.match_weight, p.depth_weight, p.edge_weight, p.temperature)
        self.objective = DenseCrossDomainObjective(self.tower.channels, p.dim, weights)
        params = [*self.tower.parameters(), *self.objective.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(p))
        self.step = 0
        self.history: list[dict[str, float]] = []

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.tower.train()
        feats = self.tower(self.tower.normalize(torch.cat([batch["a"], batch["b"]])))
        n = len(batch["a"])
        loss, row = self.objective([f[:n] for f in feats], [f[n:] for f in feats], batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.tower.parameters(), *self.objective.parameters()], 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {**row, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"]}

    def state_dict(self) -> dict[str, Any]:
        return {"tower": self.tower.state_dict(), "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tower.load_state_dict(state["tower"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.history = int(state["step"]), list(state["history"])


def _save_snapshot(folder: Folder, trainer: Pretrainer, config_hash: str) -> None:
    buffer = io.BytesIO()
    torch.save({"config_hash": config_hash, **trainer.state_dict()}, buffer)
    folder.makedirs(PROGRESS)
    folder.write_atomic(f"{PROGRESS}/{SNAPSHOT}", buffer.getvalue())
    log.info("pretrain: snapshot at step %d in %s", trainer.step, folder.url_of(PROGRESS))


def _resume(folder: Folder, trainer: Pretrainer, config_hash: str) -> None:
    name = f"{PROGRESS}/{SNAPSHOT}"
    if not folder.exists(name):
        return
    try:
        state = torch.load(io.BytesIO(folder.read_bytes(name)), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a torn snapshot is not fatal: the run restarts, loudly
        log.warning("pretrain: ignoring unreadable snapshot %s (%s); starting over", folder.url_of(name), err)
        return
    if state.get("config_hash") != config_hash:
        log.warning("pretrain: ignoring snapshot %s of other settings; starting over", folder.url_of(name))
        return
    trainer.load_state_dict(state)
    log.info("pretrain: resuming at step %d of %d", trainer.step, trainer.p.iters)


def _plot(history: list[dict[str, float]], path: str, folder: Folder) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    steps = [r["step"] for r in history]
    for ax, key in zip(axes, ("match", "match_acc", "depth", "edge"), strict=True):
        ax.plot(steps, [r[key] for r in history])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    folder.write_atomic(path, buffer.getvalue())


def pretrain(cfg: CloudsConfig, output_url: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretrain the tower of `model.backbone.name` and commit it to `output_url`; returns the stats."""
    identity = Identity.of(STAGE, pretrain_params(cfg))
    config_hash = identity.config_hash
    if identity.check_reusable(output_url, "pretrained tower"):
        log.info("pretrain: %s already committed, skipping", output_url)
        return {**read_lineage(output_url).get("stats", {}), "skipped": True}
    p = cfg.pretrain
    folder = Folder.at(output_url)
    folder.makedirs()
    trainer = Pretrainer(cfg)
    _resume(folder, trainer, config_hash)
    bank = PairBank.render(p.domains, p.scenes, p.scene_seed, p.height, p.width)
    started, said, window = time.monotonic(), time.monotonic(), []
    while trainer.step < p.iters:
        rng = np.random.default_rng([p.seed, trainer.step])
        row = trainer.train_step(bank.batch(rng, p.batch_size, (p.crop_min_scale, 1.0)))
        window.append(row)
        if time.monotonic() - said >= LOG_EVERY_S or trainer.step == p.iters:
            mean = {k: float(np.mean([r[k] for r in window])) for k in ("loss", "match", "match_acc", "depth", "edge")}
            trainer.history.append({**mean, "step": trainer.step, "lr": row["lr"]})
            rate = len(window) / max(time.monotonic() - said, 1e-9)
            log.info("pretrain: step %d/%d, loss %.4f (match %.3f, acc %.2f, depth %.4f, edge %.3f), %.2f it/s, "
                     "ETA %s", trainer.step, p.iters, mean["loss"], mean["match"], mean["match_acc"], mean["depth"],
                     mean["edge"], rate, format_duration((p.iters - trainer.step) / rate))
            said, window = time.monotonic(), []
        if trainer.step % p.checkpoint_every == 0 and trainer.step < p.iters:
            _save_snapshot(folder, trainer, config_hash)
    provenance = {**(provenance or {}), "config_hash": config_hash, **pretrain_params(cfg)}
    _write_tower(folder, trainer, provenance)
    last = trainer.history[-1] if trainer.history else {}
    stats = {"url": output_url, "step": trainer.step, "loss": last.get("loss"), "match_acc": last.get("match_acc"),
             "wall_s": round(time.monotonic() - started, 1)}
    folder.write_atomic("pretrain.json", json.dumps({"provenance": provenance, "stats": stats,
                                                     "history": trainer.history}, indent=1).encode())
    if trainer.history:
        _plot(trainer.history, "loss.png", folder)
    commit_folder(output_url, stage=STAGE, config_hash=config_hash, params=pretrain_params(cfg), stats=stats,
                  content_files=[TOWER_FILE])
    folder.remove(PROGRESS)
    log.info("pretrain: committed %s (%s) at step %d", output_url, TOWER_FILE, trainer.step)
    return stats


def _write_tower(folder: Folder, trainer: Pretrainer, provenance: dict[str, Any]) -> None:
    """safetensors writes to a path: write a local temporary file, then move its bytes into place atomically."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, TOWER_FILE)
        save_image_tower(path, trainer.tower.visual, trainer.model_name, provenance)
        with open(path, "rb") as f:
            folder.write_atomic(TOWER_FILE, f.read())
