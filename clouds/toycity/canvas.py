"""A tiny z-buffered rasteriser: a pinhole camera looking along a flat street.

Everything in toycity is one of three primitives in world metres (X right, Z forward, V up from
the ground): the ground plane, planes facing the camera (the back of a car, a person, a sign) and
vertical planes parallel to the street (a facade, the side of a bus, a fence). Drawing them with a
depth test instead of sorting objects is what gives correct far-to-near occlusion for free, and
rasterising from world units is what makes perspective (small near the horizon) and any output
resolution come out of the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from clouds.labels import NUM_CLASSES
from clouds.toycity.parts import Part

NEAR = 0.5  # metres: closer than this nothing is drawn (it would fill the image)
FAR = 1.0e4  # metres: depth given to the sky and the ground at the horizon

FACE_SKY, FACE_GROUND, FACE_FRONT, FACE_SIDE = 0, 1, 2, 3

PatternResult = np.ndarray | tuple[np.ndarray, np.ndarray]
# pattern(a, v, mpp): a = metres along the primitive, v = metres above its bottom edge, mpp = metres per
# pixel there (so thin things can be kept at least a pixel wide). Returns Part ids (-1 = empty),
# optionally with a per-pixel "cell" value in [0, 1) (which window, which tile).
Pattern = Callable[[np.ndarray, np.ndarray, np.ndarray], PatternResult]


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at X=0, height `elevation`, looking along +Z with a level horizon."""

    height: int
    width: int
    focal: float
    horizon: float
    elevation: float

    @property
    def cx(self) -> float:
        return self.width / 2.0


@dataclass(frozen=True)
class Instance:
    kind: str  # what it is (car, tree, sign_round...): picks its colour distribution
    cls: int  # train id of its pixels


@dataclass(frozen=True)
class Light:
    """A light that illuminates the ground at night (street lamp, headlights)."""

    kind: str
    x: float
    z: float
    reach: float


