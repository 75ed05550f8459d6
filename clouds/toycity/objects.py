"""The things on a street, as sprites and boxes in world metres.

Each `add_*` function creates one labelled instance (two for a rider on a bicycle: the person is
class rider, the bicycle class bicycle) and draws it with the canvas primitives. Vehicles are
boxes (the face towards the camera plus the visible long side) so their size and shape follow
perspective; people and two-wheelers are camera-facing sprites. Random details (stride, crown
shape) come from the layout generator passed in, so a layout seed fixes every pixel of the label.
"""

from __future__ import annotations

import numpy as np

from clouds.labels import CLASS_NAMES
from clouds.toycity.canvas import Canvas, Light
from clouds.toycity.parts import Part
from clouds.toycity.shapes import (
    blob,
    box,
    canvas_like,
    cell_hash,
    disk,
    paint,
    ring,
    segment,
    thick,
    trapezoid,
)

CLS = {name: i for i, name in enumerate(CLASS_NAMES)}


# -- vehicles --------------------------------------------------------------------------------

def _car_face(w: float, h: float, front: bool):
    belt, low = 0.58 * h, 0.2

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        u = a / w
        paint(p, (v < low + 0.08) & ((u < 0.2) | (u > 0.8)), Part.TYRE)
        paint(p, (v >= low) & (v < belt) & (u > 0.01) & (u < 0.99), Part.BODY)
        t = (v - belt) / (h - belt)
        inset = 0.05 + 0.13 * t
        cab = (v >= belt) & (v < h) & (u > inset) & (u < 1 - inset)
        paint(p, cab, Part.BODY)
        paint(p, cab & (u > inset + 0.05) & (u < 0.95 - inset) & (v > belt + 0.05) & (v < h - 0.08), Part.GLASS)
        paint(p, (v >= low) & (v < low + 0.1), Part.TRIM)
        lamp = (v > belt - 0.2) & (v < belt - 0.05) & (((u > 0.04) & (u < 0.2)) | ((u > 0.8) & (u < 0.96)))
        paint(p, lamp, Part.HEADLIGHT if front else Part.TAILLIGHT)
        if front:
            paint(p, (v > belt - 0.22) & (v < belt - 0.07) & (u > 0.3) & (u < 0.7), Part.TRIM)
        paint(p, (v > low + 0.12) & (v < low + 0.27) & (u > 0.38) & (u < 0.62), Part.PLATE)
        return p

    return pattern


def _car_side(length: float, h: float, front_near: bool):
    belt, r = 0.58 * h, 0.32

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        f = a if front_near else length - a  # metres from the front bumper
        paint(p, (v >= 0.22) & (v < belt), Part.BODY)
        t = (v - belt) / (h - belt)
        fe, re = length * (0.27 + 0.15 * t), length * (0.93 - 0.1 * t)
        cab = (v >= belt) & (v < h) & (f > fe) & (f < re)
        paint(p, cab, Part.BODY)
        paint(p, cab & (v > belt + 0.04) & (v < h - 0.08) & (f > fe + 0.08) & (f < re - 0.08)
              & (np.abs(f - 0.62 * length) > 0.06), Part.GLASS)
        for c in (0.18 * length, 0.8 * length):
            paint(p, disk(f, v, c, r, r + 0.04) & (v > r), Part.TRIM)  # wheel arch
            paint(p, disk(f, v, c, r, r), Part.TYRE)
            paint(p, disk(f, v, c, r, 0.55 * r), Part.RIM)
        paint(p, (f < 0.1) & (v > belt - 0.2) & (v < belt - 0.05), Part.HEADLIGHT)
        paint(p, (f > length - 0.08) & (v > belt - 0.2) & (v < belt - 0.05), Part.TAILLIGHT)
        return p

    return pattern


