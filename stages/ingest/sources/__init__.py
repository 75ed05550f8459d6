"""Dataset sources: one class per dataset layout, all listing lazy samples in a fixed order."""

from __future__ import annotations

from clouds.config import DatasetSpec
from stages.ingest.sources.acdc import ACDCSource
from stages.ingest.sources.base import FileSource, LazySample, Listing, Pair, Sample
from stages.ingest.sources.bdd10k import BDD10kSource
from stages.ingest.sources.cityscapes import CityscapesSource
from stages.ingest.sources.gta5 import GTA5Source
from stages.ingest.sources.mapillary import MapillarySource
from stages.ingest.sources.synthia import SynthiaSource
from stages.ingest.sources.toycity import ToyCitySource

SOURCES: dict[str, type[FileSource] | type[ToyCitySource]] = {
    "toycity": ToyCitySource,
    "gta5": GTA5Source,
    "synthia": SynthiaSource,
    "cityscapes": CityscapesSource,
    "bdd10k": BDD10kSource,
    "mapillary": MapillarySource,
    "acdc": ACDCSource,
}


def make_source(spec: DatasetSpec, image_format: str = "png") -> FileSource | ToyCitySource:
    """The source for a dataset spec; a missing dataset folder fails here, before any writing."""
    return SOURCES[spec.kind](spec, image_format)


__all__ = ["SOURCES", "FileSource", "LazySample", "Listing", "Pair", "Sample", "ToyCitySource", "make_source"]
