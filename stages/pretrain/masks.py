"""Streets with every object's mask: the class-agnostic data a small Segment Anything model learns from.

SAM was trained on SA-1B: images with masks of every object and region, no class names. The toy world's
stand-in renders streets, each in one domain drawn from all six (fog and night included, as web images
include them), half of the photographic ones in the `generated` style the synthesize stage draws, and
keeps the renderer's object ids (`canvas.inst`: every car, pole, tree, the road, each sidewalk, the sky).
No class is read. Content seeds are apart from every data set the demo trains or scores on.

Batches are built the way `SamPredictor` sees an image at refinement time: the image resized by SAM's own
`ResizeLongestSide`, points moved by its `apply_coords`, a few positive points per mask (refinement prompts
each teacher component with `refine.points_per_component` of them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide
from tqdm.auto import tqdm

from clouds.toycity.dataset import scene_for
from clouds.toycity.layout import build_scene
from clouds.toycity.render import condition_for, render_scene

log = logging.getLogger(__name__)

PAD_POINT = -1
"""segment_anything's label for a point that is not there (prompts with fewer points are padded)."""


@dataclass
class SamBatch:
    """`images` [B,3,S,S] normalised and padded by `Sam.preprocess`; per image: `points` [K,N,2] in the
    resized frame, `labels` [K,N] (1 or PAD_POINT), `masks` [K,H,W] float at the original size."""

    images: torch.Tensor
    points: list[torch.Tensor]
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]
    input_size: tuple[int, int]
    original_size: tuple[int, int]


@dataclass
class MaskBank:
    """`images[s]` (uint8 HxWx3) of street s in `domain[s]`; `inst[s]` its object ids."""

    images: np.ndarray
    inst: np.ndarray
    domains: list[str]

    @classmethod
    def render(cls, domains: tuple[str, ...], scenes: int, seed: int, height: int, width: int,
               generated_share: float) -> MaskBank:
        images = np.zeros((scenes, height, width, 3), np.uint8)
        inst = np.zeros((scenes, height, width), np.int32)
        chosen: list[str] = []
        for s in tqdm(range(scenes), desc=f"pretrain-sam: render {scenes} streets", unit="street", mininterval=2.0):
            rng = np.random.default_rng([seed, s])
            domain = domains[int(rng.integers(len(domains)))]
            style = "generated" if domain != "sim" and rng.random() < generated_share else "target"
            spec = scene_for(s, seed)
            scene = build_scene(spec, height, width)
            images[s], _ = render_scene(scene, condition_for(spec, domain), domain, int(rng.integers(2**31)), style)
            inst[s] = scene.canvas.inst
            chosen.append(domain)
        log.info("pretrain-sam: rendered %d streets (%s)", scenes,
                 ", ".join(f"{d} {chosen.count(d)}" for d in domains))
        return cls(images, inst, chosen)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rng: np.random.Generator, size: int, masks_per_image: int, max_points: int, min_area: int,
              sam: torch.nn.Module) -> SamBatch:
        """`size` images, flipped at random, each with `masks_per_image` objects of at least `min_area` pixels
        (drawn with replacement when a street has fewer) and 1..`max_points` positive points inside each
        (`max_points` most of the time: what refinement gives a component of that many pixels)."""
        transform = ResizeLongestSide(sam.image_encoder.img_size)
        h, w = self.inst.shape[1:]
        streets = rng.integers(0, len(self), size)
        images, points, labels, masks = [], [], [], []
        for street in streets:
            flip = bool(rng.random() < 0.5)
            image = self.images[street][:, ::-1] if flip else self.images[street]
            inst = self.inst[street][:, ::-1] if flip else self.inst[street]
            resized = transform.apply_image(np.ascontiguousarray(image))
            images.append(torch.from_numpy(resized).permute(2, 0, 1).float())
            ids, areas = np.unique(inst, return_counts=True)
            candidates = ids[areas >= min_area]
            if candidates.size == 0:  # a street of specks only: take its largest object
                candidates = ids[[int(areas.argmax())]]
            objects = rng.choice(candidates, size=masks_per_image, replace=candidates.size < masks_per_image)
            pts = np.zeros((masks_per_image, max_points, 2), np.float32)
            lab = np.full((masks_per_image, max_points), PAD_POINT, np.int64)
            mk = np.zeros((masks_per_image, h, w), np.float32)
            for row, obj in enumerate(objects):
                ys, xs = np.nonzero(inst == obj)
                n = max_points if rng.random() < 0.7 else int(rng.integers(1, max_points + 1))
                n = min(n, ys.size)
                pick = rng.choice(ys.size, size=n, replace=False)
                pts[row, :n] = np.stack([xs[pick], ys[pick]], axis=1)
                lab[row, :n] = 1
                mk[row] = inst == obj
            points.append(torch.from_numpy(transform.apply_coords(pts, (h, w))))
            labels.append(torch.from_numpy(lab))
            masks.append(torch.from_numpy(mk))
        input_size = tuple(images[0].shape[-2:])
        with torch.no_grad():
            batch = sam.preprocess(torch.stack(images))
        return SamBatch(batch, points, labels, masks, input_size, (h, w))