def _truck_face(w: float, h: float, cab_h: float, front: bool):
    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        u = a / w
        paint(p, (v < 0.6) & ((u < 0.18) | (u > 0.82)), Part.TYRE)
        if front:
            paint(p, (v >= 0.45) & (v < cab_h), Part.BODY)
            paint(p, (v >= cab_h) & (u > 0.02) & (u < 0.98), Part.CARGO)
            paint(p, (v > 0.6 * cab_h) & (v < 0.93 * cab_h) & (u > 0.06) & (u < 0.94), Part.GLASS)
            paint(p, (v > 0.75) & (v < 1.3) & (u > 0.25) & (u < 0.75), Part.TRIM)
            paint(p, (v > 0.75) & (v < 0.95) & ((u < 0.15) | (u > 0.85)) & (u > 0.03) & (u < 0.97), Part.HEADLIGHT)
            paint(p, (v >= 0.45) & (v < 0.65), Part.TRIM)
        else:
            paint(p, (v >= 0.45) & (v < 0.65), Part.TRIM)
            paint(p, (v >= 0.65), Part.CARGO)
            paint(p, (v >= 0.7) & (np.abs(u - 0.5) < 0.012 + 0.5 * mpp / w), Part.TRIM)
            paint(p, (v > 0.7) & (v < 0.95) & ((u < 0.1) | (u > 0.9)), Part.TAILLIGHT)
        return p

    return pattern


def _truck_side(length: float, h: float, cab_h: float, front_near: bool):
    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        f = a if front_near else length - a
        paint(p, (f >= 2.3) & (v >= 0.6) & (v < 1.0), Part.TRIM)
        paint(p, (f >= 2.5) & (v >= 1.0), Part.CARGO)
        paint(p, (f < 2.3) & (v >= 0.5) & (v < cab_h), Part.BODY)
        paint(p, (f > 0.5) & (f < 1.9) & (v > 0.6 * cab_h) & (v < 0.92 * cab_h), Part.GLASS)
        for c in (1.3, length - 2.0, length - 0.9):
            paint(p, disk(f, v, c, 0.5, 0.5), Part.TYRE)
            paint(p, disk(f, v, c, 0.5, 0.25), Part.RIM)
        return p

    return pattern


def _bus_face(w: float, h: float, front: bool, tram: bool):
    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        u = a / w
        lo = 0.15 if tram else 0.3
        if not tram:
            paint(p, (v < 0.4) & ((u < 0.18) | (u > 0.82)), Part.TYRE)
        round_top = (v > h - 0.25) & ((u < 0.04) | (u > 0.96))
        paint(p, (v >= lo) & ~round_top, Part.BODY)
        paint(p, (v >= 0.9) & (v < 1.15), Part.CARGO)
        if front:
            paint(p, (v > 1.15) & (v < h - 0.45) & (u > 0.05) & (u < 0.95), Part.GLASS)
            paint(p, (v > h - 0.38) & (v < h - 0.12) & (u > 0.15) & (u < 0.85), Part.DISPLAY)
            paint(p, (v > 0.45) & (v < 0.65) & (((u > 0.04) & (u < 0.16)) | ((u > 0.84) & (u < 0.96))), Part.HEADLIGHT)
        else:
            paint(p, (v > h - 1.2) & (v < h - 0.4) & (u > 0.15) & (u < 0.85), Part.GLASS)
            paint(p, (v > 0.6) & (v < 0.9) & (u > 0.25) & (u < 0.75), Part.TRIM)
            paint(p, (v > 0.5) & (v < 1.3) & (((u > 0.02) & (u < 0.09)) | ((u > 0.91) & (u < 0.98))), Part.TAILLIGHT)
        paint(p, (v >= lo) & (v < lo + 0.15), Part.TRIM)
        return p

    return pattern


