"""Vectorised 2-D shape tests in metres, the vocabulary object sprites are written in.

All take broadcastable arrays `a` (horizontal metres) and `v` (metres above ground) and return a
boolean mask. `thick` widens a stroke to at least a fraction of a pixel (`mpp`, metres per pixel)
so that far-away bicycles and fences do not vanish between pixel centres.
"""

from __future__ import annotations

import numpy as np


def canvas_like(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An empty (-1) part map of the broadcast shape of a and v."""
    return np.full(np.broadcast_shapes(np.shape(a), np.shape(v)), -1, np.int16)


def paint(parts: np.ndarray, mask: np.ndarray, part: int) -> None:
    """Paint `part` where `mask` holds; later paints cover earlier ones (sprites are drawn back to front)."""
    parts[np.broadcast_to(mask, parts.shape)] = part


def thick(r: float, mpp: np.ndarray, min_px: float = 0.45) -> np.ndarray:
    return np.maximum(r, min_px * mpp)


def box(a: np.ndarray, v: np.ndarray, a0: float, a1: float, v0: float, v1: float) -> np.ndarray:
    return (a >= a0) & (a < a1) & (v >= v0) & (v < v1)


def disk(a: np.ndarray, v: np.ndarray, ca: float, cv: float, r, sa: float = 1.0) -> np.ndarray:
    """Disk of radius r; `sa` squeezes it horizontally (a wheel seen at an angle is an ellipse)."""
    return ((a - ca) / sa) ** 2 + (v - cv) ** 2 < np.square(r)


def ring(a: np.ndarray, v: np.ndarray, ca: float, cv: float, r_out: float, width, sa: float = 1.0) -> np.ndarray:
    d = np.sqrt(((a - ca) / sa) ** 2 + (v - cv) ** 2)
    return (d < r_out) & (d > r_out - width)


def segment(a: np.ndarray, v: np.ndarray, p: tuple[float, float], q: tuple[float, float], r) -> np.ndarray:
    """Points within r of the segment p-q: limbs, bicycle tubes, pantographs."""
    pa, pv = p
    da, dv = q[0] - pa, q[1] - pv
    length2 = da * da + dv * dv
    if length2 == 0.0:
        return disk(a, v, pa, pv, r)
    t = np.clip(((a - pa) * da + (v - pv) * dv) / length2, 0.0, 1.0)
    return (a - pa - t * da) ** 2 + (v - pv - t * dv) ** 2 < np.square(r)


def trapezoid(a: np.ndarray, v: np.ndarray, center: float, v0: float, v1: float, half0: float, half1: float) -> np.ndarray:
    """Symmetric trapezoid: half-width half0 at height v0 tapering linearly to half1 at v1."""
    t = (v - v0) / (v1 - v0)
    half = half0 + (half1 - half0) * t
    return (v >= v0) & (v < v1) & (np.abs(a - center) < half)


def blob(a: np.ndarray, v: np.ndarray, ca: float, cv: float, ra: float, rv: float,
         harmonics: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """A lumpy ellipse: radius modulated by a few angular harmonics (a tree crown, a bush)."""
    da, dv = (a - ca) / ra, (v - cv) / rv
    theta = np.arctan2(dv, da)
    k = np.arange(2, 2 + len(harmonics))
    wobble = 1.0 + np.tensordot(np.cos(np.multiply.outer(theta, k) + phases), harmonics, axes=([-1], [0]))
    return da * da + dv * dv < wobble * wobble


def cell_hash(i: np.ndarray, j: np.ndarray, seed: float) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per grid cell (which windows are lit, curtains...)."""
    x = np.sin(i * 12.9898 + j * 78.233 + seed * 37.719) * 43758.5453
    return (x - np.floor(x)).astype(np.float32)
