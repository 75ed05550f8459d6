"""The train stage: warm-up on the source, or joint source + refined synthetic training (SPEC "Self-training").

Output is a committed checkpoint artifact folder. An interrupted run resumes from the newest snapshot
in `<out>/_progress/` and ends with the same weights as an uninterrupted run with the same seed.
Calling it with the previous round's checkpoint as `init_checkpoint` continues that joint schedule
(optimizer, lr, sampler position, EMA teacher) on the refreshed pseudo labels.

The steps are stages.train.recipe's `TrainRecipe`; `train()` runs one, as the flow, torchrun and Ray Train do.
"""

from __future__ import annotations

from typing import Any

from clouds.config import CloudsConfig
from stages.train.recipe import TrainRecipe, load_state, new_state
from stages.train.settings import MODES, STAGE, mode_iters, mode_seed, train_params, train_settings

__all__ = ["MODES", "STAGE", "TrainRecipe", "load_state", "mode_iters", "mode_seed", "new_state", "train",
           "train_params", "train_settings"]


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
    return TrainRecipe(cfg, source_url, synthetic_urls, output_url, init_checkpoint, iters, mode).run()