def _bus_side(length: float, h: float, front_near: bool, tram: bool):
    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        f = a if front_near else length - a
        lo = 0.15 if tram else 0.3
        paint(p, v >= lo, Part.BODY)
        paint(p, (v >= 0.9) & (v < 1.15), Part.CARGO)
        pillar = np.abs(((f - 2.4) % 1.45) - 0.72) > 0.08
        paint(p, (v > 1.2) & (v < h - 0.5) & (f > 2.4) & (f < length - 0.6) & pillar, Part.GLASS)
        paint(p, (f < 0.35) & (v > 1.0) & (v < h - 0.4), Part.GLASS)
        doors = ((f > 0.6) & (f < 1.8)) | (np.abs(f - 0.5 * length) < 0.65)
        if tram:
            doors |= np.abs(f - 0.8 * length) < 0.65
        paint(p, doors & (v > lo + 0.1) & (v < h - 0.5), Part.GLASS)
        paint(p, doors & (v > lo + 0.1) & (v < h - 0.5) & (np.abs(((f - 0.6) % 0.6) - 0.3) < 0.03 + 0.4 * mpp), Part.TRIM)
        if tram:
            for c in (3.0, 0.5 * length - 2.0, 0.5 * length + 2.0, length - 3.0):
                paint(p, (np.abs(f - c) < 1.1) & (v < 0.5), Part.TRIM)
        else:
            for c in (2.6, length - 3.0):
                paint(p, disk(f, v, c, 0.5, 0.52) & (v > 0.3), Part.TRIM)
                paint(p, disk(f, v, c, 0.5, 0.5), Part.TYRE)
                paint(p, disk(f, v, c, 0.5, 0.25), Part.RIM)
        return p

    return pattern


def _pantograph(w: float):
    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        r = thick(0.03, mpp)
        c = w / 2
        paint(p, segment(a, v, (c - 0.5, 0.0), (c, 0.45), r), Part.TRIM)
        paint(p, segment(a, v, (c + 0.5, 0.0), (c, 0.45), r), Part.TRIM)
        paint(p, segment(a, v, (c, 0.45), (c - 0.4, 0.85), r), Part.TRIM)
        paint(p, segment(a, v, (c, 0.45), (c + 0.4, 0.85), r), Part.TRIM)
        paint(p, segment(a, v, (c - 0.8, 0.85), (c + 0.8, 0.85), r), Part.TRIM)
        return p

    return pattern


def add_vehicle(canvas: Canvas, kind: str, x: float, z: float, w: float, length: float, h: float,
                facing: int, rng: np.random.Generator) -> int:
    """A box-shaped vehicle whose near face is at depth z; facing +1 = oncoming (front visible)."""
    front = facing > 0
    inst = canvas.add_instance(kind, CLS["train" if kind == "tram" else kind])
    if kind == "car":
        face, side = _car_face(w, h, front), _car_side(length, h, front)
    elif kind == "truck":
        cab_h = min(h, rng.uniform(2.6, 3.0))
        face, side = _truck_face(w, h, cab_h, front), _truck_side(length, h, cab_h, front)
    elif kind in ("bus", "tram"):
        face, side = _bus_face(w, h, front, kind == "tram"), _bus_side(length, h, front, kind == "tram")
    else:
        raise ValueError(f"unknown vehicle kind {kind!r}")
    x0, x1 = x - w / 2, x + w / 2
    canvas.draw_frontal(inst, z, x0, x1, 0.0, h, face)
    if x1 < -0.05:
        canvas.draw_side(inst, x1, z, z + length, 0.0, h, side)
    elif x0 > 0.05:
        canvas.draw_side(inst, x0, z, z + length, 0.0, h, side)
    if kind == "tram":
        canvas.draw_frontal(inst, z + 0.3 * length, x0, x1, h, h + 0.9, _pantograph(w))
    if front:
        canvas.lights.append(Light("headlight", x, z - 5.0, 4.0))
    return inst


# -- people and two-wheelers --------------------------------------------------------------------