@dataclass
class Canvas:
    """Per-pixel buffers the layout draws into and the renderer colours."""

    camera: Camera
    instances: list[Instance] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)

    def __post_init__(self) -> None:
        h, w = self.camera.height, self.camera.width
        self.inst = np.zeros((h, w), np.int32)
        self.part = np.full((h, w), int(Part.SKY), np.uint8)
        self.depth = np.full((h, w), FAR, np.float32)
        self.vfrac = np.zeros((h, w), np.float32)
        self.cell = np.zeros((h, w), np.float32)
        self.face = np.full((h, w), FACE_SKY, np.uint8)
        self.instances = [Instance("sky", 10)]

    def add_instance(self, kind: str, cls: int) -> int:
        if not 0 <= cls < NUM_CLASSES:
            raise ValueError(f"instance {kind!r}: class {cls} is not a train id")
        self.instances.append(Instance(kind, cls))
        return len(self.instances) - 1

    def label(self) -> np.ndarray:
        lut = np.array([i.cls for i in self.instances], np.uint8)
        return lut[self.inst]

    # -- primitives -------------------------------------------------------------------------
    def draw_ground(self, classify: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Fill every pixel below the horizon with the ground plane; `classify(X, Z)` says what is where."""
        cam = self.camera
        r0 = max(0, math.ceil(cam.horizon - 0.5))
        if r0 >= cam.height:
            return
        ys = np.arange(r0, cam.height) + 0.5
        dy = np.maximum(ys - cam.horizon, 1e-3)
        z = np.minimum(cam.focal * cam.elevation / dy, FAR)[:, None]
        x = (np.arange(cam.width) + 0.5 - cam.cx)[None, :] * z / cam.focal
        inst, part, cell = classify(x, np.broadcast_to(z, x.shape))
        self.inst[r0:] = inst
        self.part[r0:] = part
        self.cell[r0:] = cell
        self.depth[r0:] = np.broadcast_to(z, x.shape)
        self.face[r0:] = FACE_GROUND
        self.vfrac[r0:] = 0.0

    def draw_frontal(
        self, inst: int, z: float, x0: float, x1: float, v0: float, v1: float, pattern: Pattern,
        min_px: float = 0.0,
    ) -> None:
        """A plane facing the camera at depth z, spanning X in [x0, x1] and heights [v0, v1]."""
        cam = self.camera
        if z <= NEAR or x1 <= x0 or v1 <= v0:
            return
        s = cam.focal / z
        px0, px1 = cam.cx + x0 * s, cam.cx + x1 * s
        if px1 - px0 < min_px:
            mid = 0.5 * (px0 + px1)
            px0, px1 = mid - 0.5 * min_px, mid + 0.5 * min_px
        py0 = cam.horizon + (cam.elevation - v1) * s
        py1 = cam.horizon + (cam.elevation - v0) * s
        c0, c1 = max(0, math.ceil(px0 - 0.5)), min(cam.width, math.ceil(px1 - 0.5))
        r0, r1 = max(0, math.ceil(py0 - 0.5)), min(cam.height, math.ceil(py1 - 0.5))
        if c0 >= c1 or r0 >= r1:
            return
        xs = np.arange(c0, c1) + 0.5
        ys = np.arange(r0, r1) + 0.5
        a = ((xs - px0) / (px1 - px0) * (x1 - x0))[None, :]
        v = (cam.elevation - (ys - cam.horizon) / s)[:, None]
        mpp = np.full((1, 1), 1.0 / s)
        self._write(inst, (slice(r0, r1), slice(c0, c1)), pattern(a, v - v0, mpp),
                    np.float32(z), (v - v0) / (v1 - v0), FACE_FRONT)

    def draw_side(
        self, inst: int, xs: float, z0: float, z1: float, v0: float, v1: float, pattern: Pattern,
    ) -> None:
        """A vertical plane along the street at X = xs, from depth z0 to z1, heights [v0, v1]."""
        cam = self.camera
        z0 = max(z0, NEAR)
        if z1 <= z0 or v1 <= v0 or abs(xs) < 1e-3:
            return
        p_near, p_far = cam.cx + cam.focal * xs / z0, cam.cx + cam.focal * xs / z1
        lo, hi = min(p_near, p_far), max(p_near, p_far)
        c0, c1 = max(0, math.ceil(lo - 0.5)), min(cam.width, math.ceil(hi - 0.5))
        if c0 >= c1:
            return
        cols = np.arange(c0, c1) + 0.5
        dx = cols - cam.cx
        keep = dx * xs > 0
        if not keep.any():
            return
        cols, dx = cols[keep], dx[keep]
        c0, c1 = int(cols[0] - 0.5), int(cols[-1] - 0.5) + 1
        z = cam.focal * xs / dx
        s = cam.focal / z
        top = cam.horizon + (cam.elevation - v1) * s
        bottom = cam.horizon + (cam.elevation - v0) * s
        r0 = max(0, math.ceil(float(top.min()) - 0.5))
        r1 = min(cam.height, math.ceil(float(bottom.max()) - 0.5))
        if r0 >= r1:
            return
        ys = (np.arange(r0, r1) + 0.5)[:, None]
        v = cam.elevation - (ys - cam.horizon) / s[None, :]
        a = (z - z0)[None, :]
        inside = (v >= v0) & (v < v1)
        parts = pattern(a, v - v0, (1.0 / s)[None, :])
        if isinstance(parts, tuple):
            parts = (np.where(inside, parts[0], -1), parts[1])
        else:
            parts = np.where(inside, parts, -1)
        self._write(inst, (slice(r0, r1), slice(c0, c1)), parts,
                    np.broadcast_to(z.astype(np.float32)[None, :], v.shape), (v - v0) / (v1 - v0), FACE_SIDE)

    def _write(self, inst: int, sl: tuple[slice, slice], result: PatternResult, depth, vfrac, face: int) -> None:
        parts, cell = result if isinstance(result, tuple) else (result, None)
        shape = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        parts = np.broadcast_to(parts, shape)
        mask = (parts >= 0) & (depth < self.depth[sl])
        if not mask.any():
            return
        np.copyto(self.part[sl], parts, where=mask, casting="unsafe")
        self.inst[sl][mask] = inst
        np.copyto(self.depth[sl], np.broadcast_to(depth, shape), where=mask, casting="same_kind")
        np.copyto(self.vfrac[sl], np.broadcast_to(vfrac, shape), where=mask, casting="same_kind")
        self.cell[sl][mask] = 0.0 if cell is None else np.broadcast_to(cell, shape)[mask]
        self.face[sl][mask] = face
