"""One task per shard: read generated images, write teacher labels, confidences and their quality."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from artifacts import Artifact, ArtifactWriter, image_member, open_artifact
from artifacts.identity import config_hash
from clouds.config import PseudoLabelConfig
from stages.evaluate.metrics import confusion_matrix, iou_per_class, mean_iou
from stages.pseudo_label.labeler import label_images
from stages.sharded import Lazy, ShardedJob

log = logging.getLogger(__name__)
STAGE = "pseudo-label"
TRUE = "true.seg.png"


def label_shard(
    teacher: torch.nn.Module,
    images: Artifact,
    shard_index: int,
    writer: ArtifactWriter,
    cfg: PseudoLabelConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Label every image of one input shard into the output shard of the same index."""
    shard = images.shards[shard_index]
    stats: dict[str, Any] = {"samples": 0}

    def samples() -> Iterator[dict[str, Any]]:
        confusion = np.zeros((19, 19), dtype=np.int64)
        inputs = list(images.iter_samples([shard]))
        labels = label_images(teacher, [image_member(s) for s in inputs], cfg.batch_size, device, cfg.confidence_threshold)
        for sample, (label, conf) in zip(inputs, labels, strict=True):
            out = {k: v for k, v in sample.items() if k in ("png", "jpg", "json", TRUE)}
            out["__key__"] = sample["__key__"]
            out["seg.png"], out["conf.png"] = label, conf
            meta = dict(sample.get("json") or {})
            meta["pseudo_coverage"] = float((label != 255).mean())
            meta["pseudo_confidence"] = float(conf.mean() / 255.0)
            if TRUE in sample:
                # Over the pixels the label claims, as refined labels are scored: with a confidence threshold
                # the ignored pixels are not errors, the student never trains on them (coverage says how many).
                c = confusion_matrix(label, sample[TRUE], skip_ignored_predictions=True)
                confusion += c
                meta["pseudo_miou"] = mean_iou(c)
            out["json"] = meta
            stats["samples"] += 1
            yield out
        if TRUE in (inputs[0] if inputs else {}):
            stats["confusion"] = confusion.tolist()

    writer.write_shard(shard_index, samples(), stats)
    return stats


def pseudo_label_settings(cfg: PseudoLabelConfig) -> dict[str, Any]:
    """What the labels depend on besides the images and the teacher: the pseudo_label section, hashed and
    recorded as it is."""
    return cfg.model_dump(mode="json")


def load_teacher(checkpoint_url: str, device: torch.device) -> torch.nn.Module:
    """The EMA teacher a checkpoint holds, or its student when it has none (the round-0 warm-up)."""
    from models.checkpoint import load_checkpoint

    student, teacher, _, _ = load_checkpoint(checkpoint_url, device=device)
    return teacher if teacher is not None else student


def prepare_pseudo_label(
    teacher: torch.nn.Module | None,
    images_url: str,
    checkpoint_url: str,
    output_url: str,
    cfg: PseudoLabelConfig,
    *,
    device: torch.device,
    overwrite: bool = False,
    attach: bool = False,
    verify: bool = True,
) -> ShardedJob:
    """One output shard per input shard; shards done by an interrupted run are kept.

    With `teacher=None` the teacher is loaded from `checkpoint_url` by the first shard that runs, so a
    driver that hands its shards to other processes never loads it.
    """
    images = open_artifact(images_url, verify=verify)  # verify: artifacts.verify_reads
    writer = ArtifactWriter(
        output_url, stage=STAGE, config_hash=config_hash(pseudo_label_settings(cfg)),
        inputs=[images_url, checkpoint_url], params=pseudo_label_settings(cfg), overwrite=overwrite, attach=attach,
    )
    model = Lazy.of(teacher) if teacher is not None else Lazy(lambda: load_teacher(checkpoint_url, device))
    return ShardedJob(
        num_shards=len(images.shards),
        run_shard=lambda i: label_shard(model.get().eval(), images, i, writer, cfg, device),
        finish=lambda _: writer.commit(summarize(writer.shard_stats()), expected_shards=len(images.shards)),
        is_done=writer.is_shard_complete,
        name=STAGE,
    )


def summarize(shard_stats: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Overall pseudo-label quality from the per-shard confusion matrices (when true labels exist)."""
    out: dict[str, Any] = {"samples": sum(s["samples"] for s in shard_stats.values())}
    matrices = [np.asarray(s["confusion"]) for s in shard_stats.values() if "confusion" in s]
    if matrices:
        total = sum(matrices)
        out["pseudo_miou"] = mean_iou(total)
        out["pseudo_iou_per_class"] = [None if np.isnan(v) else float(v) for v in iou_per_class(total)]
        out["pseudo_miou_per_shard"] = {str(i): mean_iou(np.asarray(s["confusion"])) for i, s in shard_stats.items() if "confusion" in s}
    return out