def _person(hp: float, stride: float, swing: float, back: bool, child: bool):
    scale = hp / 1.75
    r_head = (0.125 if child else 0.11) * scale
    hip, shoulder = 0.5 * hp, 0.81 * hp

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        x = a - 0.4
        limb = thick(0.065 * scale, mpp)
        for s in (-1.0, 1.0):
            paint(p, segment(x, v, (s * 0.075 * scale, hip), (s * (0.075 * scale + stride), 0.06), limb), Part.BOTTOM)
            paint(p, disk(x, v, s * (0.075 * scale + stride), 0.04, thick(0.06 * scale, mpp)) & (v < 0.08), Part.SHOE)
            hand = (s * (0.24 * scale + swing), 0.47 * hp)
            paint(p, segment(x, v, (s * 0.19 * scale, shoulder - 0.05), hand, thick(0.05 * scale, mpp)), Part.TOP)
            paint(p, disk(x, v, hand[0], hand[1], thick(0.045 * scale, mpp)), Part.SKIN)
        paint(p, trapezoid(x, v, 0.0, hip - 0.06, shoulder + 0.03, 0.15 * scale, 0.2 * scale), Part.TOP)
        paint(p, (np.abs(x) < 0.05 * scale) & (v >= shoulder) & (v < hp - 1.5 * r_head), Part.SKIN)
        head = disk(x, v, 0.0, hp - r_head, r_head)
        paint(p, head, Part.SKIN)
        paint(p, head & ((v > hp - 0.8 * r_head) | back), Part.HAIR)
        return p

    return pattern


def add_person(canvas: Canvas, x: float, z: float, rng: np.random.Generator) -> int:
    child = rng.random() < 0.1
    hp = rng.uniform(1.05, 1.4) if child else rng.uniform(1.55, 1.95)
    stride = rng.uniform(-0.05, 0.2) * hp / 1.75
    pattern = _person(hp, stride, rng.uniform(-0.03, 0.08), bool(rng.random() < 0.5), child)
    inst = canvas.add_instance("person", CLS["person"])
    canvas.draw_frontal(inst, z, x - 0.4, x + 0.4, 0.0, hp + 0.02, pattern, min_px=1.0)
    return inst


def _bicycle(d: float, k: float):
    """Side view, facing d (+1 right), foreshortened by k (1 = seen exactly from the side)."""
    r = 0.34
    rear, front = (-0.52 * d * k, r), (0.52 * d * k, r)
    bb = (-0.05 * d * k, 0.3)
    seat = (-0.22 * d * k, 0.9)
    head = (0.4 * d * k, 0.88)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        x = a - 1.0
        tyre = thick(0.055, mpp)
        tube = thick(0.03, mpp)
        paint(p, ring(x, v, rear[0], r, r, tyre, k), Part.TYRE)
        paint(p, ring(x, v, front[0], r, r, tyre, k), Part.TYRE)
        for q0, q1 in ((rear, bb), (rear, seat), (bb, seat), (seat, head), (bb, head), (head, front)):
            paint(p, segment(x, v, q0, q1, tube), Part.FRAME)
        paint(p, segment(x, v, (head[0], head[1]), (head[0] - 0.08 * d * k, 1.02), tube), Part.TRIM)
        paint(p, segment(x, v, (seat[0] - 0.1 * d * k, 0.93), (seat[0] + 0.08 * d * k, 0.93), thick(0.035, mpp)), Part.TRIM)
        return p

    return pattern, seat, (head[0] - 0.08 * d * k, 1.02), bb


def _motorcycle(d: float, k: float):
    r = 0.31
    rear, front = (-0.7 * d * k, r), (0.7 * d * k, r)
    seat = (-0.2 * d * k, 0.8)
    bar = (0.48 * d * k, 1.05)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        x = a - 1.2
        paint(p, disk(x, v, rear[0], r, r, k), Part.TYRE)
        paint(p, disk(x, v, front[0], r, r, k), Part.TYRE)
        paint(p, disk(x, v, rear[0], r, 0.55 * r, k), Part.RIM)
        paint(p, disk(x, v, front[0], r, 0.55 * r, k), Part.RIM)
        paint(p, box(x * d / k, v, -0.3, 0.35, 0.28, 0.62), Part.TRIM)
        paint(p, trapezoid(x * d / k, v, 0.1, 0.6, 0.88, 0.45, 0.3), Part.BODY)
        paint(p, box(x * d / k, v, -0.55, -0.05, 0.78, 0.88), Part.TRIM)
        paint(p, segment(x, v, front, bar, thick(0.04, mpp)), Part.FRAME)
        paint(p, disk(x, v, 0.62 * d * k, 0.85, thick(0.08, mpp), k), Part.HEADLIGHT)
        paint(p, segment(x, v, (-0.25 * d * k, 0.3), (-0.75 * d * k, 0.42), thick(0.04, mpp)), Part.TRIM)
        return p

    return pattern, seat, bar, (0.05 * d * k, 0.35)


