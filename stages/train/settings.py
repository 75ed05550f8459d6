"""What a train span's identity covers: its settings, its span length and its seed stream.

The flow, `clouds status` (stages/expected.py), torchrun and Ray Train hash the same settings, so a
checkpoint committed by one is reused by the others; the values are those of earlier versions.
"""

from __future__ import annotations

import hashlib
from typing import Any

from clouds.config import CloudsConfig, TrainConfig

STAGE = "train"
MODES = ("warmup", "joint")


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
