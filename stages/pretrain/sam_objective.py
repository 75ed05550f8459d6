"""SAM's training objective, as its paper states it, with dice + BCE in place of dice + focal.

For every prompt the mask decoder answers three masks (the ambiguity-aware output refinement reads, with
`refine.multimask: true`); only the best of the three against the true mask is trained, so the three may
specialise (part, object, region); the IoU head regresses each mask's actual IoU, since refinement keeps
the mask it rates highest. Masks are scored at the image's own size, after `Sam.postprocess_masks`, the
step `SamPredictor` takes at inference.

Why BCE: a model this small, trained from scratch on small objects, first settles on empty masks; with
BCE + dice it left them by step 200 (best-mask IoU 0.24). SAM's 20:1 focal + dice was only tried for 100
steps (still empty) and not to the end (benchmarks/RESULTS.md, "A toy SAM").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.pretrain.masks import SamBatch


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """1 - soft dice per mask, over the last two axes."""
    prob = logits.sigmoid()
    inter = (prob * target).sum((-1, -2))
    return 1.0 - (2.0 * inter + 1.0) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + 1.0)


def mask_iou(logits: Tensor, target: Tensor) -> Tensor:
    """IoU of the thresholded masks (logit > 0, SAM's mask threshold) with the targets."""
    pred = logits > 0
    truth = target > 0.5
    union = (pred | truth).sum((-1, -2)).clamp(min=1)
    return (pred & truth).sum((-1, -2)) / union


def sam_loss(sam: torch.nn.Module, batch: SamBatch) -> tuple[Tensor, dict[str, float]]:
    """Mean over images of (best-of-three mask loss + IoU-head MSE); the row logs the parts."""
    embeddings = sam.image_encoder(batch.images)
    pe = sam.prompt_encoder.get_dense_pe()
    mask_terms, iou_terms, ious = [], [], []
    for embedding, points, labels, target in zip(embeddings, batch.points, batch.labels, batch.masks, strict=True):
        sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        low_res, predicted_iou = sam.mask_decoder(
            image_embeddings=embedding[None], image_pe=pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=True,
        )
        logits = sam.postprocess_masks(low_res, batch.input_size, batch.original_size)  # [K,3,H,W]
        truth = target[:, None].expand_as(logits)
        per_mask = F.binary_cross_entropy_with_logits(logits, truth, reduction="none").mean((-1, -2))
        per_mask = per_mask + dice_loss(logits, truth)
        best = per_mask.argmin(dim=1)
        rows = torch.arange(len(best))
        mask_terms.append(per_mask[rows, best].mean())
        with torch.no_grad():
            actual = mask_iou(logits, truth).float()
        iou_terms.append(F.mse_loss(predicted_iou, actual))
        ious.append(actual[rows, best].mean())
    mask_loss, iou_loss = torch.stack(mask_terms).mean(), torch.stack(iou_terms).mean()
    row = {"loss": float((mask_loss + iou_loss).detach()), "mask": float(mask_loss.detach()),
           "iou_head": float(iou_loss.detach()), "best_iou": float(torch.stack(ious).mean())}
    return mask_loss + iou_loss, row