RIDER_HALF = 1.2  # half-width of the rider sprite's box, metres


def _rider(d: float, k: float, seat, bar, foot, helmet: bool):
    """A seated person leaning towards the handlebar, in the same object-centred frame as the vehicle."""
    hip = (seat[0], seat[1] + 0.08)
    shoulder = (hip[0] + 0.22 * d * k, hip[1] + 0.55)
    head = (shoulder[0] + 0.06 * d * k, shoulder[1] + 0.2)
    knee = (hip[0] + 0.3 * d * k, hip[1] - 0.1)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        x = a - RIDER_HALF
        paint(p, segment(x, v, hip, knee, thick(0.08, mpp)), Part.BOTTOM)
        paint(p, segment(x, v, knee, foot, thick(0.06, mpp)), Part.BOTTOM)
        paint(p, segment(x, v, hip, shoulder, thick(0.14, mpp)), Part.TOP)
        paint(p, segment(x, v, shoulder, bar, thick(0.05, mpp)), Part.TOP)
        paint(p, disk(x, v, head[0], head[1], 0.11), Part.SKIN)
        paint(p, disk(x, v, head[0], head[1], 0.125) & (v > head[1] - 0.01), Part.HELMET if helmet else Part.HAIR)
        return p

    return pattern


def add_two_wheeler(canvas: Canvas, kind: str, x: float, z: float, rng: np.random.Generator,
                    ridden: bool, k: float) -> int:
    """A bicycle or motorcycle (side-view sprite, foreshortened by k), with its rider if `ridden`."""
    d = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "bicycle":
        pattern, seat, bar, foot = _bicycle(d, k)
        half, top = 1.0, 1.05
    elif kind == "motorcycle":
        pattern, seat, bar, foot = _motorcycle(d, k)
        half, top = 1.2, 1.15
    else:
        raise ValueError(f"unknown two-wheeler {kind!r}")
    inst = canvas.add_instance(kind, CLS[kind])
    canvas.draw_frontal(inst, z, x - half, x + half, 0.0, top, pattern)
    if ridden:
        helmet = kind == "motorcycle" or rng.random() < 0.4
        rider = canvas.add_instance("rider", CLS["rider"])
        canvas.draw_frontal(rider, z - 0.05, x - RIDER_HALF, x + RIDER_HALF, 0.0, 2.0,
                            _rider(d, k, seat, bar, foot, helmet))
    return inst


# -- street furniture and vegetation ------------------------------------------------------------

def _solid(part: Part):
    def pattern(a, v, mpp):
        return np.full(np.broadcast_shapes(a.shape, v.shape), int(part), np.int16)

    return pattern


def add_street_light(canvas: Canvas, x: float, z: float, side: int, rng: np.random.Generator) -> int:
    """A lamp post on the curb of `side` (-1 left, +1 right) whose arm reaches over the road."""
    h, arm = rng.uniform(6.0, 9.0), rng.uniform(1.2, 2.4)
    end = x - side * arm
    inst = canvas.add_instance("pole", CLS["pole"])
    canvas.draw_frontal(inst, z, x - 0.1, x + 0.1, 0.0, h, _solid(Part.POLE), min_px=1.0)
    canvas.draw_frontal(inst, z, min(x, end), max(x, end), h - 0.14, h, _solid(Part.POLE))

    def head(a, v, mpp):
        p = canvas_like(a, v)
        paint(p, v >= 0.06, Part.POLE)
        paint(p, (v < 0.18) & (np.abs(a - 0.35) < 0.28), Part.LAMP)
        return p

    canvas.draw_frontal(inst, z - 0.02, end - 0.35, end + 0.35, h - 0.38, h, head, min_px=1.0)
    canvas.lights.append(Light("street", end, z, 7.0))
    return inst


