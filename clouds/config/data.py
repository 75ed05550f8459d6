"""Datasets: the labelled source and the unseen targets, each ingested into an artifact."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from clouds.config.base import MAX_COUNT, MAX_SEED, MAX_SIDE, SafeName, Section

DatasetKind = Literal["toycity", "gta5", "synthia", "cityscapes", "bdd10k", "mapillary", "acdc"]
AverageRule = Literal["union", "gt-present"]

REFERENCE_AVERAGE: dict[str, str] = {"cityscapes": "union"}
"""The class-averaging rule the published figures use per target kind: Cityscapes is scored by its official
evaluator (classes with a non-zero union); BDD, Mapillary and ACDC by the reference's own evaluator
(classes with ground-truth pixels). Every other kind follows the reference's evaluator too."""


class DatasetSpec(Section):
    name: SafeName = Field(description="artifact name under the run, e.g. 'source' or 'target-real'")
    kind: DatasetKind
    root: str | None = Field(None, description="dataset folder in the layout of docs/DATASETS.md (not for toycity)")
    split: SafeName = Field("train", description="a folder of the dataset (train, val...)")
    condition: SafeName | None = Field(None, description="ACDC condition: fog, night, rain or snow")
    domain: str | None = Field(None, description="toycity visual domain: sim, real, fog, night, rain, snow")
    count: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="toycity: images to render; real sets: optional cap"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED)
    height: int = Field(128, ge=16, le=MAX_SIDE)
    width: int = Field(256, ge=16, le=MAX_SIDE)
    average: AverageRule = Field(
        "gt-present",
        description="as a target, mIoU averages classes with a non-zero 'union' (Cityscapes' official "
        "evaluator) or with ground-truth pixels, 'gt-present' (the reference's BDD/Mapillary/ACDC evaluator); "
        "omitted = the reference's rule for this kind",
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_average(cls, data: object) -> object:
        """An omitted rule is the reference's for this kind, resolved here so that it is hashed and shown."""
        if isinstance(data, dict) and data.get("average") is None and isinstance(data.get("kind"), str):
            return {**data, "average": REFERENCE_AVERAGE.get(data["kind"], "gt-present")}
        return data

    @model_validator(mode="after")
    def _needs_root(self) -> DatasetSpec:
        if self.kind == "toycity":
            if self.domain is None or self.count is None:
                raise ValueError("a toycity dataset needs 'domain' and 'count'")
        elif self.root is None:
            raise ValueError(f"a {self.kind} dataset needs 'root' (its folder on disk)")
        if self.kind == "acdc" and self.condition is None:
            raise ValueError("an acdc dataset needs 'condition' (fog, night, rain or snow)")
        return self


class DataConfig(Section):
    source: DatasetSpec
    targets: list[DatasetSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> DataConfig:
        """Each dataset is ingested into `data/{name}`: two datasets of one name would overwrite each other."""
        seen: dict[str, str] = {self.source.name: "source"}
        for i, target in enumerate(self.targets):
            if target.name in seen:
                raise ValueError(f"targets.{i}.name {target.name!r} is already the name of {seen[target.name]}; "
                                 "every dataset needs its own name (it is its folder under the run)")
            seen[target.name] = f"targets.{i}"
        return self
