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

import logging
from typing import Any

import numpy as np
import torch

from clouds.config import BackboneConfig, CloudsConfig
from models.backbone import build_backbone, create_clip
from models.tower_weights import image_tower_bytes
from stages.pretrain.objective import DenseCrossDomainObjective, ObjectiveWeights
from stages.pretrain.pairs import PairBank
from stages.pretrain.progress import apply_gradients, run_pretraining, warmup_cosine

log = logging.getLogger(__name__)

STAGE = "pretrain"
TOWER_FILE = "image_tower.safetensors"


def pretrain_params(cfg: CloudsConfig) -> dict[str, Any]:
    """What the weights depend on: the tower architecture and the pretrain section (not the run's data)."""
    return {"model": cfg.model.backbone.name, "pretrain": cfg.pretrain.model_dump(mode="json")}


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
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(p.warmup_iters, p.iters))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.iters, self.seed, self.checkpoint_every = p.iters, p.seed, p.checkpoint_every

    logged = ("loss", "match", "match_acc", "depth", "edge")
    summary = ("loss", "match_acc")
    weights_file = TOWER_FILE

    def advance(self, bank: PairBank, rng: np.random.Generator) -> dict[str, float]:
        return self.train_step(bank.batch(rng, self.p.batch_size, (self.p.crop_min_scale, 1.0)))

    def describe(self, mean: dict[str, float]) -> str:
        return (f"loss {mean['loss']:.4f} (match {mean['match']:.3f}, acc {mean['match_acc']:.2f}, "
                f"depth {mean['depth']:.4f}, edge {mean['edge']:.3f})")

    def weights_bytes(self, provenance: dict[str, Any]) -> bytes:
        return image_tower_bytes(self.tower.visual, self.model_name, provenance)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.tower.train()
        feats = self.tower(self.tower.normalize(torch.cat([batch["a"], batch["b"]])))
        n = len(batch["a"])
        loss, row = self.objective([f[:n] for f in feats], [f[n:] for f in feats], batch)
        apply_gradients(loss, [*self.tower.parameters(), *self.objective.parameters()], self.optimizer, self.scheduler)
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


def pretrain(cfg: CloudsConfig, output_url: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretrain the tower of `model.backbone.name` and commit it to `output_url`; returns the stats."""
    p = cfg.pretrain
    return run_pretraining(STAGE, pretrain_params(cfg), output_url, provenance, lambda: Pretrainer(cfg),
                           lambda: PairBank.render(p.domains, p.scenes, p.scene_seed, p.height, p.width))