def _traffic_light_box(back: bool):
    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        paint(p, box(a, v, 0.06, 0.42, 0.0, 1.0), Part.TL_HOUSING)
        if not back:
            r = thick(0.1, mpp)
            paint(p, disk(a, v, 0.24, 0.8, r), Part.TL_RED)
            paint(p, disk(a, v, 0.24, 0.5, r), Part.TL_AMBER)
            paint(p, disk(a, v, 0.24, 0.2, r), Part.TL_GREEN)
        return p

    return pattern


def add_traffic_light(canvas: Canvas, x: float, z: float, rng: np.random.Generator,
                      arm_to: float | None = None, back: bool = False) -> int:
    """A signal head on its own pole, or hanging from a mast arm over the road (arm_to = its X)."""
    pole = canvas.add_instance("pole", CLS["pole"])
    if arm_to is None:
        ph = rng.uniform(2.8, 3.6)
        canvas.draw_frontal(pole, z, x - 0.08, x + 0.08, 0.0, ph + 0.2, _solid(Part.POLE), min_px=1.0)
        hx, hv = x, ph
    else:
        ph = rng.uniform(5.5, 6.5)
        canvas.draw_frontal(pole, z, x - 0.12, x + 0.12, 0.0, ph + 0.3, _solid(Part.POLE), min_px=1.0)
        canvas.draw_frontal(pole, z, min(x, arm_to), max(x, arm_to), ph + 0.12, ph + 0.3, _solid(Part.POLE))
        hx, hv = arm_to, ph - 0.85
    inst = canvas.add_instance("traffic light", CLS["traffic light"])
    canvas.draw_frontal(inst, z - 0.05, hx - 0.24, hx + 0.24, hv, hv + 1.0, _traffic_light_box(back), min_px=1.0)
    return inst


SIGN_SHAPES = ("round", "triangle", "square", "rect")


def _sign_plate(shape: str, size: float, back: bool):
    """A plate in a size x size box; shapes are laid out on the unit square."""

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        u, t = a / size, v / size
        rim = thick(0.06, mpp, 0.3) / size
        if shape == "round":
            outer = disk(u, t, 0.5, 0.5, 0.5)
            paint(p, outer, Part.SIGN_RIM)
            paint(p, disk(u, t, 0.5, 0.5, 0.5 - rim), Part.SIGN_FACE)
            paint(p, box(u, t, 0.25, 0.75, 0.44, 0.56), Part.SIGN_SYMBOL)
        elif shape == "triangle":
            outer = trapezoid(u, t, 0.5, 0.08, 0.95, 0.5, 0.0)
            paint(p, outer, Part.SIGN_RIM)
            paint(p, trapezoid(u, t, 0.5, 0.08 + rim, 0.95 - 2 * rim, 0.5 - 1.7 * rim, 0.0), Part.SIGN_FACE)
            paint(p, box(u, t, 0.46, 0.54, 0.25, 0.6), Part.SIGN_SYMBOL)
        elif shape == "square":
            outer = box(u, t, 0.0, 1.0, 0.0, 1.0)
            paint(p, outer, Part.SIGN_RIM)
            paint(p, box(u, t, rim, 1.0 - rim, rim, 1.0 - rim), Part.SIGN_FACE)
            paint(p, segment(u, t, (0.3, 0.25), (0.7, 0.75), thick(0.05, mpp) / size), Part.SIGN_SYMBOL)
        else:
            outer = box(u, t, 0.0, 1.0, 0.25, 0.75)
            paint(p, outer, Part.SIGN_RIM)
            paint(p, box(u, t, rim, 1.0 - rim, 0.25 + rim, 0.75 - rim), Part.SIGN_FACE)
            paint(p, box(u, t, 0.15, 0.85, 0.46, 0.54), Part.SIGN_SYMBOL)
        if back:
            paint(p, outer, Part.SIGN_BACK)
        return p

    return pattern


