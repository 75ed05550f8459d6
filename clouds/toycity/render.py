"""Turning a laid-out street into an image in one of the visual domains.

`sim` is the labelled source: flat per-material colours and flat shading, like a game frame with
no textures. The photographic domains share one pipeline (texture, sun and shadow, sky, lens and
sensor) and add their condition on top: haze (`fog`), darkness and light sources (`night`), wet
ground and streaks (`rain`), ground cover and flakes (`snow`). The label never depends on the
domain, the style or the appearance seed: it comes from the spec's layout alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from clouds.toycity import effects
from clouds.toycity.appearance import PHOTO, SIM, Palette, instance_colours, jitter_palette
from clouds.toycity.canvas import FACE_FRONT, FACE_GROUND, FACE_SIDE, FACE_SKY, FAR
from clouds.toycity.layout import Scene, build_scene
from clouds.toycity.parts import FROM_PRIMARY, FROM_SECONDARY, NUM_PARTS, Part
from clouds.toycity.spec import SceneSpec

DOMAINS: tuple[str, ...] = ("sim", "real", "fog", "night", "rain", "snow")
STYLES: tuple[str, ...] = ("target", "generated")
MIN_SIZE = 16

_WEATHER_OF = {"fog": "fog", "rain": "rain", "snow": "snow"}

# Colour a light source has when it is on (traffic-light lamps: the one that is lit).
_LIGHT_RGB = {
    Part.LAMP: (1.0, 0.85, 0.6), Part.HEADLIGHT: (1.0, 0.97, 0.88), Part.TAILLIGHT: (1.0, 0.08, 0.05),
    Part.TL_RED: (1.0, 0.12, 0.08), Part.TL_AMBER: (1.0, 0.65, 0.1), Part.TL_GREEN: (0.2, 1.0, 0.6),
    Part.DISPLAY: (1.0, 0.6, 0.1),
}
_TL_PARTS = (Part.TL_RED, Part.TL_AMBER, Part.TL_GREEN)


def check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown toycity domain {domain!r}; expected one of {DOMAINS}")


def render(spec: SceneSpec, domain: str, height: int, width: int, seed: int,
           style: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """Render `spec` in `domain`: (image uint8 HxWx3, label uint8 HxW of train ids).

    The domain names the visual condition; for the photographic domains the spec's time of day is
    applied on top (dusk light, or night lighting for a foggy/rainy/snowy night). `style="generated"`
    draws the appearance (palette, texture, lens, condition strength) from a wider per-image
    distribution, for prompt-driven images that should not be clones of a target set.
    """
    if not isinstance(spec, SceneSpec):
        raise ValueError(f"render needs a SceneSpec, got {type(spec).__name__}")
    check_domain(domain)
    if style not in STYLES:
        raise ValueError(f"unknown toycity style {style!r}; expected one of {STYLES}")
    for name, size in (("height", height), ("width", width)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
            raise ValueError(f"toycity {name} must be an int >= {MIN_SIZE}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"toycity seed must be an int >= 0, got {seed!r}")
    return render_scene(build_scene(spec, int(height), int(width)), spec, domain, int(seed), style)


def render_scene(scene: Scene, spec: SceneSpec, domain: str, seed: int,
                 style: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """`render` of an already laid-out scene: one street in several domains costs one layout.

    The layout never depends on weather or time (`condition_for` changes only those), so `scene` may be
    built from any condition of `spec`; `spec` itself must carry the condition to render.
    """
    rng = np.random.default_rng(seed)
    if domain == "sim":
        image = _render_sim(scene, rng)
    else:
        image = _render_photo(scene, spec, domain, style, rng)
    return _to_uint8(image), scene.label()


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# -- shared -------------------------------------------------------------------------------------

def _albedo(scene: Scene, palette: Palette, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel base colour, plus the lit traffic-light lamps (which lamp is on is appearance)."""
    c = scene.canvas
    primary, secondary, tint = instance_colours(palette, c.instances, rng)
    n = len(c.instances)
    # one gather from a stacked table instead of three per-pixel selections
    table = np.concatenate([palette.part_rgb, primary, secondary]).astype(np.float32)
    source = palette.source[c.part]
    index = np.where(source == FROM_PRIMARY, NUM_PARTS + c.inst,
                     np.where(source == FROM_SECONDARY, NUM_PARTS + n + c.inst, c.part.astype(np.int32)))
    albedo = table[index] * tint[c.inst][..., None]
    state = rng.choice(3, size=len(c.instances), p=[0.45, 0.1, 0.45])
    lit = np.zeros(c.part.shape, bool)
    for k, part in enumerate(_TL_PARTS):
        lit |= (c.part == part) & (state[c.inst] == k)
    return albedo, lit


