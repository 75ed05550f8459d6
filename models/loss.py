"""Mask2Former's set loss (transformers' implementation) with a switch for 255 pixels, plus semantic targets.

Semantic targets: one binary mask per class present in the label, classes 0..18 (Mask2Former's "semantic"
mapper). Pixels labelled 255 ("ignore": unlabelled source pixels, crop padding, SAM's "no target") belong
to no mask. What that means for the loss is `model.loss.ignore_pixels`:

* ``negative`` (the reference, default): 255 pixels are zeros of every target mask, so they are negatives
  of every mask in the point-sampled BCE and dice terms and in the matcher's costs. This is what the
  reference criterion does (detectron2's semantic mapper builds `sem_seg == c` masks and the criterion
  samples points over the whole padded image), and it is exactly transformers' stock `Mask2FormerLoss`, used
  here unchanged (`StandardMask2FormerLoss` only gives it the same call signature).
* ``excluded``: 255 pixels carry weight 0 (`IgnoreAwareMask2FormerLoss`). Not the paper's behaviour; it
  keeps the student from learning that SAM's uncovered pixels are "not road, not car, ...". To keep
  transformers' point-sampled formulation, sampled points carry a validity flag:
  - matching (Hungarian costs): the shared random points are filtered to valid pixels before the pairwise
    BCE/dice costs are computed;
  - mask losses: importance sampling never picks an ignored point (its uncertainty is -inf), and the BCE
    and dice terms are computed over valid points only (random points that land on ignored pixels weigh 0).
  Everything else (class CE with no-object weight, the matcher's solver, the point sampler, `num_masks`
  normalisation, deep supervision) is transformers' code, inherited unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerHungarianMatcher,
    Mask2FormerLoss,
    pair_wise_dice_loss,
    pair_wise_sigmoid_cross_entropy_loss,
    sample_point,
)

from clouds.labels import IGNORE


def semantic_targets(labels: Tensor, num_classes: int) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """labels [B,H,W] long (255 ignore) -> (mask_labels [n_i,H,W] float, class_labels [n_i] long, valid [B,H,W]).

    Refuses values that are neither a train id nor 255, naming them, instead of silently training on them.
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B,H,W] train ids, got shape {tuple(labels.shape)}")
    valid = labels != IGNORE
    bad = labels[valid & ((labels < 0) | (labels >= num_classes))]
    if bad.numel():
        raise ValueError(
            f"labels hold values {sorted(set(bad.unique().tolist()))[:10]} that are neither train ids "
            f"(0..{num_classes - 1}) nor {IGNORE}"
        )
    mask_labels, class_labels = [], []
    for label in labels:
        present = torch.unique(label[label != IGNORE])
        class_labels.append(present.long())
        mask_labels.append((label[None] == present[:, None, None]).float())
    return mask_labels, class_labels, valid


def _valid_at(valid: Tensor, coords: Tensor) -> Tensor:
    """Validity (0/1) of a [H,W] map at normalised points [N,P,2] -> [N,P]."""
    n, p, _ = coords.shape
    grid = coords.reshape(1, n * p, 1, 2) * 2.0 - 1.0
    out = F.grid_sample(valid[None, None].float(), grid, mode="nearest", align_corners=False)
    return out.reshape(n, p)


