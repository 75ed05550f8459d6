"""The ingest stage: one dataset on disk (or ToyCity) -> one artifact of images and train-id labels."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from artifacts import Artifact, ArtifactWriter
from artifacts.identity import config_hash as hash_settings
from artifacts.shards import iter_shard_raw, shard_name
from clouds.config import ArtifactConfig, DatasetSpec
from clouds.labels import CLASS_NAMES, IGNORE, NUM_CLASSES
from stages.ingest.sources import LazySample, Sample, make_source

logger = logging.getLogger(__name__)

STAGE = "ingest"


class PixelCounts:
    """Per-class pixel totals over the artifact: the class balance a trainer or report wants to see."""

    def __init__(self) -> None:
        self.classes = np.zeros(NUM_CLASSES, dtype=np.int64)
        self.ignore = 0

    def add(self, meta: dict[str, Any]) -> None:
        self.classes += np.asarray(meta["class_pixels"], dtype=np.int64)
        self.ignore += int(meta["ignore_pixels"])

    def as_stats(self) -> dict[str, Any]:
        return {"class_pixels": self.classes.tolist(), "class_names": list(CLASS_NAMES),
                "ignore_pixels": self.ignore}


def with_class_pixels(sample: Sample) -> Sample:
    """Store the label's per-class pixel counts in the sample's json (class-balanced sampling reads them)."""
    counts = np.bincount(np.asarray(sample["seg.png"]).ravel(), minlength=256)
    sample["json"]["class_pixels"] = counts[:NUM_CLASSES].tolist()
    sample["json"]["ignore_pixels"] = int(counts[IGNORE])
    return sample


def ingest_settings(spec: DatasetSpec, image_format: str) -> dict[str, Any]:
    """What the output depends on: the dataset spec and how images are stored (not the sharding, nor the
    evaluation-only averaging rule, which the evaluate stage hashes). The lineage records the spec whole."""
    return {"dataset": spec.model_dump(mode="json", exclude={"average"}), "image_format": image_format}


def _counted(items: Iterable[LazySample], counts: PixelCounts, bar: tqdm) -> Iterator[LazySample]:
    """Wrap each thunk so built samples gain their counts; the bar ticks for skipped ones too."""
    for key, build in items:
        def built(build=build) -> Sample:
            sample = with_class_pixels(build())
            counts.add(sample["json"])
            return sample

        yield key, built
        bar.update(1)


def ingest(
    spec: DatasetSpec,
    output_url: str,
    artifacts_cfg: ArtifactConfig,
    *,
    config_hash: str | None = None,
    overwrite: bool = False,
) -> Artifact:
    """Write `spec`'s dataset to a committed artifact at `output_url`.

    Resumable: complete shards left by an interrupted run with the same config hash are kept, and
    their samples are not read again. Any bad input raises before the commit marker is written.
    """
    source = make_source(spec, artifacts_cfg.image_format)
    listing = source.listing()
    writer = ArtifactWriter(
        output_url,
        stage=STAGE,
        config_hash=config_hash or hash_settings(ingest_settings(spec, artifacts_cfg.image_format)),
        params={"dataset": spec.model_dump(mode="json"), "image_format": artifacts_cfg.image_format},
        shard_max_samples=artifacts_cfg.shard_max_samples,
        shard_max_bytes=artifacts_cfg.shard_max_bytes,
        overwrite=overwrite,
    )
    resumed = writer.complete_shards()
    counts = PixelCounts()
    with tqdm(total=len(listing.samples), desc=f"ingest {spec.name} ({spec.kind})", unit="img",
              disable=None) as bar:
        written = writer.write_stream(_counted(listing.samples, counts, bar))
    # Samples kept from an interrupted run were not rebuilt: take their counts from their json.
    for index in resumed:
        for raw in iter_shard_raw(writer.folder, shard_name(index)):
            counts.add(json.loads(raw["json"]))
    logger.info("ingest %s: wrote %d samples (%d kept from an earlier run), excluded %d",
                spec.name, written, len(listing.samples) - written, len(listing.excluded))
    stats = {
        "dataset": spec.kind,
        "domain": source.domain,
        "samples": len(listing.samples),
        "excluded": len(listing.excluded),
        "excluded_files": listing.excluded,
        **counts.as_stats(),
    }
    return writer.commit(stats=stats)
