"""ToyCity: procedurally rendered street scenes, the stand-in dataset that needs no download."""

from __future__ import annotations

from functools import partial

import numpy as np

from clouds import toycity
from clouds.config import DatasetSpec
from stages.ingest.errors import DatasetError
from stages.ingest.sources.base import Listing, Sample, as_train_ids


class ToyCitySource:
    """`count` scenes of one visual domain; scene i is a pure function of (domain, i, seed, size)."""

    kind = "toycity"

    def __init__(self, spec: DatasetSpec, image_format: str = "png"):
        if spec.domain is None or spec.count is None:
            raise DatasetError("a toycity dataset needs 'domain' and 'count'")
        self.spec = spec
        self.image_format = image_format

    @property
    def domain(self) -> str:
        assert self.spec.domain is not None
        return self.spec.domain

    def key(self, index: int) -> str:
        return f"{self.domain}-{index:06d}"

    def listing(self) -> Listing:
        assert self.spec.count is not None
        return Listing([(self.key(i), partial(self.load, i)) for i in range(self.spec.count)])

    def load(self, index: int) -> Sample:
        spec = self.spec
        image, label, scene = toycity.generate(spec.domain, index, spec.seed, spec.height, spec.width)
        image = np.asarray(image)
        where = f"toycity {self.domain} #{index}"
        if image.dtype != np.uint8 or image.shape != (spec.height, spec.width, 3):
            raise ValueError(f"{where}: generator returned image {image.dtype} {image.shape}, "
                             f"expected uint8 ({spec.height}, {spec.width}, 3)")
        label = np.asarray(label)
        if label.shape != image.shape[:2]:
            raise ValueError(f"{where}: label shape {label.shape} != image shape {image.shape[:2]}")
        meta = {"dataset": self.kind, "domain": self.domain, "index": index, "seed": spec.seed,
                "source_file": f"toycity:{self.domain}/{index}", "scene": scene.to_dict()}
        return {"__key__": self.key(index), self.image_format: image,
                "seg.png": as_train_ids(label, where), "json": meta}
