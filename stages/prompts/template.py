"""A model-free prompt writer: a seeded grammar of street scenes in the reference LLM's style.

It stands in for the LLM where none can run (CI, laptops, the toy pipeline) and gives the same
shape of output: "A photo of a busy avenue with parked cars and cyclists on a foggy morning."
Every request draws from its own seeded generator, so each prompt is reproducible on its own.
"""

from __future__ import annotations

import random

from clouds.config import TemplatePrompts
from stages.prompts.records import Candidate
from stages.prompts.seeds import derive_seed

DEFAULT_PREFIXES = ("A photo of a", "A picture of a", "A snapshot of a")

# Every scene starts with a consonant so that "a" (ending each prefix) stays grammatical.
SCENES = (
    "busy city street", "quiet residential street", "wide avenue", "narrow street", "downtown intersection",
    "crowded crossroad", "suburban road", "main boulevard", "city square", "two-lane road", "street corner",
    "shopping street", "tree-lined avenue", "roundabout", "bridge over a river", "highway exit",
    "cobblestone street", "long straight road", "parking lot next to a road", "pedestrian crossing",
)
SUBJECTS = (
    "parked cars", "cars and buses", "pedestrians crossing", "a red tram", "cyclists in the bike lane",
    "a delivery truck", "motorcycles", "traffic lights", "people on the sidewalk", "a bus stop",
    "tall buildings", "green trees", "traffic signs", "street lamps", "a white van", "a yellow taxi",
    "a police car", "riders on scooters", "a train passing by", "low walls and fences", "grass verges",
    "heavy traffic", "a few vehicles", "road markings",
)
CONDITIONS = (
    "at night", "in heavy rain", "on a foggy morning", "in the snow", "at dusk", "on a sunny afternoon",
    "in winter", "under a cloudy sky", "after the rain", "at dawn", "on a rainy evening", "in thick fog",
    "during a snowstorm", "at noon", "in the early morning", "on a clear day",
)


class TemplateWriter:
    """Writes `n` prompts per call; the attempt number enters each request's seed."""

    backend = "template"
    model: str | None = None

    def __init__(self, cfg: TemplatePrompts, seed: int):
        self.seed = seed
        self.prefixes = tuple(cfg.prefixes) or DEFAULT_PREFIXES
        self.min_words, self.max_words = cfg.min_words, cfg.max_words

    def sentence(self, rng: random.Random) -> str:
        subjects = rng.sample(SUBJECTS, rng.choice((1, 1, 2)))
        parts = [rng.choice(self.prefixes), rng.choice(SCENES), "with", " and ".join(subjects)]
        if rng.random() < 0.6:
            parts.append(rng.choice(CONDITIONS))
        return " ".join(parts) + "."

    def write_one(self, request_seed: int) -> str:
        """The first draw whose length fits; a few redraws keep the grammar inside the word range."""
        rng = random.Random(request_seed)
        text = self.sentence(rng)
        for _ in range(16):
            if self.min_words <= len(text.split()) <= self.max_words:
                break
            text = self.sentence(rng)
        return text

    def __call__(self, n: int, attempt: int) -> list[Candidate]:
        seeds = [derive_seed(self.seed, "template", attempt, j) for j in range(n)]
        return [Candidate(self.write_one(s), s) for s in seeds]
