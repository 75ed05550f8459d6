"""Datasets: the labelled source and the unseen targets, each ingested into an artifact."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from clouds.config.base import Section

DatasetKind = Literal["toycity", "gta5", "synthia", "cityscapes", "bdd10k", "mapillary", "acdc"]


class DatasetSpec(Section):
    name: str = Field(description="artifact name under the run, e.g. 'source' or 'target-real'")
    kind: DatasetKind
    root: str | None = Field(None, description="dataset folder in the layout of SPEC.md (not for toycity)")
    split: str = "train"
    condition: str | None = Field(None, description="ACDC condition: fog, night, rain or snow")
    domain: str | None = Field(None, description="toycity visual domain: sim, real, fog, night, rain, snow")
    count: int | None = Field(None, ge=1, description="toycity: images to render; real sets: optional cap")
    seed: int = 0
    height: int = Field(128, ge=16)
    width: int = Field(256, ge=16)

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
