"""The predict stage: a committed checkpoint applied to INPUTS, written as a committed sharded artifact.

One output shard per input unit (a chunk of files, or one shard of an input artifact), written with the
project's ArtifactWriter: a rerun with the same checkpoint, inputs and settings keeps the shards an
interrupted run completed and commits once all are there, like every pipeline stage. Each sample holds
`seg.png` (train ids at the input image's size), `overlay.jpg` (the Cityscapes palette over the image),
`json` (where the image came from) and, on request, `conf.png` (the winning class's share of the scores x 255).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import fsspec
import numpy as np
import torch
from tqdm.auto import tqdm

from artifacts import ArtifactError, ArtifactWriter, is_committed, open_artifact, read_lineage
from artifacts.identity import Identity, config_hash
from clouds.device import resolve_device
from clouds.viz import overlay
from stages.predict.checkpoints import check_checkpoint, load_predictor
from stages.predict.errors import PredictInputError
from stages.predict.inference import InferenceSettings, predict_images
from stages.predict.inputs import InputSet, resolve_inputs
from stages.sharded import Lazy, ShardedJob

log = logging.getLogger(__name__)

STAGE = "predict"
OVERLAY = "overlay.jpg"


def predict_settings(settings: InferenceSettings, inputs: InputSet, shard_size: int) -> dict[str, Any]:
    """Settings, how the inputs are split, and what was read (file paths, sizes and mtimes; artifact hashes)."""
    return {"settings": asdict(settings), "shard_size": shard_size, "inputs": config_hash(inputs.identity)}


def _samples(model: torch.nn.Module, loaded: list[tuple[str, str, np.ndarray]], settings: InferenceSettings,
             batch_size: int, device: torch.device) -> list[dict[str, Any]]:
    results = predict_images(model, [image for _, _, image in loaded], settings, batch_size, device)
    samples = []
    for (key, source, image), (label, conf) in zip(loaded, results, strict=True):
        sample: dict[str, Any] = {
            "__key__": key, "seg.png": label, OVERLAY: overlay(image, label),
            "json": {"source": source, "height": int(image.shape[0]), "width": int(image.shape[1]),
                     "mode": settings.mode, "mean_confidence": float(conf.mean() / 255.0)},
        }
        if settings.confidence:
            sample["conf.png"] = conf
        samples.append(sample)
    return samples


def prepare_predict(
    checkpoint_url: str,
    inputs: str,
    output_url: str,
    settings: InferenceSettings | None = None,
    *,
    batch_size: int = 4,
    shard_size: int = 64,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> ShardedJob:
    """One unit per output shard; shards complete from an interrupted run are not redone.

    The checkpoint is checked (committed, a checkpoint folder) here, but loaded by the first unit that runs.
    """
    settings = settings or InferenceSettings()
    if batch_size < 1:
        raise PredictInputError("batch size must be positive")
    check_checkpoint(checkpoint_url)
    images = resolve_inputs(inputs, shard_size)
    writer = ArtifactWriter(
        output_url, stage=STAGE, config_hash=config_hash(predict_settings(settings, images, shard_size)),
        inputs=[checkpoint_url, *images.artifacts],
        params={**asdict(settings), "inputs": inputs, "checkpoint": checkpoint_url, "shard_size": shard_size},
        overwrite=overwrite,
    )
    torch_device = resolve_device(device)
    model = Lazy(lambda: load_predictor(checkpoint_url, torch_device, settings.weights))
    done = sum(len(u.keys) for i, u in enumerate(images.units) if writer.is_shard_complete(i))
    bars: list[tqdm] = []  # made by the first unit that runs, so planning alone prints nothing

    def bar() -> tqdm:
        if not bars:
            bars.append(tqdm(total=images.count, initial=done, desc="predict", unit="img", disable=not progress,
                             dynamic_ncols=True))
        return bars[0]

    def close_bar() -> None:
        if bars:
            bars.pop().close()

    def run_unit(i: int) -> dict[str, Any]:
        try:
            loaded = list(images.units[i].load())
            stats = {"images": len(loaded)}
            samples = []
            for start in range(0, len(loaded), batch_size):  # the bar moves per batch, not per shard
                chunk = loaded[start : start + batch_size]
                samples += _samples(model.get(), chunk, settings, batch_size, torch_device)
                bar().update(len(chunk))
            writer.write_shard(i, samples, stats)
        except BaseException:
            close_bar()  # the error line that follows starts on a line of its own
            raise
        return stats

    def finish(_: dict[int, Any]) -> dict[str, Any]:
        close_bar()
        art = writer.commit({"images": images.count, "inputs": images.description}, expected_shards=len(images.units))
        log.info("predict: committed %s (%d images)", art.url, art.num_samples)
        return {"url": art.url, "images": art.num_samples, "shards": len(art.shards)}

    return ShardedJob(num_shards=len(images.units), run_shard=run_unit, finish=finish,
                      is_done=writer.is_shard_complete, name=STAGE)


def predict(
    checkpoint_url: str,
    inputs: str,
    output_url: str,
    settings: InferenceSettings | None = None,
    *,
    overlays: str | None = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Predict and commit at `output_url` (reused when already committed with the same checkpoint, inputs and
    settings); with `overlays`, also write each overlay as `<overlays>/<key>.jpg`. Returns url, images, shards."""
    settings = settings or InferenceSettings()
    if is_committed(output_url) and not overwrite:
        lineage = read_lineage(output_url)
        shard_size = kwargs.get("shard_size", 64)
        images = resolve_inputs(inputs, shard_size)
        identity = Identity.of(STAGE, predict_settings(settings, images, shard_size), [checkpoint_url, *images.artifacts])
        if not identity.is_current(output_url):  # the one up-to-date rule (artifacts.identity)
            raise ArtifactError(f"{output_url} is already a committed artifact of another checkpoint, inputs or "
                                "settings; choose another --out or pass --overwrite")
        log.info("predict: %s already committed, reusing it", output_url)
        result = {"url": output_url, "images": lineage.get("num_samples"), "shards": lineage.get("num_shards"),
                  "skipped": True}
    else:
        result = prepare_predict(checkpoint_url, inputs, output_url, settings, overwrite=overwrite, **kwargs).run_all()
    if overlays:
        result["overlays"] = write_overlay_files(output_url, overlays)
    return result


def write_overlay_files(artifact_url: str, folder_url: str) -> int:
    """Copy every sample's overlay out of the committed artifact as `<folder>/<key>.jpg` (a plain folder for
    people to browse); read back from the artifact, so a resumed or reused run writes the same files."""
    fs, root = fsspec.core.url_to_fs(folder_url)
    fs.makedirs(root, exist_ok=True)
    count = 0
    for sample in open_artifact(artifact_url).iter_samples(members={OVERLAY}, decode=False):
        with fs.open(f"{root.rstrip('/')}/{sample['__key__']}.jpg", "wb") as f:
            f.write(sample[OVERLAY])
        count += 1
    return count
