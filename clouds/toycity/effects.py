"""Image-space effects of the photographic domains: noise, haze, rain, snow, lens and sensor.

All work on float HxWx3 images in [0, ~1] and take sizes relative to the image width, so an effect
looks the same at 128x256 and at 512x1024.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _lerp_axis(values: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linearly resample `values` along `axis` onto n_out pixel centres (a separable bilinear pass)."""
    n_in = values.shape[axis]
    if n_in == 1:
        return np.repeat(values, n_out, axis=axis)
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = (pos - lo).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = n_out
    frac = frac.reshape(shape)
    return np.take(values, lo, axis=axis) * (1.0 - frac) + np.take(values, lo + 1, axis=axis) * frac


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Smooth multi-octave noise with unit standard deviation; `cell` is the largest blob size in px."""
    out = np.zeros((height, width), np.float32)
    amp = 1.0
    for _ in range(octaves):
        gh, gw = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * _lerp_axis(_lerp_axis(grid, height, 0), width, 1)
        amp *= 0.5
        cell = max(cell / 2.0, 1.5)
    std = float(out.std())
    return out / std if std > 0 else out


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0) if image.ndim == 3 else sigma, mode="nearest")


def haze(image: np.ndarray, depth: np.ndarray, visibility: float, airlight: np.ndarray) -> np.ndarray:
    """Koschmieder's law: contrast falls to 5% at the visibility distance."""
    t = np.exp(-3.0 * depth / visibility)[..., None]
    return image * t + airlight * (1.0 - t)


def glow(emission: np.ndarray, scale: float, strength: float) -> np.ndarray:
    """Bloom around light sources: a tight and a wide halo.

    Wide Gaussians are costly at full resolution, so each halo is blurred on a grid coarse enough
    for its width (box-averaged first so that small lamps are not skipped) and interpolated back.
    """
    if not emission.any():
        return np.zeros_like(emission)
    h, w, _ = emission.shape
    out = np.zeros_like(emission)
    for sigma, weight in ((1.2 * scale, 1.5), (5.0 * scale, 2.5)):
        k = max(1, int(sigma // 2))
        if k == 1:
            out += weight * blur(emission, sigma)
            continue
        small = ndimage.uniform_filter(emission, size=(k, k, 1), mode="nearest")[k // 2::k, k // 2::k]
        small = blur(small, sigma / k)
        out += weight * _lerp_axis(_lerp_axis(small, h, 0), w, 1)
    return strength * out


def wet_reflection(image: np.ndarray, horizon: float, scale: float) -> np.ndarray:
    """What a wet ground mirrors: the scene flipped about the horizon, smeared vertically."""
    h = image.shape[0]
    rows = np.clip(np.round(2.0 * horizon - np.arange(h) - 1.0).astype(int), 0, h - 1)
    mirrored = image[rows]
    return ndimage.gaussian_filter(mirrored, sigma=(6.0 * scale, 0.6 * scale, 0), mode="nearest")


def rain_streaks(rng: np.random.Generator, height: int, width: int, density: float) -> np.ndarray:
    """Additive map of thin slanted streaks (motion-blurred drops), one value per pixel."""
    scale = width / 256.0
    n = int(density * height * width / 110.0)
    out = np.zeros((height, width), np.float32)
    if n == 0:
        return out
    length = int(max(4, 0.09 * height))
    slant = rng.uniform(-0.35, 0.35)
    x0 = rng.uniform(-0.3 * width, 1.3 * width, n)
    y0 = rng.uniform(-length, height, n)
    t = np.arange(length)[None, :] * rng.uniform(0.5, 1.0, n)[:, None]
    ys = np.round(y0[:, None] + t).astype(int)
    xs = np.round(x0[:, None] + slant * t).astype(int)
    keep = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    strength = np.broadcast_to(rng.uniform(0.05, 0.2, n)[:, None], ys.shape)
    np.add.at(out, (ys[keep], xs[keep]), strength[keep])
    return ndimage.gaussian_filter(out, 0.5 * scale)


def snowflakes(rng: np.random.Generator, height: int, width: int, density: float) -> np.ndarray:
    """Alpha map of falling snow: many small soft flakes and a few large near ones."""
    scale = width / 256.0
    out = np.zeros((height, width), np.float32)
    for count, sigma, peak in ((density * 450, 0.5, 0.8), (density * 25, 1.2, 0.9)):
        n = int(count * height * width / 32768.0)
        ys = rng.integers(0, height, n)
        xs = rng.integers(0, width, n)
        layer = np.zeros((height, width), np.float32)
        np.add.at(layer, (ys, xs), 1.0)
        s = sigma * scale
        layer = ndimage.gaussian_filter(layer, s) * (2 * np.pi * s * s) * peak
        out = np.maximum(out, layer)
    return np.clip(out, 0.0, 1.0)


def vignette(height: int, width: int, strength: float) -> np.ndarray:
    yy = (np.arange(height) + 0.5) / height * 2 - 1
    xx = (np.arange(width) + 0.5) / width * 2 - 1
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 2.0
    return (1.0 - strength * r2)[..., None].astype(np.float32)


def saturate(image: np.ndarray, factor: float) -> np.ndarray:
    grey = image.mean(axis=-1, keepdims=True)
    return grey + (image - grey) * factor
