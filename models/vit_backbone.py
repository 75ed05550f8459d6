"""A timm ViT tower (DINOv2, EVA02, SigLIP, ...) read at four blocks and turned into a stride 4/8/16/32 pyramid.

Frozen as CLOUDS freezes its CLIP tower: the pretrained weights never require grad and stay in eval mode.
What trains, if anything, is small and named: Rein tokens (`reins.*`), LoRA adapters (`*.lora_*`) and a
learned neck (`neck.*`). Those are what a checkpoint stores, what the optimiser sees, and what the EMA
teacher averages; the teacher's copy (`teacher_copy`) shares the frozen tensors with the student, so a
ViT-L is held once. With `freeze: false` everything trains and the teacher copies everything.

No text tower: the text head and the CLIP ensemble are refused by the config (`ModelConfig`).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from clouds.config.model import BackboneConfig
from clouds.errors import InputError
from models.lora import inject_lora
from models.rein import ReinHook, Reins
from models.vit_neck import ViTPyramidNeck

TRAINED_PREFIXES = ("reins.", "neck.")
LORA_MARK = ".lora_"


def default_out_indices(depth: int) -> tuple[int, ...]:
    """The last block of each quarter of the depth (24 blocks: 5, 11, 17, 23)."""
    return tuple(max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4))


class ViTBackbone(nn.Module):
    def __init__(self, tower: nn.Module, cfg: BackboneConfig) -> None:
        super().__init__()
        if not hasattr(tower, "forward_intermediates") or not hasattr(tower, "blocks"):
            raise InputError(f"backbone.name {cfg.name!r}: timm model {type(tower).__name__} is not a ViT with "
                             "blocks and forward_intermediates; use a ViT (DINOv2, EVA02, SigLIP) or an open_clip tower")
        depth, dim = len(tower.blocks), int(tower.embed_dim)
        indices = tuple(cfg.out_indices) if cfg.out_indices is not None else default_out_indices(depth)
        if sorted(indices) != list(indices) or not all(0 <= i < depth for i in indices):
            raise InputError(f"backbone.out_indices {list(indices)} must be increasing block numbers in 0..{depth - 1}")
        self.out_indices = indices
        self.tower = tower
        self.frozen = cfg.freeze
        self.peft_kind = cfg.peft.kind
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std, dtype=torch.float32).view(1, 3, 1, 1), False)
        if cfg.freeze:
            tower.requires_grad_(False)
        if cfg.peft.kind == "rein":
            patch = int(tower.patch_embed.patch_size[0])
            self.reins = Reins(depth, dim, patch, cfg.peft.rein_tokens, cfg.peft.rein_rank, cfg.peft.rein_scale_init)
            prefix = int(getattr(tower, "num_prefix_tokens", 1))
            for i, block in enumerate(tower.blocks):
                block.register_forward_hook(ReinHook(self.reins, i, prefix))
        elif cfg.peft.kind == "lora":
            inject_lora(tower, cfg.peft)
            for name, param in tower.named_parameters():
                param.requires_grad_(LORA_MARK in f".{name}" or not cfg.freeze)
        self.neck = ViTPyramidNeck(dim, cfg.neck)
        self.channels = list(self.neck.channels)
        self.strides = [4, 8, 16, 32]
        self.train(False)

    @property
    def trains_tower(self) -> bool:
        """Whether gradients must flow through the tower (something in or between its blocks trains)."""
        return not self.frozen or self.peft_kind != "none"

    def is_trained(self, name: str) -> bool:
        """Whether the tensor `name` (a state_dict key of this module) is learned rather than pretrained."""
        return not self.frozen or name.startswith(TRAINED_PREFIXES) or LORA_MARK in f".{name}"

    def trained_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores for this backbone: learned tensors only (all of them when not frozen)."""
        return {k: v for k, v in self.state_dict().items() if self.is_trained(k)}

    def frozen_state_dict(self) -> dict[str, Tensor]:
        """The pretrained tensors the checkpoint's weight hash covers (they never change during training)."""
        return {k: v for k, v in self.state_dict().items() if not self.is_trained(k)}

    def teacher_copy(self) -> ViTBackbone:
        """A copy whose learned tensors are its own and whose frozen tensors are the student's (no second ViT-L)."""
        shared = {id(p): p for n, p in self.named_parameters() if not self.is_trained(n)}
        shared.update({id(b): b for n, b in self.named_buffers() if not self.is_trained(n)})
        twin = copy.deepcopy(self, memo=shared)
        twin.requires_grad_(False)
        return twin.train(False)

    def train(self, mode: bool = True) -> ViTBackbone:
        """The frozen tower stays in eval mode (dropout, drop-path off); adapters and the neck follow `mode`."""
        super().train(mode)
        if self.frozen:
            self.tower.eval()
            for name, module in self.tower.named_modules():
                if name.endswith("lora_dropout"):
                    module.train(mode)
        return self

    def normalize(self, images: Tensor) -> Tensor:
        """RGB on the 0-255 scale -> normalised input (mean/std are given on the 0-255 scale too)."""
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> list[Tensor]:
        """Normalised images [B,3,H,W] (H, W multiples of 32) -> features at strides 4, 8, 16, 32."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trains_tower):
            levels = self.tower.forward_intermediates(
                images, indices=list(self.out_indices), norm=False, output_fmt="NCHW", intermediates_only=True
            )
        return self.neck(levels, (int(images.shape[-2]), int(images.shape[-1])))

    def extra_repr(self) -> str:
        return f"out_indices={self.out_indices}, frozen={self.frozen}, peft={self.peft_kind}"
