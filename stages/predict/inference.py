"""Label and confidence maps at each image's own resolution, by the evaluation resize rule or a sliding window.

`resize` (default) is the evaluation protocol of docs/PROTOCOL.md, the reference's: the whole image, single
scale, short side resized (stages.evaluate.stage.resize_short_side, PIL bilinear, detectron2 rounding); the
scores are then upsampled bilinearly to the input size before the argmax, so every label PNG matches its
image. `slide` is not the reference: windows of the full-resolution image, scores averaged where they
overlap, for images much larger than what the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as TF
from torch import nn

from stages.evaluate.stage import resize_short_side
from stages.predict.errors import PredictInputError
from stages.pseudo_label.labeler import winning_share


@dataclass(frozen=True)
class InferenceSettings:
    """How one image becomes scores; part of the output's config hash (batch size is not: it only groups)."""

    mode: str = "resize"
    short_side: int | None = 1024
    window: int = 512
    stride: int | None = None
    weights: str = "student"
    confidence: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("resize", "slide"):
            raise PredictInputError(f"inference mode must be 'resize' or 'slide', got {self.mode!r}")
        if self.window < 32 or (self.stride is not None and not 1 <= self.stride <= self.window):
            raise PredictInputError(f"sliding window {self.window} must be >= 32 and its stride in 1..{self.window}")

    @property
    def step(self) -> int:
        return self.stride or max(1, (2 * self.window) // 3)


def _chw(array: np.ndarray) -> torch.Tensor:
    """uint8 [3,H,W] of an HxWx3 array (copied when read-only, as Pillow's arrays are)."""
    return torch.from_numpy(array if array.flags.writeable else array.copy()).permute(2, 0, 1).contiguous()


def _to_float(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    return torch.stack(images).to(device).float()


def _label_and_confidence(scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Argmax label and the winner's share of the summed scores (Mask2Former's class scores are not
    normalised; the same confidence the pseudo-labeler writes), both uint8."""
    label, share = winning_share(scores[None])
    return label[0].cpu().numpy(), (share[0] * 255).round().to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def _resize_batch(model: nn.Module, images: list[torch.Tensor], sizes: list[tuple[int, int]],
                  device: torch.device) -> list[tuple[np.ndarray, np.ndarray]]:
    scores = model.predict_scores(_to_float(images, device)).float()
    return [_label_and_confidence(TF.interpolate(s[None], size=hw, mode="bilinear", align_corners=False)[0])
            for s, hw in zip(scores, sizes, strict=True)]


def _starts(length: int, window: int, step: int) -> list[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window, step)) + [length - window]
    return sorted(set(starts))


@torch.inference_mode()
def slide_scores(model: nn.Module, image: torch.Tensor, settings: InferenceSettings, batch_size: int,
                 device: torch.device) -> torch.Tensor:
    """Scores [C,H,W] of one uint8 [3,H,W] image, averaged over overlapping windows at full resolution."""
    h, w = image.shape[-2:]
    wh, ww = min(settings.window, h), min(settings.window, w)
    boxes = [(y, x) for y in _starts(h, wh, settings.step) for x in _starts(w, ww, settings.step)]
    total: torch.Tensor | None = None
    count = torch.zeros(1, h, w, device=device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        crops = [image[:, y : y + wh, x : x + ww] for y, x in chunk]
        scores = model.predict_scores(_to_float(crops, device)).float()
        if total is None:
            total = torch.zeros(scores.shape[1], h, w, device=device)
        for s, (y, x) in zip(scores, chunk, strict=True):
            total[:, y : y + wh, x : x + ww] += s
            count[:, y : y + wh, x : x + ww] += 1
    assert total is not None
    return total / count


def predict_images(model: nn.Module, images: list[np.ndarray], settings: InferenceSettings, batch_size: int,
                   device: torch.device) -> list[tuple[np.ndarray, np.ndarray]]:
    """(label uint8 HxW, confidence uint8 HxW) per HxWx3 uint8 image, each at the image's own size.

    Under `resize`, consecutive images of equal resized size share a forward pass (as in evaluate)."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    if settings.mode == "slide":
        for array in images:
            tensor = _chw(array)
            out.append(_label_and_confidence(slide_scores(model, tensor, settings, batch_size, device)))
        return out
    batch: list[torch.Tensor] = []
    sizes: list[tuple[int, int]] = []
    for array in images:
        tensor = _chw(array)
        resized, _ = resize_short_side(tensor, None, settings.short_side)
        if batch and (len(batch) == batch_size or batch[0].shape != resized.shape):
            out += _resize_batch(model, batch, sizes, device)
            batch, sizes = [], []
        batch.append(resized)
        sizes.append((array.shape[0], array.shape[1]))
    if batch:
        out += _resize_batch(model, batch, sizes, device)
    return out