def _world(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """World X (lateral) and V (height) of every pixel from its depth."""
    cam, depth = scene.canvas.camera, scene.canvas.depth
    h, w = depth.shape
    x = (np.arange(w, dtype=np.float32) + np.float32(0.5 - cam.cx))[None, :] * depth / np.float32(cam.focal)
    v = np.float32(cam.elevation) - (np.arange(h, dtype=np.float32) + np.float32(0.5 - cam.horizon))[:, None] * depth / np.float32(cam.focal)
    return x, v


def _sky_gradient(scene: Scene, top: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    cam = scene.canvas.camera
    rows = np.arange(cam.height) + 0.5
    t = np.clip((cam.horizon - rows) / max(cam.horizon, 1.0), 0.0, 1.0) ** 0.7
    grad = (horizon[None, :] * (1 - t[:, None]) + top[None, :] * t[:, None]).astype(np.float32)
    return np.broadcast_to(grad[:, None, :], (cam.height, cam.width, 3))


# -- sim ------------------------------------------------------------------------------------------

def _render_sim(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Flat colours and flat shading: what a texture-less game engine would output."""
    c = scene.canvas
    albedo, lit = _albedo(scene, SIM, rng)
    left = (np.arange(c.camera.width) + 0.5 < c.camera.cx)[None, :]
    shade = np.select(
        [c.face == FACE_GROUND, c.face == FACE_FRONT, (c.face == FACE_SIDE) & left, c.face == FACE_SIDE],
        [1.0, 0.92, 0.97, 0.8], 1.0,
    ).astype(np.float32)
    image = albedo * shade[..., None]
    sky = _sky_gradient(scene, np.array([0.3, 0.55, 0.95]), np.array([0.55, 0.75, 1.0]))
    image = np.where((c.face == FACE_SKY)[..., None], sky, image)
    for part in _TL_PARTS:
        image[lit & (c.part == part)] = _LIGHT_RGB[part]
    return image


# -- photographic ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lighting:
    ambient: np.ndarray
    sun: np.ndarray
    sun_side: int  # +1: sun to the right, shadows from the right-hand buildings
    sun_slope: float  # metres of shadow per metre of height (1 / tan elevation)
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    lights_on: float  # 0..1 street lamps, vehicle lights, displays
    windows_lit: float  # fraction of windows lit
    clouds: float


_TIMES = {
    "day": dict(ambient=(0.5, 0.52, 0.58), sun=(0.62, 0.6, 0.55), slope=(0.4, 1.6),
                top=(0.3, 0.5, 0.82), horizon=(0.74, 0.82, 0.9), lights=0.0, windows=0.0),
    "morning": dict(ambient=(0.44, 0.45, 0.5), sun=(0.72, 0.6, 0.45), slope=(1.6, 4.0),
                    top=(0.42, 0.58, 0.8), horizon=(0.95, 0.85, 0.7), lights=0.0, windows=0.05),
    "dusk": dict(ambient=(0.28, 0.25, 0.3), sun=(0.6, 0.36, 0.2), slope=(2.5, 6.0),
                 top=(0.22, 0.22, 0.42), horizon=(0.95, 0.55, 0.3), lights=0.6, windows=0.3),
    "night": dict(ambient=(0.03, 0.035, 0.06), sun=(0.0, 0.0, 0.0), slope=(1.0, 1.0),
                  top=(0.01, 0.012, 0.03), horizon=(0.07, 0.07, 0.1), lights=1.0, windows=0.4),
}
_OVERCAST_SKY = {"fog": (0.74, 0.76, 0.78), "rain": (0.48, 0.5, 0.53), "snow": (0.8, 0.82, 0.86)}


def _lighting(time: str, weather: str, style: str, rng: np.random.Generator) -> Lighting:
    t = _TIMES[time]
    spread = 0.08 if style == "target" else 0.25

    def jit(values, s=spread) -> np.ndarray:
        return np.asarray(values, np.float32) * rng.uniform(1 - s, 1 + s, 3).astype(np.float32)

    ambient, sun = jit(t["ambient"]), jit(t["sun"])
    top, horizon = jit(t["top"]), jit(t["horizon"])
    if weather != "clear":
        # overcast: no direct sun, the sky's light comes from everywhere
        ambient = np.full(3, float((ambient + 0.7 * sun).mean()), np.float32) * jit((1.0, 1.0, 1.0), 0.04)
        sun = np.zeros(3, np.float32)
        if time == "night":
            top, horizon = jit((0.03, 0.03, 0.04)), jit((0.1, 0.09, 0.09))
        else:
            grey = jit(_OVERCAST_SKY[weather], 0.05) * (0.8 if time == "dusk" else 1.0)
            top, horizon = grey * 0.92, grey
    return Lighting(
        ambient=ambient, sun=sun, sun_side=1 if rng.random() < 0.5 else -1,
        sun_slope=float(rng.uniform(*t["slope"])), sky_top=top, sky_horizon=horizon,
        lights_on=t["lights"], windows_lit=t["windows"] * rng.uniform(0.6, 1.4),
        clouds=float(rng.uniform(0.0, 0.6)) if weather == "clear" and time != "night" else 0.0,
    )


def _texture(scene: Scene, albedo: np.ndarray, palette: Palette, rng: np.random.Generator) -> np.ndarray:
    c = scene.canvas
    h, w = c.part.shape
    fine = rng.standard_normal((h, w)).astype(np.float32)
    blotch = effects.value_noise(rng, h, w, cell=w / 12.0)
    amounts = palette.texture[c.part]
    albedo = albedo * (1.0 + amounts[..., 0] * fine + amounts[..., 1] * blotch)[..., None]
    part = c.part
    gain = np.ones((h, w), np.float32)
    gain = np.where(part == Part.WINDOW, 0.55 + 0.9 * c.cell, gain)  # curtains, reflections
    gain = np.where((part == Part.PAVING) & (c.cell > 0.5), 0.8, gain)  # tile seams
    gain = np.where(part == Part.ASPHALT, 0.9 + 0.4 * c.cell, gain)  # patched asphalt
    body = (part == Part.BODY) | (part == Part.CARGO)
    gain = np.where(body, 0.7 + 0.5 * c.vfrac, gain)  # paint catches the sky on top
    gain = np.where(part == Part.FOLIAGE, 0.65 + 0.55 * c.vfrac, gain)  # crowns are darker inside/below
    gain = np.where(part == Part.GLASS, 0.7 + 0.6 * c.vfrac, gain)
    return np.clip(albedo * gain[..., None], 0.0, 1.0)


def _snow_cover(scene: Scene, albedo: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """White ground except where tyres keep the lanes dark; caps on tops of things; speckled crowns."""
    c = scene.canvas
    h, w = c.part.shape
    x, _ = _world(scene)
    noise = effects.value_noise(rng, h, w, cell=w / 20.0)
    part = c.part
    base = np.select(
        [np.isin(part, [Part.PAVING, Part.GRASS, Part.CURB]), np.isin(part, [Part.ASPHALT, Part.LANE_MARK, Part.RAIL])],
        [0.95, 0.6], 0.0,
    ).astype(np.float32)
    tracks = np.zeros((h, w), bool)
    for lane in scene.street.lanes:
        for wheel in (lane - 0.8, lane + 0.8):
            tracks |= np.abs(x - wheel) < 0.35
    base = np.where(tracks & (c.face == FACE_GROUND) & (base < 0.9), 0.15, base)
    cover = np.clip(base + 0.3 * noise * amount, 0.0, 1.0) * amount
    above = np.vstack([c.inst[:1], c.inst[:-1]])
    cap_px = max(1, int(round(h / 128)))
    top = (c.inst != above) & (c.face != FACE_GROUND) & (c.face != FACE_SKY)
    for _ in range(cap_px):
        top = top | np.vstack([top[:1], top[:-1]]) & (c.inst == np.vstack([c.inst[:1], c.inst[:-1]]))
    cover = np.where(top, 0.85 * amount, cover)
    cover = np.where((part == Part.FOLIAGE) & (noise > 0.3), 0.7 * amount, cover)
    snow = np.array([0.9, 0.92, 0.96], np.float32) * rng.uniform(0.92, 1.0)
    return albedo * (1 - cover[..., None]) + snow * cover[..., None]


def _emission(scene: Scene, lit_tl: np.ndarray, light: Lighting, rng: np.random.Generator) -> np.ndarray:
    c = scene.canvas
    h, w = c.part.shape
    out = np.zeros((h, w, 3), np.float32)
    if light.lights_on > 0:
        for part, rgb in _LIGHT_RGB.items():
            if part in _TL_PARTS:
                continue
            on = c.part == part
            if on.any():
                out[on] = np.asarray(rgb, np.float32) * light.lights_on * 1.4
        windows = (c.part == Part.WINDOW) & (c.cell < light.windows_lit)
        if windows.any():
            warmth = (c.cell[windows] * 7.3) % 1.0
            out[windows] = np.stack([0.95 + 0 * warmth, 0.7 + 0.2 * warmth, 0.35 + 0.3 * warmth], -1) * (0.35 + 0.4 * warmth[:, None])
    tl_gain = 1.2 if light.lights_on > 0 else 0.55
    for part in _TL_PARTS:
        on = lit_tl & (c.part == part)
        out[on] = np.asarray(_LIGHT_RGB[part], np.float32) * tl_gain
    return out


def _light_pools(scene: Scene, light: Lighting) -> np.ndarray:
    """Warm pools of light on the ground under street lamps and in front of headlights."""
    c = scene.canvas
    pools = np.zeros(c.part.shape, np.float32)
    if light.lights_on <= 0 or not c.lights:
        return pools[..., None]
    ground = c.face == FACE_GROUND
    x, _ = _world(scene)
    xg, zg = x[ground], c.depth[ground]
    acc = np.zeros(xg.shape, np.float32)
    for lamp in c.lights:
        acc += np.exp(-((xg - lamp.x) ** 2 + (zg - lamp.z) ** 2) / (2 * lamp.reach ** 2)).astype(np.float32)
    pools[ground] = np.minimum(acc, 1.5) * light.lights_on
    return pools[..., None] * np.array([0.6, 0.5, 0.33], np.float32)


def _render_photo(scene: Scene, spec: SceneSpec, domain: str, style: str, rng: np.random.Generator) -> np.ndarray:
    """Surface colours -> light -> light sources -> weather -> camera."""
    c = scene.canvas
    scale = c.camera.width / 256.0
    generated = style == "generated"
    time = "night" if domain == "night" else spec.time_of_day
    weather = _WEATHER_OF.get(domain, "clear")
    palette = jitter_palette(PHOTO, rng, 0.15) if generated else PHOTO
    light = _lighting(time, weather, style, rng)

    albedo, lit_tl = _albedo(scene, palette, rng)
    albedo = _texture(scene, albedo, palette, rng)
    if weather == "snow":
        albedo = _snow_cover(scene, albedo, rng, rng.uniform(0.6, 1.0) if generated else rng.uniform(0.8, 1.0))
    if weather == "rain":
        albedo = np.where((c.face == FACE_GROUND)[..., None], albedo * 0.6, albedo)  # wet ground is darker

    image = _illuminate(scene, albedo, light, rng)
    emission = _emission(scene, lit_tl, light, rng)
    image = np.maximum(image, emission) + effects.glow(emission, scale, 0.12 if weather != "fog" else 0.3)
    image = _weather(scene, image, emission, light, weather, time, generated, rng)
    return _camera(image, rng, time, generated, scale)


def _illuminate(scene: Scene, albedo: np.ndarray, light: Lighting, rng: np.random.Generator) -> np.ndarray:
    """Ambient + sun (blocked by the buildings on the sun's side), occlusion, lamp pools and the sky."""
    c = scene.canvas
    h, w = c.part.shape
    ground = c.face == FACE_GROUND
    x, v = _world(scene)
    sunny = np.zeros((h, w), np.float32)
    if light.sun.any():
        s = light.sun_side
        side = scene.street.right if s > 0 else scene.street.left
        shade_h = 14.0 if side.kind == "buildings" else 4.0
        # below the ray that grazes the top of that side's buildings (height shade_h): shadow
        shadow = s * x - v * light.sun_slope > s * side.building_line - shade_h * light.sun_slope
        facing = np.select(
            [ground, c.face == FACE_FRONT, (c.face == FACE_SIDE) & (np.sign(x) == -s)],
            [1.0, 0.55, 0.95], 0.0,
        )
        sunny = np.where(shadow, 0.0, facing).astype(np.float32)
    irradiance = light.ambient[None, None, :] + light.sun[None, None, :] * sunny[..., None]
    # a broad gradient across the frame: brighter towards the sun, darker towards the bottom
    across = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    down = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    ramp = 1.0 + rng.uniform(0.05, 0.2) * light.sun_side * across[None, :] - rng.uniform(0.0, 0.15) * down[:, None]
    image = albedo * irradiance * ramp[..., None]

    # ambient occlusion: the ground darkens under and around things standing on it
    standing = ((c.face == FACE_FRONT) | (c.face == FACE_SIDE)).astype(np.float32)
    occlusion = effects.blur(standing, 2.0 * w / 256.0)
    image = np.where(ground[..., None], image * (1.0 - 0.45 * occlusion[..., None]), image)
    image = image + albedo * _light_pools(scene, light)

    sky = np.array(_sky_gradient(scene, light.sky_top, light.sky_horizon))
    if light.clouds > 0:
        clouds = np.clip(effects.value_noise(rng, h, w, cell=w / 6.0) * 0.5 + 0.1, 0.0, 1.0)[..., None]
        sky = sky * (1 - light.clouds * clouds) + light.clouds * clouds * np.float32(0.92)
    return np.where((c.face == FACE_SKY)[..., None], sky, image)


def _weather(scene: Scene, image: np.ndarray, emission: np.ndarray, light: Lighting, weather: str, time: str,
             generated: bool, rng: np.random.Generator) -> np.ndarray:
    """What the air does: haze with depth, reflections and streaks of rain, falling snow."""
    c = scene.canvas
    h, w = c.part.shape
    scale = w / 256.0
    depth = np.minimum(c.depth, FAR)
    if weather == "rain":
        wet = np.isin(c.part, [Part.ASPHALT, Part.LANE_MARK, Part.RAIL, Part.PAVING, Part.CURB])
        reflection = effects.wet_reflection(image, c.camera.horizon, scale)
        image = np.where(wet[..., None], image + rng.uniform(0.3, 0.5) * reflection, image)
    if weather == "fog":
        visibility = rng.uniform(25.0, 150.0) if generated else rng.uniform(25.0, 70.0)
        airlight = light.sky_horizon * (1.6 if time == "night" else 1.0)
        image = effects.haze(image, depth, visibility, airlight)
        image = image + effects.glow(emission, 2.0 * scale, 0.15)  # light scatters in the fog
    elif weather in ("rain", "snow"):
        image = effects.haze(image, depth, rng.uniform(250.0, 600.0), light.sky_horizon)
    if weather == "rain":
        streaks = effects.rain_streaks(rng, h, w, rng.uniform(0.5, 1.5))
        image = image + streaks[..., None] * (0.6 if time != "night" else 0.25)
    if weather == "snow":
        flakes = effects.snowflakes(rng, h, w, rng.uniform(0.4, 1.2))[..., None]
        image = image * (1 - flakes) + flakes * np.float32(0.95 if time != "night" else 0.5)
        image = 0.8 * image + 0.2 * image.mean()  # snow light flattens contrast
    return image


def _camera(image: np.ndarray, rng: np.random.Generator, time: str, generated: bool, scale: float) -> np.ndarray:
    """Lens blur, vignetting, white balance, exposure, saturation and sensor noise."""
    h, w, _ = image.shape
    image = effects.blur(image, scale * (rng.uniform(0.0, 0.9) if generated else rng.uniform(0.3, 0.6)))
    image = image * effects.vignette(h, w, rng.uniform(0.0, 0.5) if generated else rng.uniform(0.15, 0.35))
    balance = 1.0 + rng.uniform(-0.06, 0.06) * np.array([1.0, 0.0, -1.0], np.float32)
    exposure = rng.uniform(0.85, 1.15) * (1.2 if time == "night" else 1.0)
    image = image * balance * exposure
    image = effects.saturate(image, rng.uniform(1.0, 1.4) if generated else rng.uniform(0.8, 1.05))
    sigma = (0.035 if time == "night" else 0.012) * (rng.uniform(0.3, 1.0) if generated else 1.0)
    noise = rng.standard_normal((h, w, 1)).astype(np.float32) * sigma
    noise = noise + rng.standard_normal((h, w, 3)).astype(np.float32) * 0.5 * sigma
    return image + noise


def condition_for(spec: SceneSpec, domain: str) -> SceneSpec:
    """The spec with its weather and time made consistent with the domain it is rendered in.

    Only condition fields change, never the layout, so the label map is untouched. Target sets
    stay pure daylight sets of their condition (dusk and night become day; `night` is all night),
    as Cityscapes and ACDC's fog/rain/snow splits are; dusk and foggy nights come from prompts.
    """
    check_domain(domain)
    time = spec.time_of_day if spec.time_of_day in ("day", "morning") else "day"
    if domain in ("sim", "real"):
        return replace(spec, weather="clear", time_of_day=time)
    if domain == "night":
        return replace(spec, weather="clear", time_of_day="night")
    return replace(spec, weather=domain, time_of_day=time)
