"""Teacher inference: argmax label plus a confidence map, batched under inference_mode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clouds.labels import IGNORE


def _to_batch(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    stacked = np.stack([np.asarray(im) for im in images])  # B,H,W,3 uint8
    return torch.from_numpy(stacked).to(device).permute(0, 3, 1, 2).float()


@torch.inference_mode()
def winning_share(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax train ids (uint8) and the winner's share of the summed scores in [0, 1], for [B,C,H,W] scores:
    Mask2Former's per-class scores are not normalised, so this is the confidence pseudo labels and
    `clouds predict` report."""
    best, label = scores.max(1)
    return label.to(torch.uint8), (best / scores.sum(1).clamp_min(1e-12)).clamp(0, 1)


def label_images(
    teacher: torch.nn.Module,
    images: Sequence[np.ndarray],
    batch_size: int,
    device: torch.device,
    confidence_threshold: float | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(label uint8 HxW, confidence uint8 HxW) per image.

    Confidence is the winning class's share of the summed semantic scores, because Mask2Former's
    per-class scores (class prob x mask prob, summed over queries) are not normalised. The reference
    keeps every pixel; with a threshold, pixels below it go to ignore (255).
    """
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"image {i}: expected HxWx3 uint8, got {im.shape} {im.dtype}")
        by_shape.setdefault(im.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            scores = teacher.predict_scores(_to_batch([images[i] for i in chunk], device)).float()
            label, conf = winning_share(scores)
            label = label.clone()  # an inference tensor when the model scores under inference_mode
            if confidence_threshold is not None:
                label[conf < confidence_threshold] = IGNORE
            conf_u8 = (conf * 255).round().to(torch.uint8)
            for j, i in enumerate(chunk):
                out[i] = (label[j].cpu().numpy(), conf_u8[j].cpu().numpy())
    return [o for o in out if o is not None]
