"""LoRA on a timm ViT's attention projections, through peft (optional extra `clouds[peft]`).

peft's `inject_adapter_in_model` swaps the named nn.Linear layers for LoRA layers in place, without wrapping
the tower in a PeftModel, so the tower keeps its timm API (`forward_intermediates`) and the backbone keeps
its own freezing rules. The targets are matched inside each block's `attn` only, so a name like `proj`
never catches the patch embedding's conv. LoRA's B starts at zero: the adapted tower starts as the frozen one.
"""

from __future__ import annotations

import re

from torch import nn

from clouds.config.model import PeftConfig
from clouds.errors import InputError


def lora_target_pattern(targets: tuple[str, ...]) -> str:
    """peft `target_modules` regex (full match on module names): `blocks.<i>.attn.<target>`."""
    names = "|".join(re.escape(t) for t in targets)
    return rf"blocks\.\d+\.attn\.({names})"


def inject_lora(tower: nn.Module, cfg: PeftConfig) -> list[str]:
    """Add LoRA adapters to `tower` in place; returns the adapted module names (an error if none match)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:
        raise ImportError("backbone.peft.kind: lora needs peft: pip install 'clouds[peft]'") from err
    pattern = lora_target_pattern(cfg.lora_targets)
    matched = [n for n, m in tower.named_modules() if isinstance(m, nn.Linear) and re.fullmatch(pattern, n)]
    if not matched:
        raise InputError(f"backbone.peft.lora_targets {list(cfg.lora_targets)} match no linear layer in the "
                         f"tower's attention blocks ({type(tower).__name__})")
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=pattern, bias="none")
    for name, module in tower.named_modules():
        # timm's EVA attention with a fused qkv and q/v biases calls F.linear on `qkv.weight`, which would bypass
        # the adapter; its `qkv_bias_separate` path calls the layer and adds the same bias (identical result).
        if name.endswith("attn") and getattr(module, "q_bias", None) is not None and hasattr(module, "qkv_bias_separate"):
            module.qkv_bias_separate = True
    inject_adapter_in_model(config, tower)
    return matched