def add_sign(canvas: Canvas, x: float, z: float, rng: np.random.Generator) -> int:
    """A traffic sign plate on a thin post; sometimes seen from behind (still class traffic sign)."""
    shape = SIGN_SHAPES[int(rng.integers(len(SIGN_SHAPES)))]
    size = 1.0 if shape == "rect" else rng.uniform(0.6, 0.8)
    top = rng.uniform(2.3, 3.1)
    pole = canvas.add_instance("pole", CLS["pole"])
    canvas.draw_frontal(pole, z, x - 0.04, x + 0.04, 0.0, top - 0.3, _solid(Part.POLE), min_px=1.0)
    inst = canvas.add_instance(f"sign_{shape}", CLS["traffic sign"])
    canvas.draw_frontal(inst, z - 0.03, x - size / 2, x + size / 2, top - size, top,
                        _sign_plate(shape, size, bool(rng.random() < 0.2)), min_px=1.0)
    return inst


def _crown(ra: float, rv: float, rng: np.random.Generator):
    harmonics = rng.uniform(0.0, 0.09, 5)
    phases = rng.uniform(0.0, 2 * np.pi, 5)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        paint(p, blob(a, v, 1.25 * ra, 1.25 * rv, ra, rv, harmonics, phases), Part.FOLIAGE)
        return p

    return pattern


def add_tree(canvas: Canvas, x: float, z: float, rng: np.random.Generator, scale: float = 1.0) -> int:
    h = rng.uniform(5.0, 10.0) * scale
    ra = rng.uniform(1.4, 3.0) * scale
    rv = ra * rng.uniform(0.9, 1.4)
    cv = h - rv
    tw = rng.uniform(0.2, 0.4) * scale
    inst = canvas.add_instance("tree", CLS["vegetation"])
    canvas.draw_frontal(inst, z, x - tw / 2, x + tw / 2, 0.0, cv, _solid(Part.TRUNK), min_px=1.0)
    canvas.draw_frontal(inst, z - 0.05, x - 1.25 * ra, x + 1.25 * ra, cv - 1.25 * rv, cv + 1.25 * rv,
                        _crown(ra, rv, rng))
    return inst


def add_bush(canvas: Canvas, x: float, z: float, rng: np.random.Generator) -> int:
    ra, rv = rng.uniform(0.6, 1.4), rng.uniform(0.5, 0.9)
    crown = _crown(ra, rv, rng)
    inst = canvas.add_instance("bush", CLS["vegetation"])
    canvas.draw_frontal(inst, z, x - 1.25 * ra, x + 1.25 * ra, 0.0, 2.25 * rv,
                        lambda a, v, m: crown(a, v + 0.25 * rv, m))
    return inst


def add_hedge(canvas: Canvas, xs: float, z0: float, z1: float, rng: np.random.Generator) -> int:
    h = rng.uniform(0.8, 1.8)
    ph = rng.uniform(0, 2 * np.pi, 2)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        top = h * (1.0 + 0.07 * np.sin(a * 2.1 + ph[0]) + 0.05 * np.sin(a * 5.3 + ph[1]))
        paint(p, v < top, Part.FOLIAGE)
        return p

    inst = canvas.add_instance("hedge", CLS["vegetation"])
    canvas.draw_side(inst, xs, z0, z1, 0.0, 1.2 * h, pattern)
    return inst


def add_wall(canvas: Canvas, xs: float, z0: float, z1: float, rng: np.random.Generator) -> int:
    h = rng.uniform(0.9, 2.8)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        paint(p, v < h, Part.WALL)
        paint(p, v >= h - 0.12, Part.WALL_CAP)
        return p

    inst = canvas.add_instance("wall", CLS["wall"])
    canvas.draw_side(inst, xs, z0, z1, 0.0, h, pattern)
    return inst


FENCE_TYPES = ("bars", "planks", "railing")


