"""Streets rendered in every visual domain, with the label-free targets the pretraining objective reads.

The stand-in for web-scale pretraining: a foundation model has seen the world under many conditions,
so the same kind of scene looks alike to it in daylight, fog or at night. Here one laid-out street is
rendered in each domain (the layout is shared, so pixel (y, x) shows the same surface in every render),
and the objective learns from what any camera pair gives for free: depth, which pixels belong to the same
object, and that object's look in another condition. No class label is read: `inst` numbers objects in
drawing order, and which class an object has is never exposed.

Content seeds are separate from every data set the demo trains or evaluates on (those use seeds 1-5 for
streets 0..159), so pretraining never sees a street it is scored on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from clouds.toycity.dataset import scene_for
from clouds.toycity.layout import build_scene
from clouds.toycity.render import condition_for, render_scene

log = logging.getLogger(__name__)

MAX_DEPTH = 200.0
"""Metres: the sky and the horizon (depth 1e4 in toycity) count as this far."""


@dataclass
class PairBank:
    """`images[s, d]`: street s in domain d (uint8 HxWx3); `inst[s]` object ids; `depth[s]` in metres."""

    domains: tuple[str, ...]
    images: np.ndarray  # [S, D, H, W, 3] uint8
    inst: np.ndarray  # [S, H, W] int32
    depth: np.ndarray  # [S, H, W] float32

    @classmethod
    def render(cls, domains: tuple[str, ...], scenes: int, seed: int, height: int, width: int) -> PairBank:
        if len(domains) < 2:
            raise ValueError(f"pretrain.domains needs at least two domains to pair, got {list(domains)}")
        images = np.zeros((scenes, len(domains), height, width, 3), np.uint8)
        inst = np.zeros((scenes, height, width), np.int32)
        depth = np.zeros((scenes, height, width), np.float32)
        for s in tqdm(range(scenes), desc=f"pretrain: render {scenes} streets x {len(domains)} domains",
                      unit="street", mininterval=2.0):
            spec = scene_for(s, seed)
            scene = build_scene(spec, height, width)
            for d, domain in enumerate(domains):
                appearance = int(np.random.SeedSequence([seed, s, d]).generate_state(1)[0])
                images[s, d], _ = render_scene(scene, condition_for(spec, domain), domain, appearance)
            inst[s] = scene.canvas.inst
            depth[s] = np.minimum(scene.canvas.depth, MAX_DEPTH)
        log.info("pretrain: rendered %d streets in %d domains (%s)", scenes, len(domains), ", ".join(domains))
        return cls(tuple(domains), images, inst, depth)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rng: np.random.Generator, size: int, crop_scale: tuple[float, float] = (1.0, 1.0)) -> dict[str, torch.Tensor]:
        """`size` pairs: the same street in two different domains, each view cropped and flipped on its own.

        With `crop_scale` below 1, each view is a random crop covering that share of the image, resized
        back: an object then sits at different places in the two views, so matching it cannot lean on
        where it is. Returns a, b [B,3,H,W] float 0-255, and per view inst [B,H,W] long, depth [B,H,W].
        """
        streets = rng.integers(0, len(self), size)
        pairs = np.stack([rng.choice(len(self.domains), 2, replace=False) for _ in range(size)])
        out: dict[str, torch.Tensor] = {}
        for view, column in (("a", 0), ("b", 1)):
            images, inst, depth = [], [], []
            for street, domain in zip(streets, pairs[:, column], strict=True):
                box = _crop_box(rng, self.inst.shape[1:], crop_scale)
                flip = bool(rng.random() < 0.5)
                images.append(_view(self.images[street, domain], box, flip, "bilinear"))
                inst.append(_view(self.inst[street], box, flip, "nearest"))
                depth.append(_view(self.depth[street], box, flip, "nearest"))
            out[view] = torch.stack(images)
            out[f"inst_{view}"] = torch.stack(inst).long()
            out[f"depth_{view}"] = torch.stack(depth)
        return out


def _crop_box(rng: np.random.Generator, shape: tuple[int, int], scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop with the image's aspect covering a `scale` share of it."""
    h, w = shape
    side = float(np.sqrt(rng.uniform(*scale)))
    ch, cw = max(1, round(h * side)), max(1, round(w * side))
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def _view(x: np.ndarray, box: tuple[int, int, int, int], flip: bool, mode: str) -> torch.Tensor:
    """Crop `x` (HxW or HxWx3) to `box`, resize back to HxW, flip; images come back as 3xHxW float."""
    top, left, ch, cw = box
    h, w = x.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(x[top:top + ch, left:left + cw])).float()
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    if (ch, cw) != (h, w):
        t = torch.nn.functional.interpolate(t, size=(h, w), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    t = t[0] if x.ndim == 3 else t[0, 0]
    return t.flip(-1) if flip else t
