"""The label-free dense objective that pretrains the tiny image tower (issue 15).

Three terms, each read off a street rendered in two domains (`pairs.PairBank`):
- cross-domain object matching: each object's mask-pooled embedding in domain A must pick out the same
  object in domain B among every object of the batch (InfoNCE, both directions). This is what makes a
  frozen tower useful to CLOUDS: a decoder trained on `sim` features meets the same features in fog.
- depth: log depth regressed from both renders, so features carry scene geometry (road vs. facade).
- object boundaries: where the object id changes, so features separate neighbouring objects.

A small FPN over the tower's four levels feeds the three heads at stride 8; only the tower is kept.
Measured alternatives are in benchmarks/RESULTS.md ("A pretrained tiny tower").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.pretrain.pairs import MAX_DEPTH

STRIDE = 8


@dataclass(frozen=True)
class ObjectiveWeights:
    match: float = 1.0
    depth: float = 1.0
    edge: float = 1.0
    temperature: float = 0.1
    min_pixels: int = 16  # objects smaller than this (at full resolution) are not matched


class DenseHeads(nn.Module):
    """FPN-lite over strides 4/8/16/32 -> one stride-8 map -> embedding, depth and boundary heads."""

    def __init__(self, channels: list[int], dim: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in channels)
        self.fuse = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(8, dim), nn.GELU())
        self.embed = nn.Conv2d(dim, dim, 1)
        self.depth = nn.Conv2d(dim, 1, 1)
        self.edge = nn.Conv2d(dim, 1, 1)

    def forward(self, feats: list[Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        x = sum(F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False)
                for lat, f in zip(self.lateral, feats, strict=True))
        x = self.fuse(x)
        return {"embed": F.normalize(self.embed(x), dim=1), "depth": self.depth(x)[:, 0], "edge": self.edge(x)[:, 0]}


def object_masks(inst: Tensor, size: tuple[int, int], min_pixels: int, k: int) -> tuple[Tensor, Tensor]:
    """Per image, each of `k` object ids' share of every stride-8 cell: [B, k, h, w], and a validity mask
    [B, k] (objects with at least `min_pixels` pixels in this view)."""
    onehot = F.one_hot(inst, k).permute(0, 3, 1, 2).float()  # [B,K,H,W]
    valid = onehot.sum(dim=(2, 3)) >= min_pixels
    return F.adaptive_avg_pool2d(onehot, size), valid


def match_loss(ea: Tensor, eb: Tensor, masks_a: Tensor, masks_b: Tensor, valid: Tensor,
               temperature: float) -> tuple[Tensor, Tensor]:
    """InfoNCE between the two views' mask-pooled object embeddings (objects visible in both); also the
    top-1 matching accuracy."""

    def pooled(e: Tensor, masks: Tensor) -> Tensor:
        weights = masks / masks.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return F.normalize(torch.einsum("bkhw,bchw->bkc", weights, e)[valid], dim=-1)

    pa, pb = pooled(ea, masks_a), pooled(eb, masks_b)
    logits = pa @ pb.t() / temperature
    target = torch.arange(len(pa), device=pa.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return loss, accuracy


def depth_target(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """log depth scaled to [0, 1], averaged over each stride-8 cell."""
    scaled = torch.log1p(depth) / math.log1p(MAX_DEPTH)
    return F.adaptive_avg_pool2d(scaled[:, None], size)[:, 0]


def edge_target(inst: Tensor, size: tuple[int, int]) -> Tensor:
    """1 where a stride-8 cell contains an object boundary."""
    edge = torch.zeros_like(inst, dtype=torch.float32)
    edge[:, :, 1:] = torch.maximum(edge[:, :, 1:], (inst[:, :, 1:] != inst[:, :, :-1]).float())
    edge[:, 1:, :] = torch.maximum(edge[:, 1:, :], (inst[:, 1:, :] != inst[:, :-1, :]).float())
    return F.adaptive_max_pool2d(edge[:, None], size)[:, 0]


class DenseCrossDomainObjective(nn.Module):
    """Loss of a batch of pairs for a tower given as `features(images) -> [stride 4, 8, 16, 32 maps]`."""

    def __init__(self, channels: list[int], dim: int, weights: ObjectiveWeights):
        super().__init__()
        self.heads = DenseHeads(channels, dim)
        self.w = weights

    def forward(self, feats_a: list[Tensor], feats_b: list[Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """`batch` holds each view's `inst_a`/`inst_b` object ids and `depth_a`/`depth_b` (pairs.PairBank)."""
        h, w = batch["inst_a"].shape[-2:]
        size = (h // STRIDE, w // STRIDE)
        out_a, out_b = self.heads(feats_a, size), self.heads(feats_b, size)
        k = int(max(batch["inst_a"].max(), batch["inst_b"].max())) + 1
        masks_a, valid_a = object_masks(batch["inst_a"], size, self.w.min_pixels, k)
        masks_b, valid_b = object_masks(batch["inst_b"], size, self.w.min_pixels, k)
        match, accuracy = match_loss(out_a["embed"], out_b["embed"], masks_a, masks_b, valid_a & valid_b,
                                     self.w.temperature)
        depth_l = edge_l = torch.zeros(())
        for out, view in ((out_a, "a"), (out_b, "b")):
            depth_l = depth_l + 0.5 * F.l1_loss(out["depth"], depth_target(batch[f"depth_{view}"], size))
            e_target = edge_target(batch[f"inst_{view}"], size)
            pos = e_target.mean().clamp(1e-3, 1 - 1e-3)
            edge_l = edge_l + 0.5 * F.binary_cross_entropy_with_logits(out["edge"], e_target,
                                                                       pos_weight=((1 - pos) / pos).detach())
        loss = self.w.match * match + self.w.depth * depth_l + self.w.edge * edge_l
        return loss, {"loss": loss.item(), "match": match.item(), "match_acc": accuracy.item(),
                      "depth": depth_l.item(), "edge": edge_l.item()}