class IgnoreAwareHungarianMatcher(Mask2FormerHungarianMatcher):
    """transformers' matcher, with mask costs computed only on points that fall on labelled pixels."""

    @torch.no_grad()
    def forward(  # type: ignore[override]
        self,
        masks_queries_logits: Tensor,
        class_queries_logits: Tensor,
        mask_labels: list[Tensor],
        class_labels: list[Tensor],
        valid: Tensor,
    ) -> list[tuple[Tensor, Tensor]]:
        indices = []
        for i in range(masks_queries_logits.shape[0]):
            pred_probs = class_queries_logits[i].softmax(-1)
            cost = -self.cost_class * pred_probs[:, class_labels[i]]
            coords = torch.rand(1, self.num_points, 2, device=masks_queries_logits.device)
            keep = _valid_at(valid[i], coords)[0] > 0.5
            if class_labels[i].numel() and bool(keep.any()):
                coords = coords[:, keep]
                target = mask_labels[i].to(masks_queries_logits)[:, None]
                target = sample_point(target, coords.repeat(target.shape[0], 1, 1), align_corners=False).squeeze(1)
                pred = masks_queries_logits[i][:, None]
                pred = sample_point(pred, coords.repeat(pred.shape[0], 1, 1), align_corners=False).squeeze(1)
                cost = (cost + self.cost_mask * pair_wise_sigmoid_cross_entropy_loss(pred, target)
                        + self.cost_dice * pair_wise_dice_loss(pred, target))
            big = torch.finfo(cost.dtype).max
            cost = torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)
            rows, cols = linear_sum_assignment(cost.cpu())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


class GlobalNumMasks:
    """`num_masks` normalisation over the global batch, as the reference criterion does under DDP: the mask
    count is summed over ranks (all-reduce) and divided by the world size. transformers only does this when
    an `accelerate` state exists; under plain torch.distributed each rank divided by its own count, which
    weights the images of a rank with few masks more than one process training the same batch would."""

    def get_num_masks(self, class_labels: list[Tensor], device: torch.device) -> Tensor:
        num_masks = torch.as_tensor(float(sum(len(c) for c in class_labels)), device=device)
        world_size = 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_masks)
            world_size = dist.get_world_size()
        return torch.clamp(num_masks / world_size, min=1)


