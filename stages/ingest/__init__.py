"""Stage `ingest`: datasets in their published layouts -> artifacts of images and train-id labels."""

from stages.ingest.errors import DatasetError
from stages.ingest.sources import SOURCES, make_source
from stages.ingest.stage import ingest

__all__ = ["SOURCES", "DatasetError", "ingest", "make_source"]
