"""The mask-predictor interface the refinement algorithm talks to, and its SAM implementation.

The algorithm only needs "embed this image once, then answer a batch of point prompts"; keeping that
behind a protocol lets tests dictate SAM's answers and lets other promptable segmenters plug in.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from segment_anything import SamPredictor


class MaskPredictor(Protocol):
    def set_image(self, image: np.ndarray) -> None:
        """Embed an HxWx3 uint8 RGB image; later predictions refer to it."""
        ...

    def predict_batch(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points [K,N,2] (x, y) pixels, labels [K,N] (1 positive, -1 padding) ->
        (masks bool [K,M,H,W], predicted IoU [K,M])."""
        ...


def check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} array of shape {image.shape}")


class SamMaskPredictor:
    """segment_anything's SamPredictor, asked about all components of an image in one decoder call.

    With `select_best` (the default) the mask with the highest predicted IoU is picked from SAM's
    low-resolution output before upsampling, so M = 1 comes back: the same mask the refinement would
    pick from all M, at a third of the upsampling work and memory (bilinear upsampling is per channel).
    The chosen masks are upsampled `upsample_chunk` components at a time, which keeps the float logits
    cache-sized (about twice as fast on CPU as one [K, H, W] float tensor; the result is bit-identical).
    Without `select_best`, this is `SamPredictor.predict_torch` unchanged and all M masks come back.
    """

    def __init__(
        self, sam: torch.nn.Module, multimask: bool = True, select_best: bool = True, upsample_chunk: int = 8
    ) -> None:
        if upsample_chunk < 1:
            raise ValueError(f"upsample_chunk must be at least 1, got {upsample_chunk}")
        self.predictor = SamPredictor(sam)
        self.multimask = multimask
        self.select_best = select_best
        self.upsample_chunk = upsample_chunk

    def set_image(self, image: np.ndarray) -> None:
        check_image(image)
        with torch.inference_mode():
            self.predictor.set_image(image, image_format="RGB")

    def prompts_to_torch(self, points: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel prompts of the original image -> prompts in SAM's resized input frame."""
        if points.ndim != 3 or points.shape[2] != 2 or labels.shape != points.shape[:2]:
            raise ValueError(
                f"expected points [K,N,2] and labels [K,N], got {points.shape} and {labels.shape}"
            )
        p = self.predictor
        if not p.is_image_set:
            raise RuntimeError("set_image must be called before predict_batch")
        coords = p.transform.apply_coords_torch(torch.as_tensor(points, device=p.device), p.original_size)
        return coords, torch.as_tensor(labels, dtype=torch.int, device=p.device)

    def predict_batch(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coords, point_labels = self.prompts_to_torch(points, labels)
        p, model = self.predictor, self.predictor.model
        with torch.inference_mode():
            if not self.select_best:
                masks, iou, _ = p.predict_torch(coords, point_labels, multimask_output=self.multimask)
                return masks.cpu().numpy(), iou.float().cpu().numpy()
            # predict_torch's steps, with the choice of mask moved before the upsampling
            sparse, dense = model.prompt_encoder(points=(coords, point_labels), boxes=None, masks=None)
            low_res, iou = model.mask_decoder(
                image_embeddings=p.features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=self.multimask,
            )
            rows, best = torch.arange(iou.shape[0], device=iou.device), iou.argmax(dim=1)
            low_res, iou = low_res[rows, best, None], iou[rows, best, None]
            masks = torch.empty(
                (low_res.shape[0], 1, *p.original_size), dtype=torch.bool, device=low_res.device
            )
            for start in range(0, low_res.shape[0], self.upsample_chunk):
                chunk = slice(start, start + self.upsample_chunk)
                logits = model.postprocess_masks(low_res[chunk], p.input_size, p.original_size)
                torch.gt(logits, model.mask_threshold, out=masks[chunk])
        return masks.cpu().numpy(), iou.float().cpu().numpy()
