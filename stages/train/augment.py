"""Training augmentations (SPEC "Training recipe"), built from torchvision.transforms.v2 on Image/Mask pairs.

Source images, in the reference mapper's order: random rescale of the base short side (0.5-2.0), random
crop padded to the crop size (image 0, label 255; detectron2 `FixedSizeCrop(pad=True)`), then SSD colour
jitter, then horizontal flip. Padding before the jitter means the jitter's brightness offset can lighten the
padded border, and the flip can move it to the left: both as in the reference.
Generated images: flip only at native size; the teacher's clean view and the student's jittered view
share that flip so a pseudo label made on one is the label of the other.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from clouds.labels import IGNORE


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    for item in flat_inputs:
        if isinstance(item, (tv_tensors.Image, tv_tensors.Mask)):
            h, w = F.get_size(item)
            return int(h), int(w)
    raise TypeError("expected a torchvision tv_tensors.Image or tv_tensors.Mask among the inputs")


class SSDColorJitter(v2.Transform):
    """The SSD photometric distortion with the reference's semantics (detectron2 ColorAugSSDTransform).

    torchvision's RandomPhotometricDistort is a different recipe: multiplicative brightness, contrast
    blended towards the mean grey, and a random channel permutation; its saturation blends with grey. The
    reference adds a brightness offset on the 0-255 scale, multiplies for contrast, and edits saturation
    and hue in OpenCV's uint8 HSV: S is multiplied (clipped, truncated), H shifted modulo 180 (OpenCV hue
    units, so hue_delta 18 is +-36 degrees). Saturation and hue therefore go through OpenCV here too, the
    library detectron2 calls. Each edit fires with probability p; contrast goes first or last at random.
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 0.5,
    ):
        super().__init__()
        if not 0 <= hue_delta <= 90:
            raise ValueError(f"hue_delta is in OpenCV units (0..90 = up to half a turn), got {hue_delta}")
        self.brightness_delta = float(brightness_delta)
        self.contrast = contrast
        self.saturation = saturation
        self.hue_delta = int(hue_delta)
        self.p = p

    def _maybe(self) -> bool:
        return bool(torch.rand(()) < self.p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        d = self.brightness_delta
        return {
            "brightness": float(torch.empty(()).uniform_(-d, d)) if self._maybe() else None,
            "contrast": float(torch.empty(()).uniform_(*self.contrast)) if self._maybe() else None,
            "saturation": float(torch.empty(()).uniform_(*self.saturation)) if self._maybe() else None,
            "hue": int(torch.randint(-self.hue_delta, self.hue_delta + 1, ())) if self._maybe() else None,
            "contrast_first": bool(torch.rand(()) < 0.5),
        }

    @staticmethod
    def _affine(image: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        # Like the reference's convert(): float math, clip, truncate back to uint8.
        out = image.to(torch.float32)
        if alpha != 1.0:
            out.mul_(alpha)
        if beta:
            out.add_(beta)
        return out.clamp_(0, 255).to(torch.uint8)

    @staticmethod
    def _hsv(image: torch.Tensor, saturation: float | None, hue: int | None) -> torch.Tensor:
        """Saturation then hue, each a round trip through OpenCV's uint8 HSV as the reference does."""
        rgb = image.permute(1, 2, 0).contiguous().numpy()
        if saturation is not None:
            hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = np.clip(hsv[:, :, 1].astype(np.float32) * saturation, 0, 255).astype(np.uint8)
            rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if hue is not None:
            hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int32) + hue) % 180).astype(np.uint8)
            rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        if inpt.dtype != torch.uint8:
            raise TypeError(f"SSDColorJitter works on uint8 images (0..255), got {inpt.dtype}")
        image = inpt.as_subclass(torch.Tensor)
        if params["brightness"] is not None:
            image = self._affine(image, 1.0, params["brightness"])
        if params["contrast"] is not None and params["contrast_first"]:
            image = self._affine(image, params["contrast"], 0.0)
        if params["saturation"] is not None or params["hue"] is not None:
            image = self._hsv(image, params["saturation"], params["hue"])
        if params["contrast"] is not None and not params["contrast_first"]:
            image = self._affine(image, params["contrast"], 0.0)
        return tv_tensors.wrap(image, like=inpt)


class RandomCropWithin(v2.Transform):
    """A random crop of at most `size`: sides shorter than the crop are kept whole (padded next)."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        top = int(torch.randint(0, h - ch + 1, ()))
        left = int(torch.randint(0, w - cw + 1, ()))
        return {"top": top, "left": left, "height": ch, "width": cw}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class PadTo(v2.Transform):
    """Pad bottom/right up to `size`: images with 0, label masks with the ignore id."""

    def __init__(self, size: tuple[int, int], image_fill: int = 0, mask_fill: int = IGNORE):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.image_fill, self.mask_fill = image_fill, mask_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        return {"padding": [0, 0, max(0, self.size[1] - w), max(0, self.size[0] - h)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else self.image_fill
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=fill)


def source_transform(
    crop_size: tuple[int, int],
    base_size: tuple[int, int],
    scale_range: tuple[float, float] = (0.5, 2.0),
    color_jitter: bool = True,
) -> v2.Transform:
    """The source-domain pipeline in the reference's order (scale, crop + pad, jitter, flip); the short side
    is rescaled to scale x min(base_size), aspect kept."""
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
    short = min(base_size)
    min_side, max_side = max(1, round(lo * short)), max(1, round(hi * short))
    steps: list[v2.Transform] = [
        v2.RandomResize(min_side, max_side + 1, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        RandomCropWithin(crop_size),
        PadTo(crop_size),
    ]
    if color_jitter:
        steps.append(SSDColorJitter())
    steps.append(v2.RandomHorizontalFlip(0.5))
    return v2.Compose(steps)


def to_tv(image: np.ndarray, label: np.ndarray, where: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """HxWx3 uint8 image and HxW uint8 label as torchvision tensors, refusing mismatched pairs."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{where}: image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"{where}: label must be HxW uint8, got shape {label.shape} dtype {label.dtype}")
    if label.shape != image.shape[:2]:
        raise ValueError(f"{where}: label size {label.shape} differs from image size {image.shape[:2]}")
    img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous())
    return img, tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(label)))


def generated_views(
    image: tv_tensors.Image, label: tv_tensors.Mask, color_jitter: bool = True
) -> tuple[tv_tensors.Image, tv_tensors.Image, tv_tensors.Mask]:
    """(clean, jittered, label) of a generated image: one shared random flip, jitter on the student's view."""
    clean, label = v2.RandomHorizontalFlip(0.5)(image, label)
    jittered = SSDColorJitter()(clean) if color_jitter else clean
    return clean, jittered, label