class StandardMask2FormerLoss(GlobalNumMasks, Mask2FormerLoss):
    """transformers' `Mask2FormerLoss` (255 pixels are negatives of every mask), called like
    `IgnoreAwareMask2FormerLoss` so the segmenter does not branch on the switch; only the mask count is
    all-reduced under DDP (`GlobalNumMasks`), as the reference does."""

    def forward(  # type: ignore[override]
        self,
        masks_queries_logits: Tensor,
        class_queries_logits: Tensor,
        mask_labels: list[Tensor],
        class_labels: list[Tensor],
        valid: Tensor | None = None,  # None when transformers' own deep-supervision loop calls back in
        auxiliary_predictions: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        del valid  # 255 pixels are already zeros of every target mask: negatives, as in the reference
        return super().forward(
            masks_queries_logits, class_queries_logits, mask_labels, class_labels, auxiliary_predictions
        )


class IgnoreAwareMask2FormerLoss(GlobalNumMasks, Mask2FormerLoss):
    """`Mask2FormerLoss` whose matching and mask terms skip 255 pixels (see the module docstring)."""

    def __init__(self, config: Mask2FormerConfig, weight_dict: dict[str, float]) -> None:
        super().__init__(config, weight_dict)
        self.matcher = IgnoreAwareHungarianMatcher(
            cost_class=config.class_weight,
            cost_dice=config.dice_weight,
            cost_mask=config.mask_weight,
            num_points=self.num_points,
        )

    def _sample_valid_points(self, pred_masks: Tensor, valid: Tensor, batch_of_mask: Tensor) -> Tensor:
        """transformers' uncertainty sampling, with ignored points never chosen as "uncertain"."""
        num_masks = pred_masks.shape[0]
        oversampled = int(self.num_points * self.oversample_ratio)
        coords = torch.rand(num_masks, oversampled, 2, device=pred_masks.device)
        uncertainty = self.calculate_uncertainty(sample_point(pred_masks, coords, align_corners=False))[:, 0]
        ok = self._valid_of_masks(valid, batch_of_mask, coords)
        uncertainty = uncertainty.masked_fill(ok < 0.5, float("-inf"))
        num_uncertain = int(self.importance_sample_ratio * self.num_points)
        idx = torch.topk(uncertainty, k=num_uncertain, dim=1)[1]
        chosen = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
        num_random = self.num_points - num_uncertain
        if num_random > 0:
            chosen = torch.cat([chosen, torch.rand(num_masks, num_random, 2, device=pred_masks.device)], dim=1)
        return chosen

    @staticmethod
    def _valid_of_masks(valid: Tensor, batch_of_mask: Tensor, coords: Tensor) -> Tensor:
        out = coords.new_zeros(coords.shape[:2])
        for b in torch.unique(batch_of_mask).tolist():
            sel = batch_of_mask == b
            out[sel] = _valid_at(valid[b], coords[sel])
        return out

    def loss_masks(  # type: ignore[override]
        self,
        masks_queries_logits: Tensor,
        mask_labels: list[Tensor],
        indices: list[tuple[Tensor, Tensor]],
        num_masks: Tensor,
        valid: Tensor,
    ) -> dict[str, Tensor]:
        src_idx = self._get_predictions_permutation_indices(indices)
        tgt_idx = self._get_targets_permutation_indices(indices)
        pred_masks = masks_queries_logits[src_idx][:, None]
        if pred_masks.shape[0] == 0:
            zero = masks_queries_logits.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        target_masks, _ = self._pad_images_to_max_in_batch(mask_labels)
        target_masks = target_masks[tgt_idx][:, None]
        batch_of_mask = tgt_idx[0]
        with torch.no_grad():
            coords = self._sample_valid_points(pred_masks, valid, batch_of_mask)
            point_labels = sample_point(target_masks, coords, align_corners=False).squeeze(1)
            weight = self._valid_of_masks(valid, batch_of_mask, coords)
        point_logits = sample_point(pred_masks, coords, align_corners=False).squeeze(1)

        bce = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
        loss_mask = ((bce * weight).sum(1) / weight.sum(1).clamp(min=1.0)).sum() / num_masks
        probs = point_logits.sigmoid() * weight
        labels = point_labels * weight
        dice = 1 - (2 * (probs * labels).sum(1) + 1) / (probs.sum(1) + labels.sum(1) + 1)
        return {"loss_mask": loss_mask, "loss_dice": dice.sum() / num_masks}

    def forward(  # type: ignore[override]
        self,
        masks_queries_logits: Tensor,
        class_queries_logits: Tensor,
        mask_labels: list[Tensor],
        class_labels: list[Tensor],
        valid: Tensor,
        auxiliary_predictions: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        """Unweighted losses of the last layer ("loss_cross_entropy", "loss_mask", "loss_dice") and of every
        auxiliary layer (same names with "_<i>" appended), exactly as transformers names them."""
        indices = self.matcher(masks_queries_logits, class_queries_logits, mask_labels, class_labels, valid)
        num_masks = self.get_num_masks(class_labels, device=masks_queries_logits.device)
        losses = {
            **self.loss_masks(masks_queries_logits, mask_labels, indices, num_masks, valid),
            **self.loss_labels(class_queries_logits, class_labels, indices),
        }
        for i, aux in enumerate(auxiliary_predictions or []):
            aux_losses = self.forward(
                aux["masks_queries_logits"], aux["class_queries_logits"], mask_labels, class_labels, valid
            )
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses


def build_criterion(
    config: Mask2FormerConfig, weight_dict: dict[str, float], ignore_pixels: str
) -> Mask2FormerLoss:
    """The set loss for `model.loss.ignore_pixels` ('negative' = reference, 'excluded')."""
    losses: dict[str, type[Mask2FormerLoss]] = {
        "negative": StandardMask2FormerLoss,
        "excluded": IgnoreAwareMask2FormerLoss,
    }
    if ignore_pixels not in losses:
        raise ValueError(f"model.loss.ignore_pixels must be one of {sorted(losses)}, got {ignore_pixels!r}")
    return losses[ignore_pixels](config, weight_dict)
