"""From a street-scene prompt to a SceneSpec, and from a spec to the domain that renders it.

This is toycity's stand-in for a text-to-image model's understanding of a prompt: it reads what a
CLOUDS prompt writer typically says ("A photo of a busy street with two buses and a cyclist on a
foggy night") -- object words with their counts, crowd words, weather and time of day -- and
leaves everything the prompt does not mention to the seed, as a diffusion model would.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from clouds.toycity.spec import MAX_COUNT, SceneSpec, sample_scene

NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "a": 1, "an": 1, "single": 1, "lone": 1, "another": 1, "pair": 2, "couple": 2,
    "both": 2, "dozen": 12,
}
# quantity words without an exact number: (low, high) drawn from the seed
VAGUE = {"few": (2, 3), "several": (3, 5), "some": (2, 4), "many": (5, 8), "lots": (5, 8), "numerous": (5, 8)}

# noun -> (SceneSpec field, is_plural)
NOUNS: dict[str, tuple[str, bool]] = {}
for _field, _singular, _plural in (
    ("cars", ("car", "taxi", "cab", "sedan", "suv", "hatchback", "vehicle", "jeep"),
     ("cars", "taxis", "cabs", "sedans", "suvs", "vehicles", "jeeps", "traffic")),
    ("trucks", ("truck", "lorry", "van", "pickup"), ("trucks", "lorries", "vans", "pickups")),
    ("buses", ("bus", "coach", "minibus"), ("buses", "busses", "coaches", "minibuses")),
    ("persons", ("person", "pedestrian", "man", "woman", "child", "kid", "boy", "girl", "walker",
                 "commuter", "tourist", "shopper", "jogger", "passerby"),
     ("people", "persons", "pedestrians", "men", "women", "children", "kids", "boys", "girls", "walkers",
      "commuters", "tourists", "shoppers", "joggers", "passersby", "folks")),
    ("cyclists", ("cyclist", "bicyclist", "biker"), ("cyclists", "bicyclists", "bikers")),
    ("motorcyclists", ("motorcyclist", "motorbiker", "scooterist"), ("motorcyclists", "motorbikers")),
    ("bicycles", ("bicycle", "bike", "cycle"), ("bicycles", "bikes", "cycles")),
    ("motorcycles", ("motorcycle", "motorbike", "scooter", "moped"), ("motorcycles", "motorbikes", "scooters", "mopeds")),
    ("poles", ("pole", "lamppost", "streetlight", "streetlamp", "lamp"), ("poles", "lampposts", "streetlights", "streetlamps", "lamps")),
    ("traffic_lights", ("stoplight", "signal"), ("stoplights", "signals")),
    ("signs", ("sign", "signpost", "billboard"), ("signs", "signposts", "billboards")),
    ("trees", ("tree", "palm", "oak"), ("trees", "palms", "oaks")),
):
    for _w in _singular:
        NOUNS[_w] = (_field, False)
    for _w in _plural:
        NOUNS[_w] = (_field, True)
# two-word nouns are joined before matching
COMPOUNDS = {
    ("traffic", "light"): "stoplight", ("traffic", "lights"): "stoplights",
    ("traffic", "signal"): "signal", ("traffic", "signals"): "signals",
    ("street", "light"): "streetlight", ("street", "lights"): "streetlights",
    ("street", "lamp"): "streetlamp", ("street", "lamps"): "streetlamps",
    ("lamp", "post"): "lamppost", ("lamp", "posts"): "lampposts",
    ("road", "sign"): "sign", ("road", "signs"): "signs", ("stop", "sign"): "sign", ("street", "sign"): "sign",
    ("motor", "bike"): "motorbike", ("motor", "bikes"): "motorbikes",
}
TRAIN_WORDS = frozenset({"tram", "trams", "train", "trains", "streetcar", "streetcars", "trolley", "trolleys",
                         "railway", "tramway", "light-rail"})
RIDE_WORDS = frozenset({"riding", "rides", "ride", "on", "pedaling", "pedalling"})

WEATHER_WORDS = {
    "fog": ("fog", "foggy", "mist", "misty", "haze", "hazy", "smog", "smoggy"),
    "rain": ("rain", "rainy", "raining", "rainfall", "drizzle", "drizzly", "wet", "storm", "stormy", "downpour", "showers"),
    "snow": ("snow", "snowy", "snowing", "snowfall", "winter", "wintry", "blizzard", "snowstorm", "icy", "frosty"),
}
TIME_WORDS = {
    "night": ("night", "nighttime", "midnight", "darkness", "nocturnal", "nights"),
    "dusk": ("dusk", "sunset", "twilight", "evening", "nightfall"),
    "morning": ("morning", "sunrise", "dawn", "daybreak"),
    "day": ("day", "daytime", "noon", "midday", "afternoon", "sunny", "daylight"),
}
BUSY_WORDS = frozenset({"busy", "crowded", "crowd", "crowds", "bustling", "packed", "congested", "jammed", "hectic", "rush", "lively"})
QUIET_WORDS = frozenset({"empty", "quiet", "deserted", "calm", "lonely", "abandoned", "peaceful", "vacant", "silent"})
MOVABLE = ("cars", "trucks", "buses", "persons", "cyclists", "motorcyclists", "bicycles", "motorcycles")
# words that end the search for a count before a noun ("a street with cars": "a" counts the street)
_STOP = frozenset({"with", "and", "of", "in", "on", "at", "near", "by", "under", "along", "beside", "past",
                   "passing", "behind", "while", "as", "through", "during", "the", "is", "are", "street",
                   "road", "avenue", "intersection", "crossing", "city", "scene"})

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?|\d+")


def _tokens(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    out: list[str] = []
    i = 0
    while i < len(words):
        pair = tuple(words[i:i + 2])
        if pair in COMPOUNDS:
            out.append(COMPOUNDS[pair])  # type: ignore[index]
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def _count_before(tokens: list[str], i: int, rng: np.random.Generator, plural_range: tuple[int, int],
                  plural: bool) -> int:
    """The count a noun at position i is given: a number word up to 3 words back, else by grammar."""
    for j in range(i - 1, max(-1, i - 4), -1):
        word = tokens[j]
        if word.isdigit():
            return int(word)
        if word in NUMBERS:
            if word in ("a", "an") and plural:
                continue  # "a few cars" / "a couple of cars": the vague word decides
            return NUMBERS[word]
        if word in VAGUE:
            lo, hi = VAGUE[word]
            return int(rng.integers(lo, hi + 1))
        if word in _STOP or word in NOUNS:
            break
    if plural:
        return int(rng.integers(plural_range[0], plural_range[1] + 1))
    return 1


def _first_match(tokens: set[str], table: dict[str, tuple[str, ...]]) -> str | None:
    for value, words in table.items():
        if tokens & set(words):
            return value
    return None


def spec_from_prompt(text: str, seed: int) -> SceneSpec:
    """Parse counts, weather and time of day from `text`; draw everything unspecified from `seed`.

    Number words (one..ten, digits, "a"/"an") give exact counts; a bare plural gives 2..4 (4..8 on a
    "busy"/"crowded" street); "empty"/"quiet" streets keep unmentioned traffic and people to 0..1;
    tram/train words put a tram on rails. A bicycle or motorcycle that someone rides ("a man riding
    a bicycle", "a cyclist on a bike") becomes a rider, not an extra parked two-wheeler.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"spec_from_prompt needs a non-empty prompt, got {text!r}")
    rng = np.random.default_rng(seed)
    base = sample_scene(rng)
    tokens = _tokens(text)
    vocab = set(tokens)
    busy = bool(vocab & BUSY_WORDS)
    quiet = bool(vocab & QUIET_WORDS) and not busy
    plural_range = (4, 8) if busy else (2, 4)

    counts: dict[str, int] = {}
    ridden = {"bicycles": 0, "motorcycles": 0}
    riders = {"bicycles": "cyclists", "motorcycles": "motorcyclists"}
    for i, word in enumerate(tokens):
        if word not in NOUNS:
            continue
        field, plural = NOUNS[word]
        n = _count_before(tokens, i, rng, plural_range if field in MOVABLE else (2, 4), plural)
        if field in ridden and any(t in RIDE_WORDS for t in tokens[max(0, i - 3):i]):
            ridden[field] += n
            continue
        counts[field] = counts.get(field, 0) + n
    for field, n in ridden.items():
        rider = riders[field]
        if n:
            counts[rider] = max(counts.get(rider, 0), n)
            # "a man riding a bicycle": the man is the rider, not a pedestrian
            if "persons" in counts:
                counts["persons"] = max(0, counts["persons"] - n)

    values = {}
    for field in MOVABLE + ("poles", "traffic_lights", "signs", "trees"):
        if field in counts:
            values[field] = min(counts[field], MAX_COUNT)
        elif quiet and field in MOVABLE:
            values[field] = int(rng.integers(0, 2)) if field in ("cars", "persons") else 0
        elif busy and field in ("cars", "persons"):
            values[field] = min(MAX_COUNT, max(getattr(base, field), int(rng.integers(6, 12))))
        else:
            values[field] = getattr(base, field)
    has_train = True if vocab & TRAIN_WORDS else (False if quiet else base.has_train)
    weather = _first_match(vocab, WEATHER_WORDS) or base.weather
    time = _first_match(vocab, TIME_WORDS) or base.time_of_day
    return dataclasses.replace(base, **values, has_train=has_train, weather=weather, time_of_day=time)


def domain_for(spec: SceneSpec) -> str:
    """The visual domain a spec's condition renders in: its weather if any, else night, else real.

    A foggy (rainy, snowy) night renders in that weather's domain; `render` then applies the
    spec's night lighting on top.
    """
    if spec.weather in ("fog", "rain", "snow"):
        return spec.weather
    if spec.time_of_day == "night":
        return "night"
    return "real"
