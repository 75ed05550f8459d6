"""Materials: what a pixel is made of, finer than its class.

The label of a pixel comes from the instance it belongs to; its *look* comes from the material.
Keeping the two apart is what lets one layout be rendered in several visual domains: a car's glass,
tyres and paint share the label "car" but must not share a colour, and a domain changes colours
and textures per material without ever touching the label map.
"""

from __future__ import annotations

from enum import IntEnum


class Part(IntEnum):
    SKY = 0
    ASPHALT = 1
    LANE_MARK = 2
    RAIL = 3
    CURB = 4
    PAVING = 5
    GRASS = 6
    FACADE = 7
    WINDOW = 8
    DOOR = 9
    CORNICE = 10
    WALL = 11
    WALL_CAP = 12
    FENCE = 13
    POLE = 14
    LAMP = 15
    TL_HOUSING = 16
    TL_RED = 17
    TL_AMBER = 18
    TL_GREEN = 19
    SIGN_FACE = 20
    SIGN_RIM = 21
    SIGN_SYMBOL = 22
    SIGN_BACK = 23
    TRUNK = 24
    FOLIAGE = 25
    SKIN = 26
    HAIR = 27
    TOP = 28
    BOTTOM = 29
    SHOE = 30
    HELMET = 31
    BODY = 32
    CARGO = 33
    GLASS = 34
    TYRE = 35
    RIM = 36
    HEADLIGHT = 37
    TAILLIGHT = 38
    PLATE = 39
    TRIM = 40
    DISPLAY = 41
    FRAME = 42


NUM_PARTS = len(Part)

# Where a material takes its colour from: the material's own table, or the instance's
# primary / secondary colour (paint of a car, facade of a building, shirt and trousers of a person).
FROM_PART, FROM_PRIMARY, FROM_SECONDARY = 0, 1, 2

COLOUR_SOURCE: dict[Part, int] = {
    Part.ASPHALT: FROM_PRIMARY,
    Part.PAVING: FROM_PRIMARY,
    Part.GRASS: FROM_PRIMARY,
    Part.FACADE: FROM_PRIMARY,
    Part.CORNICE: FROM_SECONDARY,
    Part.WALL: FROM_PRIMARY,
    Part.FENCE: FROM_PRIMARY,
    Part.POLE: FROM_PRIMARY,
    Part.SIGN_FACE: FROM_PRIMARY,
    Part.SIGN_RIM: FROM_SECONDARY,
    Part.FOLIAGE: FROM_PRIMARY,
    Part.TRUNK: FROM_SECONDARY,
    Part.TOP: FROM_PRIMARY,
    Part.BOTTOM: FROM_SECONDARY,
    Part.HELMET: FROM_PRIMARY,
    Part.BODY: FROM_PRIMARY,
    Part.CARGO: FROM_SECONDARY,
    Part.FRAME: FROM_PRIMARY,
}
