"""The pretrain-sam stage: a small Segment Anything model trained once on the toy world's object masks.

CLOUDS refines pseudo labels with SAM (MobileSAM in the reference), whose value is masks that follow
objects the teacher only roughly found. The CPU demo had no such model (random SAM weights give noise, so it
fell back to superpixels). This stage trains one of segment_anything's own `Sam` builds (`refine.model_type`
names which; `toy` is sized for 64x128 streets) from random weights on class-agnostic masks
(`masks.MaskBank`), with SAM's prompt-and-best-of-three objective (`sam_objective.py`), and commits
`sam.safetensors`: a plain segment_anything state dict (fp16) that `refine.checkpoint` loads through the
same `SamPredictor` path a real SAM checkpoint takes.

Resumable like `pretrain`: a snapshot every `pretrain_sam.checkpoint_every` steps, batches drawn from a
generator seeded by (seed, step), so a resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from clouds.config import CloudsConfig
from clouds.config.pretrain import PretrainSamConfig
from models.sam import build_sam
from stages.pretrain.masks import MaskBank
from stages.pretrain.progress import apply_gradients, run_pretraining, warmup_cosine
from stages.pretrain.sam_objective import sam_loss

log = logging.getLogger(__name__)

STAGE = "pretrain-sam"
SAM_FILE = "sam.safetensors"


def pretrain_sam_params(cfg: CloudsConfig) -> dict[str, Any]:
    """What the weights depend on: the pretrain_sam section alone (it names the architecture)."""
    return {"pretrain_sam": cfg.pretrain_sam.model_dump(mode="json")}


class SamPretrainer:
    """SAM + optimizer: what a snapshot saves and a resume restores."""

    def __init__(self, p: PretrainSamConfig):
        self.p = p
        torch.manual_seed(p.seed)
        self.sam = build_sam(p.model_type)
        self.optimizer = torch.optim.AdamW(self.sam.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(p.warmup_iters, p.iters))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.iters, self.seed, self.checkpoint_every = p.iters, p.seed, p.checkpoint_every

    logged = ("loss", "mask", "iou_head", "best_iou")
    summary = ("loss", "best_iou")
    weights_file = SAM_FILE

    def advance(self, bank: MaskBank, rng: np.random.Generator) -> dict[str, float]:
        return self.train_step(bank, rng)

    def describe(self, mean: dict[str, float]) -> str:
        return (f"loss {mean['loss']:.4f} (mask {mean['mask']:.3f}, iou head {mean['iou_head']:.4f}), "
                f"best-mask IoU {mean['best_iou']:.3f}")

    def weights_bytes(self, provenance: dict[str, Any]) -> bytes:
        return sam_file_bytes(self.sam, provenance)

    def train_step(self, bank: MaskBank, rng: np.random.Generator) -> dict[str, float]:
        p = self.p
        self.sam.train()
        batch = bank.batch(rng, p.batch_size, p.masks_per_image, p.points_per_mask, p.min_area, self.sam)
        loss, row = sam_loss(self.sam, batch)
        apply_gradients(loss, list(self.sam.parameters()), self.optimizer, self.scheduler)
        self.step += 1
        return {**row, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"]}

    def state_dict(self) -> dict[str, Any]:
        return {"sam": self.sam.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sam.load_state_dict(state["sam"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.history = int(state["step"]), list(state["history"])


def sam_file_bytes(sam: torch.nn.Module, metadata: dict[str, Any]) -> bytes:
    """A safetensors file's bytes: fp16 tensors (half the size; refinement casts them back to the model's fp32
    on load) and the provenance as metadata (strings only: JSON)."""
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in sam.state_dict().items()}
    return save(tensors, metadata={"provenance": json.dumps(metadata, sort_keys=True)})


def pretrain_sam(cfg: CloudsConfig, output_url: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the SAM of `pretrain_sam.model_type` and commit it to `output_url`; returns the stats."""
    p = cfg.pretrain_sam
    return run_pretraining(STAGE, pretrain_sam_params(cfg), output_url, provenance, lambda: SamPretrainer(p),
                           lambda: MaskBank.render(p.domains, p.scenes, p.scene_seed, p.height, p.width,
                                                   p.generated_share))