def add_fence(canvas: Canvas, xs: float, z0: float, z1: float, rng: np.random.Generator,
              kind: str | None = None) -> int:
    kind = kind or FENCE_TYPES[int(rng.integers(2))]
    h = rng.uniform(0.9, 1.2) if kind == "railing" else rng.uniform(1.2, 2.2)
    post, gap = rng.uniform(2.0, 3.0), rng.uniform(0.12, 0.2)

    def pattern(a, v, mpp):
        p = canvas_like(a, v)
        w = thick(0.035, mpp, 0.35)
        paint(p, np.abs(((a + 0.5 * post) % post) - 0.5 * post) < thick(0.05, mpp, 0.6), Part.FENCE)
        paint(p, (v > h - 0.08) | ((v > 0.12) & (v < 0.2)), Part.FENCE)
        if kind == "bars":
            paint(p, np.abs(((a + 0.5 * gap) % gap) - 0.5 * gap) < w, Part.FENCE)
        elif kind == "planks":
            paint(p, np.abs(((a + 0.5 * gap) % gap) - 0.5 * gap) < 0.5 * gap - w * 0.6, Part.FENCE)
        else:
            paint(p, (v > 0.5 * h - 0.04) & (v < 0.5 * h + 0.04), Part.FENCE)
        return p

    inst = canvas.add_instance("fence", CLS["fence"])
    canvas.draw_side(inst, xs, z0, z1, 0.0, h, pattern)
    return inst


# -- buildings ------------------------------------------------------------------------------

def facade_pattern(h: float, rng: np.random.Generator, small: bool = False):
    """Floors of windows on a wall; the window index goes to `cell` so the renderer can light some."""
    floor_h = rng.uniform(2.8, 3.6)
    spacing = rng.uniform(2.2, 4.2)
    win_w = spacing * rng.uniform(0.35, 0.62)
    win_h = floor_h * rng.uniform(0.4, 0.62)
    sill = 0.5 * (floor_h - win_h) + rng.uniform(-0.2, 0.2)
    ground_h = rng.uniform(3.5, 4.8) if not small else floor_h
    shop = bool(rng.random() < 0.5) and not small
    door_every = int(rng.integers(3, 7))
    bands = bool(rng.random() < 0.4)
    seed = float(rng.uniform(0, 1000))

    def pattern(a, v, mpp):
        p = np.full(np.broadcast_shapes(a.shape, v.shape), int(Part.FACADE), np.int16)
        col = np.floor(a / spacing)
        fa = a - (col + 0.5) * spacing
        fl = np.floor((v - ground_h) / floor_h)
        fv = v - ground_h - fl * floor_h
        win = (fl >= 0) & (v < h - 1.0) & (np.abs(fa) < win_w / 2) & (fv > sill) & (fv < sill + win_h)
        cell = np.zeros(p.shape, np.float32)
        if win.any():
            cell[win] = cell_hash(np.broadcast_to(col, p.shape)[win], np.broadcast_to(fl, p.shape)[win], seed)
        paint(p, win, Part.WINDOW)
        if bands:
            paint(p, (fl >= 0) & (fv < 0.18) & (v < h - 1.0), Part.CORNICE)
        ground = (v > 0.3) & (v < ground_h - 0.6)
        door = ground & (np.abs(fa) < 0.6) & (col % door_every == 0)
        if shop:
            shopw = np.broadcast_to(ground & (np.abs(fa) < 0.42 * spacing), p.shape)
            paint(p, shopw, Part.WINDOW)
            if shopw.any():
                cell[shopw] = cell_hash(np.broadcast_to(col, p.shape)[shopw], -1.0, seed)
        paint(p, door & (v < min(2.4, ground_h - 0.6)), Part.DOOR)
        paint(p, v > h - 0.45, Part.CORNICE)
        return p, cell

    return pattern


def add_building(canvas: Canvas, xf: float, side: int, z0: float, z1: float, h: float, deep: float,
                 rng: np.random.Generator) -> int:
    """A block whose facade runs along the street at X = xf; its near end wall faces the camera."""
    inst = canvas.add_instance("building", CLS["building"])
    pattern = facade_pattern(h, rng)
    canvas.draw_side(inst, xf, z0, z1, 0.0, h, pattern)
    outer = xf + side * deep
    canvas.draw_frontal(inst, z0, min(xf, outer), max(xf, outer), 0.0, h, pattern)
    return inst


def add_backdrop_building(canvas: Canvas, x0: float, x1: float, z: float, h: float,
                          rng: np.random.Generator) -> int:
    inst = canvas.add_instance("building", CLS["building"])
    canvas.draw_frontal(inst, z, x0, x1, 0.0, h, facade_pattern(h, rng, small=True))
    return inst
