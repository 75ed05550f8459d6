"""AdamW with the reference's weight-decay groups, and the constant / poly learning-rate schedules.

Mask2Former's build_optimizer exempts normalisation layers and nn.Embedding tables (the query
features/positions and level embeddings in transformers' Mask2Former) from weight decay; biases and
every other weight keep it. Frozen parameters (the CLIP backbone) are not handed to the optimizer. A module
may name parameters of its own that take no weight decay in a `NO_WEIGHT_DECAY` class attribute (Rein's
tokens and scale, as the Rein recipe sets decay_mult 0 for them).
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from torch import nn

from clouds.errors import InputError

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
# Parameters that are position tables even when held as a bare nn.Parameter (Swin/ViT naming, as in the reference).
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")
NORM_CLASS_NAME = re.compile(r"Norm(\d+d)?$")


def _is_norm(module: nn.Module) -> bool:
    # Matched by class name too, so RMSNorm-style or library-specific norm classes (e.g. ConvNeXt's
    # LayerNorm2d) are caught without importing every library that defines one.
    return isinstance(module, NORM_TYPES) or bool(NORM_CLASS_NAME.search(type(module).__name__))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and norms + embeddings with weight decay 0."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = (_is_norm(module) or isinstance(module, nn.Embedding) or any(n in name for n in NO_DECAY_NAMES)
                      or name in getattr(module, "NO_WEIGHT_DECAY", ()))
            (no_decay if exempt else decay).append(param)
    if not decay and not no_decay:
        raise InputError(f"{type(model).__name__} has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: Literal["constant", "poly"], total_iters: int, power: float = 0.9
) -> torch.optim.lr_scheduler.LRScheduler:
    """lr_t = lr (constant) or lr * (1 - t / total_iters) ** power (poly), stepped once per iteration."""
    if kind == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if kind == "poly":
        if total_iters < 1:
            raise ValueError(f"a poly schedule needs total_iters >= 1, got {total_iters}")
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_iters, power=power)
    raise ValueError(f"unknown lr schedule {kind!r}: expected 'constant' or 'poly'")


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> float:
    """Full-model clipping: one norm over every trainable gradient (Mask2Former's 'full_model' mode)."""
    return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
