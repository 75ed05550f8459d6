"""From four single-scale ViT feature maps to the stride 4/8/16/32 pyramid Mask2Former's pixel decoder reads.

Level i comes from the i-th chosen block. Each map is first brought to stride 16 of the padded input (a
patch-14 tower gives a ceil(H/14) grid), then 'interpolate' resizes it bilinearly by 4, 2, 1 and 1/2 (what
Rein does: no parameters) and 'deconv' uses the ViTDet / BEiT simple pyramid (mmseg `Feature2Pyramid`):
two stride-2 transposed convs (with BatchNorm + GELU between), one, identity, and a 2x2 max-pool. Channels
stay the tower's width at every level, so the decoder's input projections take them as they are.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

STRIDE = 16
SCALES = (4, 2, 1, 0.5)


class ViTPyramidNeck(nn.Module):
    def __init__(self, dim: int, kind: Literal["interpolate", "deconv"] = "interpolate") -> None:
        super().__init__()
        self.kind = kind
        self.channels = [dim] * 4
        if kind == "deconv":
            self.levels = nn.ModuleList([
                nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(),
                              nn.ConvTranspose2d(dim, dim, 2, 2)),
                nn.ConvTranspose2d(dim, dim, 2, 2),
                nn.Identity(),
                nn.MaxPool2d(2, 2),
            ])
        elif kind != "interpolate":
            raise ValueError(f"backbone.neck {kind!r}: expected 'interpolate' or 'deconv'")

    def forward(self, levels: list[Tensor], image_size: tuple[int, int]) -> list[Tensor]:
        """`levels`: 4 maps [B,C,h,w] from the tower; `image_size`: the (padded) input's (H, W)."""
        if len(levels) != 4:
            raise ValueError(f"the pyramid neck needs 4 ViT feature maps, got {len(levels)}")
        base = (image_size[0] // STRIDE, image_size[1] // STRIDE)
        levels = [x if tuple(x.shape[-2:]) == base else
                  F.interpolate(x, size=base, mode="bilinear", align_corners=False) for x in levels]
        if self.kind == "deconv":
            return [layer(x) for layer, x in zip(self.levels, levels, strict=True)]
        out = []
        for scale, x in zip(SCALES, levels, strict=True):
            size = (max(1, int(base[0] * scale)), max(1, int(base[1] * scale)))
            out.append(x if scale == 1 else F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return out
