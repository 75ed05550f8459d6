"""Where things are: one street, laid out from a spec's layout seed.

The layout is drawn entirely in world metres from `SceneSpec.layout_seed`, never from the output
size or the visual domain, so the same spec gives the same label map in every domain and (up to
rasterisation) at every resolution. The street follows driving-data conventions: right-hand
traffic, the camera in a same-direction lane, sidewalks, then facades, parks or walled lots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clouds.toycity import objects
from clouds.toycity.canvas import Camera, Canvas
from clouds.toycity.objects import CLS
from clouds.toycity.parts import Part
from clouds.toycity.shapes import cell_hash
from clouds.toycity.spec import SceneSpec

CURB = 0.25  # metres of curb stone at the road edge (class sidewalk)
RAIL_GAUGE = 1.435


@dataclass(frozen=True)
class Side:
    """One side of the street, from the road edge outwards."""

    sign: int  # -1 left, +1 right
    kind: str  # "buildings", "park" or "lot"
    curb: float  # X of the road edge
    grass: float  # terrain strip between curb and sidewalk (0: none)
    sidewalk: float
    garden: float  # terrain between sidewalk and the building line / park
    boundary: str  # what separates sidewalk and garden: "none", "wall", "fence", "hedge"

    def at(self, offset: float) -> float:
        """X of a point `offset` metres outwards from the road edge."""
        return self.curb + self.sign * offset

    @property
    def sidewalk_range(self) -> tuple[float, float]:
        return self.grass + CURB, self.grass + CURB + self.sidewalk

    @property
    def building_line(self) -> float:
        return self.at(CURB + self.grass + self.sidewalk + self.garden)


@dataclass(frozen=True)
class Street:
    lanes: tuple[float, ...]  # lane centres, left to right
    directions: tuple[int, ...]  # +1: oncoming (we see fronts), -1: same direction (we see backs)
    ego_lane: int
    lane_width: float
    road: tuple[float, float]
    parking: tuple[float | None, float | None]  # centre X of a parking strip on the left / right
    left: Side
    right: Side
    crosswalk: float | None  # Z where a zebra crossing starts
    tram_x: float | None
    end: float  # Z of the backdrop that closes the view
    dash_phase: float


@dataclass
class Scene:
    canvas: Canvas
    street: Street

    def label(self) -> np.ndarray:
        return self.canvas.label()


def build_scene(spec: SceneSpec, height: int, width: int) -> Scene:
    """Lay out and rasterise the street of `spec` at the given resolution."""
    rng = np.random.default_rng(spec.layout_seed)
    camera = Camera(
        height=height, width=width,
        focal=width * rng.uniform(0.68, 0.85),
        horizon=height * rng.uniform(0.4, 0.5),
        elevation=rng.uniform(1.3, 1.7),
    )
    canvas = Canvas(camera)
    street = _sample_street(rng, spec)
    _draw_ground(canvas, street)
    _draw_backdrop(canvas, street, rng)
    for side in (street.left, street.right):
        _draw_side(canvas, street, side, rng)
    occupied = _Occupancy()
    _draw_furniture(canvas, street, spec, rng, occupied)
    _draw_traffic(canvas, street, spec, rng)
    _draw_people(canvas, street, spec, rng, occupied)
    return Scene(canvas, street)


# -- street -------------------------------------------------------------------------------------

def _sample_side(rng: np.random.Generator, sign: int, curb: float) -> Side:
    kind = str(rng.choice(["buildings", "park", "lot"], p=[0.6, 0.2, 0.2]))
    grass = rng.uniform(1.0, 2.5) if rng.random() < 0.3 else 0.0
    sidewalk = rng.uniform(2.0, 4.5)
    if kind == "park":
        garden = rng.uniform(12.0, 30.0)
    elif kind == "buildings" and rng.random() < 0.3:
        garden = rng.uniform(1.5, 5.0)
    else:
        garden = 0.0
    if kind == "lot":
        boundary = str(rng.choice(["wall", "fence"]))
    elif garden > 0:
        boundary = str(rng.choice(["none", "wall", "fence", "hedge"], p=[0.25, 0.25, 0.25, 0.25]))
    else:
        boundary = "none"
    return Side(sign, kind, curb, grass, sidewalk, garden, boundary)


def _sample_street(rng: np.random.Generator, spec: SceneSpec) -> Street:
    n = int(rng.choice([2, 3, 4], p=[0.4, 0.35, 0.25]))
    n_oncoming = 0 if rng.random() < 0.15 else n // 2
    lane_w = rng.uniform(3.0, 3.6)
    park_l = 2.3 if rng.random() < 0.35 else 0.0
    park_r = 2.3 if rng.random() < 0.5 else 0.0
    same = list(range(n_oncoming, n))
    ego = same[-1] if rng.random() < 0.65 else int(rng.choice(same))
    offset = -(park_l + (ego + 0.5) * lane_w) + rng.uniform(-0.3, 0.3)
    lanes = tuple(offset + park_l + (i + 0.5) * lane_w for i in range(n))
    directions = tuple(1 if i < n_oncoming else -1 for i in range(n))
    road = (offset, offset + park_l + n * lane_w + park_r)
    parking = (road[0] + 1.15 if park_l else None, road[1] - 1.15 if park_r else None)
    left = _sample_side(rng, -1, road[0])
    right = _sample_side(rng, 1, road[1])
    crosswalk = rng.uniform(9.0, 35.0) if rng.random() < 0.35 else None
    tram_x = None
    if spec.has_train:
        central = [i for i in (n_oncoming - 1, n_oncoming) if 0 <= i < n]
        tram_x = lanes[int(rng.choice(central))]
    return Street(lanes, directions, ego, lane_w, road, parking, left, right, crosswalk, tram_x,
                  end=rng.uniform(110.0, 220.0), dash_phase=rng.uniform(0.0, 9.0))


def _draw_ground(canvas: Canvas, street: Street) -> None:
    """Lateral bands (terrain | sidewalk | curb | road | ...) plus road markings, per pixel."""
    road_i = canvas.add_instance("road", CLS["road"])
    bands = {}
    for side in (street.left, street.right):
        walk = canvas.add_instance("sidewalk", CLS["sidewalk"])
        strip = canvas.add_instance("terrain", CLS["terrain"]) if side.grass else walk
        garden = canvas.add_instance("terrain", CLS["terrain"]) if side.garden else walk
        green_beyond = side.kind == "park" or (side.kind == "lot" and side.boundary == "fence")
        if green_beyond and not side.garden:
            garden_beyond = canvas.add_instance("terrain", CLS["terrain"])
        else:
            garden_beyond = garden
        beyond = garden_beyond if green_beyond else walk
        bands[side.sign] = (
            [  # (outer offset from the road edge, instance, part), from the road outwards
                (CURB, walk, Part.CURB),
                (CURB + side.grass, strip, Part.GRASS if side.grass else Part.PAVING),
                (CURB + side.grass + side.sidewalk, walk, Part.PAVING),
                (CURB + side.grass + side.sidewalk + side.garden, garden, Part.GRASS if side.garden else Part.PAVING),
            ],
            (beyond, Part.GRASS if green_beyond else Part.PAVING),
        )
    # band k covers X in (edges[k-1], edges[k]]; zero-width bands simply never match
    edges: list[float] = []
    insts: list[int] = [bands[-1][1][0]]
    parts: list[int] = [int(bands[-1][1][1])]
    for outer, inst, part in reversed(bands[-1][0]):
        edges.append(street.left.at(outer))
        insts.append(inst)
        parts.append(int(part))
    edges += [street.road[0], street.road[1]]
    insts.append(road_i)
    parts.append(int(Part.ASPHALT))
    for outer, inst, part in bands[1][0]:
        insts.append(inst)
        parts.append(int(part))
        edges.append(street.right.at(outer))
    insts.append(bands[1][1][0])
    parts.append(int(bands[1][1][1]))
    edge_arr = np.array(edges)
    inst_arr = np.array(insts, np.int32)
    part_arr = np.array(parts, np.uint8)
    marks = _road_markings(street)

    def classify(x: np.ndarray, z: np.ndarray):
        band = np.searchsorted(edge_arr, x)
        inst, part = inst_arr[band], part_arr[band].copy()
        on_road = inst == road_i
        part[on_road & marks(x, z)] = Part.LANE_MARK
        if street.tram_x is not None:
            for r in (street.tram_x - RAIL_GAUGE / 2, street.tram_x + RAIL_GAUGE / 2):
                part[on_road & (np.abs(x - r) < 0.06)] = Part.RAIL
        tiles = (part == Part.PAVING) & (((x % 0.6) < 0.05) | ((z % 0.6) < 0.05))
        cell = np.where(tiles, 1.0, 0.0).astype(np.float32)
        asphalt = part == Part.ASPHALT
        cell[asphalt] = 0.5 * cell_hash(np.floor(x[asphalt] / 2.5), np.floor(z[asphalt] / 4.0), 3.0)
        return inst, part, cell

    canvas.draw_ground(classify)


def _road_markings(street: Street):
    left, right = street.road
    lanes, dirs, half = street.lanes, street.directions, street.lane_width / 2
    dashed, solid = [], []
    for i in range(len(lanes) - 1):
        boundary = lanes[i] + half
        (solid if dirs[i] != dirs[i + 1] else dashed).append(boundary)
    if street.parking[0] is not None:
        solid.append(lanes[0] - half)
    if street.parking[1] is not None:
        solid.append(lanes[-1] + half)
    solid += [left + 0.35, right - 0.35]
    same = [c for c, d in zip(lanes, dirs, strict=True) if d < 0]

    def marks(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        m = np.zeros(np.broadcast_shapes(x.shape, z.shape), bool)
        for b in solid:
            m |= np.abs(x - b) < 0.08
        dash = ((z + street.dash_phase) % 9.0) < 3.0
        for b in dashed:
            m |= (np.abs(x - b) < 0.07) & dash
        if street.crosswalk is not None:
            zc = street.crosswalk
            m |= (z > zc) & (z < zc + 4.0) & (((x - left) % 1.0) < 0.5)
            if same:
                lo, hi = min(same) - half, max(same) + half
                m |= (z > zc - 1.2) & (z < zc - 0.8) & (x > lo) & (x < hi)
        return m

    return marks


# -- sides of the street -----------------------------------------------------------------------

def _draw_backdrop(canvas: Canvas, street: Street, rng: np.random.Generator) -> None:
    """Far buildings and trees closing the view, so the vanishing point is not a hole of sky."""
    z = street.end
    x = -0.9 * z
    while x < 0.9 * z:
        w = rng.uniform(8.0, 30.0)
        if rng.random() < 0.2:
            objects.add_tree(canvas, x + w / 2, z - 1.0, rng, scale=1.3)
        elif rng.random() < 0.85:
            objects.add_backdrop_building(canvas, x, x + w, z, rng.uniform(6.0, 32.0), rng)
        x += w


def _draw_side(canvas: Canvas, street: Street, side: Side, rng: np.random.Generator) -> None:
    s = side.sign
    walk_outer = side.at(CURB + side.grass + side.sidewalk)
    z_end = street.end - 2.0
    if side.boundary in ("wall", "fence", "hedge"):
        z = rng.uniform(-5.0, 10.0)
        while z < z_end:
            length = rng.uniform(15.0, 80.0) if side.kind != "lot" else z_end
            xs = walk_outer + s * 0.15
            if side.boundary == "wall":
                objects.add_wall(canvas, xs, z, z + length, rng)
            elif side.boundary == "fence":
                objects.add_fence(canvas, xs, z, z + length, rng)
            else:
                objects.add_hedge(canvas, xs, z, z + length, rng)
            z += length + rng.uniform(3.0, 30.0)
    if side.kind == "buildings":
        _draw_block_row(canvas, side.building_line, s, rng.uniform(-12.0, 0.0), z_end, rng)
    elif side.kind == "park":
        line = side.building_line
        for _ in range(int(rng.integers(4, 12))):
            objects.add_tree(canvas, side.at(CURB + side.grass + side.sidewalk + rng.uniform(1.0, side.garden)),
                             float(np.exp(rng.uniform(np.log(6.0), np.log(z_end)))), rng, scale=rng.uniform(0.9, 1.4))
        for _ in range(int(rng.integers(0, 6))):
            objects.add_bush(canvas, side.at(CURB + side.grass + side.sidewalk + rng.uniform(0.5, side.garden)),
                             rng.uniform(4.0, 60.0), rng)
        _draw_block_row(canvas, line, s, rng.uniform(-10.0, 20.0), z_end, rng)
    else:
        _draw_block_row(canvas, walk_outer + s * rng.uniform(6.0, 25.0), s, rng.uniform(-10.0, 20.0), z_end, rng)
    if rng.random() < 0.15:
        z0 = rng.uniform(3.0, 30.0)
        objects.add_fence(canvas, side.at(CURB + 0.1), z0, z0 + rng.uniform(6.0, 30.0), rng, kind="railing")


def _draw_block_row(canvas: Canvas, line: float, s: int, z: float, z_end: float, rng: np.random.Generator) -> None:
    while z < z_end:
        w = rng.uniform(8.0, 30.0)
        if rng.random() < 0.18:
            z += rng.uniform(3.0, 10.0)
            continue
        h = rng.uniform(26.0, 45.0) if rng.random() < 0.15 else rng.uniform(7.0, 26.0)
        setback = rng.uniform(0.0, 1.0) if rng.random() < 0.3 else 0.0
        objects.add_building(canvas, line + s * setback, s, z, min(z + w, z_end), h, rng.uniform(10.0, 20.0), rng)
        z += w


# -- furniture, traffic, people --------------------------------------------------------------------

class _Occupancy:
    """Intervals of Z taken per slot (a lane, a strip of sidewalk) so objects do not interpenetrate."""

    def __init__(self) -> None:
        self._slots: dict[object, list[tuple[float, float]]] = {}

    def take(self, slot: object, z0: float, z1: float, margin: float) -> bool:
        taken = self._slots.setdefault(slot, [])
        if any(z0 - margin < b and z1 + margin > a for a, b in taken):
            return False
        taken.append((z0, z1))
        return True


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Depths spread evenly in image space rather than in metres (most of a street is far away)."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _draw_furniture(canvas: Canvas, street: Street, spec: SceneSpec, rng: np.random.Generator,
                    occupied: _Occupancy) -> None:
    sides = (street.left, street.right)

    def place(side: Side, z_lo: float, z_hi: float, tries: int = 12) -> float | None:
        for _ in range(tries):
            z = _log_uniform(rng, z_lo, z_hi)
            if occupied.take(("curb", side.sign), z - 0.5, z + 0.5, 2.5):
                return z
        return None

    for i in range(spec.poles):
        side = sides[(i + int(rng.integers(2))) % 2]
        z = place(side, 4.0, 90.0)
        if z is not None:
            objects.add_street_light(canvas, side.at(CURB + side.grass * 0.5 + 0.3), z, side.sign, rng)
    z_light = street.crosswalk if street.crosswalk is not None else rng.uniform(14.0, 45.0)
    for i in range(spec.traffic_lights):
        back = bool(rng.random() < 0.25)
        if i < 2:
            side = street.right if i == 0 else street.left
            objects.add_traffic_light(canvas, side.at(CURB + 0.4), z_light - 1.5 + rng.uniform(-0.5, 0.5), rng, back=back)
        elif i == 2:
            over = street.lanes[street.ego_lane]
            objects.add_traffic_light(canvas, street.right.at(CURB + 0.4), z_light + 0.5, rng, arm_to=over)
        else:
            side = sides[i % 2]
            objects.add_traffic_light(canvas, side.at(CURB + 0.4), z_light + rng.uniform(12.0, 25.0), rng, back=back)
    for _ in range(spec.signs):
        side = sides[int(rng.integers(2))]
        z = place(side, 3.5, 70.0)
        if z is not None:
            objects.add_sign(canvas, side.at(CURB + side.grass * 0.5 + 0.5), z, rng)
    for _ in range(spec.trees):
        side = sides[int(rng.integers(2))]
        z = place(side, 3.0, 90.0)
        if z is not None:
            offset = CURB + (side.grass * 0.5 if side.grass else rng.uniform(0.6, 1.0))
            objects.add_tree(canvas, side.at(offset), z, rng)


def _draw_traffic(canvas: Canvas, street: Street, spec: SceneSpec, rng: np.random.Generator) -> None:
    occupied = _Occupancy()
    lanes = list(range(len(street.lanes)))
    parking = [(i, x) for i, x in enumerate(street.parking) if x is not None]

    def lane_slot(kind: str, length: float, z_lo: float, z_hi: float, parked_p: float):
        """(x, z, facing) of a free stretch of lane or parking strip, or None if the street is full."""
        for _ in range(15):
            if kind == "tram":
                i = int(np.argmin([abs(c - street.tram_x) for c in street.lanes]))
                x, slot, facing = street.tram_x, ("lane", i), street.directions[i]
            elif parking and rng.random() < parked_p:
                i, x = parking[int(rng.integers(len(parking)))]
                slot, facing = ("park", i), (1 if rng.random() < 0.5 else -1)
            else:
                i = int(rng.choice(lanes))
                x, slot, facing = street.lanes[i] + rng.uniform(-0.25, 0.25), ("lane", i), street.directions[i]
            lo = max(z_lo, 8.0) if slot == ("lane", street.ego_lane) else z_lo  # keep clear ahead of us
            z = _log_uniform(rng, lo, max(z_hi, lo + 1.0))
            if occupied.take(slot, z, z + length, 1.5):
                return x, z, facing
        return None

    def vehicle(kind: str, w: float, length: float, h: float, z_lo: float, z_hi: float, parked_p: float) -> None:
        spot = lane_slot(kind, length, z_lo, z_hi, parked_p)
        if spot is not None:
            x, z, facing = spot
            objects.add_vehicle(canvas, kind, x, z, w, length, h, facing, rng)

    if spec.has_train and street.tram_x is not None:
        vehicle("tram", 2.65, rng.uniform(20.0, 32.0), rng.uniform(3.3, 3.6), 9.0, 60.0, 0.0)
    for _ in range(spec.buses):
        vehicle("bus", 2.55, rng.uniform(11.0, 13.0), rng.uniform(3.0, 3.3), 6.0, 80.0, 0.05)
    for _ in range(spec.trucks):
        vehicle("truck", rng.uniform(2.3, 2.55), rng.uniform(6.0, 10.0), rng.uniform(3.0, 3.8), 6.0, 80.0, 0.15)
    for _ in range(spec.cars):
        suv = rng.random() < 0.25
        vehicle("car", rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.9),
                rng.uniform(1.6, 1.8) if suv else rng.uniform(1.4, 1.6), 5.0, 90.0, 0.35)
    for kind, count in (("motorcycle", spec.motorcyclists), ("bicycle", spec.cyclists)):
        for _ in range(count):
            if kind == "bicycle" and rng.random() < 0.7:
                side = street.right if rng.random() < 0.75 else street.left
                x = side.curb - side.sign * (2.3 * (street.parking[(side.sign + 1) // 2] is not None) + 0.8)
                slot, z = ("bike", side.sign), _log_uniform(rng, 4.0, 50.0)
                if not occupied.take(slot, z, z + 2.0, 1.0):
                    continue
            else:
                spot = lane_slot(kind, 2.2, 5.0, 60.0, 0.0)
                if spot is None:
                    continue
                x, z, _ = spot
            objects.add_two_wheeler(canvas, kind, x, z, rng, ridden=True, k=rng.uniform(0.3, 0.75))
    for _ in range(spec.motorcycles):
        if parking and rng.random() < 0.5:
            i, x = parking[int(rng.integers(len(parking)))]
            x += rng.uniform(-0.5, 0.5)
            z = _log_uniform(rng, 4.0, 50.0)
            if not occupied.take(("park", i), z, z + 1.2, 0.5):
                continue
        else:
            side = (street.left, street.right)[int(rng.integers(2))]
            x, z = side.at(CURB + side.grass + 0.8), _log_uniform(rng, 4.0, 50.0)
        objects.add_two_wheeler(canvas, "motorcycle", x, z, rng, ridden=False, k=rng.uniform(0.5, 1.0))


def _draw_people(canvas: Canvas, street: Street, spec: SceneSpec, rng: np.random.Generator,
                 occupied: _Occupancy) -> None:
    sides = (street.left, street.right)
    for _ in range(spec.persons):
        if street.crosswalk is not None and rng.random() < 0.2:
            x = rng.uniform(*street.road)
            z = street.crosswalk + rng.uniform(0.5, 3.5)
        else:
            side = sides[int(rng.integers(2))]
            lo, hi = side.sidewalk_range
            x = side.at(rng.uniform(lo + 0.3, max(hi - 0.3, lo + 0.4)))
            z = _log_uniform(rng, 3.0, 60.0)
        objects.add_person(canvas, x, z, rng)
    for _ in range(spec.bicycles):
        side = sides[int(rng.integers(2))]
        lo, hi = side.sidewalk_range
        near_curb = rng.random() < 0.5
        x = side.at(lo + 0.6 if near_curb else hi - 0.6)
        z = _log_uniform(rng, 3.5, 40.0)
        objects.add_two_wheeler(canvas, "bicycle", x, z, rng, ridden=False, k=rng.uniform(0.55, 1.0))
