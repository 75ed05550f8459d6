"""The evaluate stage: confusion-matrix mIoU of a segmenter on every target artifact (SPEC "Evaluation").

Protocol: whole image, single scale, short side resized to `short_side` (null = native), no sliding window,
no TTA, exactly as the reference's test mapper (detectron2 `ResizeShortestEdge`): output size rounded to
the nearest pixel, image resized with PIL bilinear, label with PIL nearest (pixel centres). torchvision's
legacy `nearest` is half a pixel off the bilinear image and cost a perfect prediction ~10 mIoU on
Mapillary-sized images. Each target is averaged by its own rule (`metrics.AVERAGE_RULES`), recorded in
the artifact. Output is a committed folder artifact holding per-domain and per-class IoU (parquet), the raw
confusion matrices, a markdown table and a bar chart.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as TF
from PIL import Image
from torch import nn

from artifacts import (
    IMAGE_MEMBERS,
    ArtifactError,
    Folder,
    commit_folder,
    image_member,
    open_artifact,
    read_lineage,
)
from artifacts.identity import Identity, config_hash
from clouds.config import EvaluateConfig
from clouds.device import resolve_device
from clouds.errors import InputError
from clouds.labels import CLASS_NAMES, NUM_CLASSES, check_train_ids
from models.checkpoint import CheckpointError, load_checkpoint
from stages.evaluate.metrics import (
    AVERAGE_RULES,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    scored_classes,
)
from stages.evaluate.report import bar_chart, markdown_table
from stages.sharded import Lazy, ShardedJob

log = logging.getLogger(__name__)

STAGE = "evaluate"
LABEL_MEMBER = "seg.png"
DOMAIN_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


DEFAULT_AVERAGE = "union"
"""The rule of a target the caller gave none for (a class predicted but absent from the labels counts 0).
The pipeline always passes each target's configured rule (`data.targets[i].average`)."""


def evaluate_settings(cfg: EvaluateConfig, averages: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings and the averaging rule of each target: changing a target's rule re-scores it. The lineage
    records the section as `params` and the rules in its stats."""
    content: dict[str, Any] = cfg.model_dump(mode="json")
    if averages:
        content["average"] = dict(sorted(averages.items()))
    return content


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) with the short side at `short_side`, rounded like detectron2's ResizeShortestEdge."""
    scale = short_side / min(height, width)
    if height < width:
        new_h, new_w = float(short_side), scale * width
    else:
        new_h, new_w = scale * height, float(short_side)
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_short_side(
    image: torch.Tensor, label: torch.Tensor | None, short_side: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image [3,H,W] uint8 with PIL bilinear, label [H,W] uint8 with PIL nearest: the reference's resize."""
    h, w = image.shape[-2:]
    if short_side is None or min(h, w) == short_side:
        return image, label
    new_h, new_w = resized_size(h, w, short_side)
    pil = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    img = torch.from_numpy(np.array(pil.resize((new_w, new_h), Image.BILINEAR))).permute(2, 0, 1).contiguous()
    if label is None:
        return img, None
    lab = Image.fromarray(label.numpy()).resize((new_w, new_h), Image.NEAREST)
    return img, torch.from_numpy(np.array(lab))


def _samples(
    url: str, shard: int | None = None, verify: bool = True
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(key, image uint8 [3,H,W], label uint8 [H,W]) of a target artifact (or one shard of it), checked
    (`verify`: member sha256s too, artifacts.verify_reads)."""
    art = open_artifact(url, verify=verify)
    shards = None if shard is None else [art.shards[shard]]
    for s in art.iter_samples(shards, members={*IMAGE_MEMBERS, LABEL_MEMBER}):
        where = f"{url}, sample {s['__key__']!r}"
        if LABEL_MEMBER not in s:
            raise ArtifactError(f"{where}: no {LABEL_MEMBER!r} label to evaluate against")
        image, label = image_member(s), s[LABEL_MEMBER]
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if label.ndim != 2 or label.shape != image.shape[:2]:
            raise ArtifactError(f"{where}: label shape {label.shape} does not match image shape {image.shape[:2]}")
        check_train_ids(label, where)
        yield s["__key__"], torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(label)


@torch.inference_mode()
def _predict(model: nn.Module, images: torch.Tensor, sizes: list[tuple[int, int]], native: bool) -> list[torch.Tensor]:
    if not native:
        return list(model.predict(images))
    scores = model.predict_scores(images)
    return [TF.interpolate(s[None], size=hw, mode="bilinear", align_corners=False)[0].argmax(0)
            for s, hw in zip(scores, sizes, strict=True)]


def confusion_on(
    model: nn.Module, url: str, cfg: EvaluateConfig, device: torch.device, shard: int | None = None,
    verify: bool = True,
) -> tuple[torch.Tensor, int]:
    """Accumulated confusion matrix of `model` over one target artifact (or one shard), and its image count."""
    conf = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64, device=device)
    native = cfg.label_resolution == "native"
    batch: list[tuple[torch.Tensor, torch.Tensor]] = []
    count = 0

    def flush() -> None:
        nonlocal conf
        images = torch.stack([img for img, _ in batch]).to(device).float()
        labels = [lab.to(device) for _, lab in batch]
        for pred, lab in zip(_predict(model, images, [tuple(lab.shape) for lab in labels], native), labels, strict=True):
            conf += confusion_matrix(pred, lab)
        batch.clear()

    for _, image, label in _samples(url, shard, verify):
        resized, resized_label = resize_short_side(image, label, cfg.short_side)
        target = label if native else resized_label
        if batch and (len(batch) == cfg.batch_size or batch[0][0].shape != resized.shape):
            flush()
        batch.append((resized, target))
        count += 1
    if batch:
        flush()
    if count == 0:
        raise ArtifactError(f"{url} holds no samples to evaluate")
    return conf.cpu(), count


def _load_model(model_or_checkpoint_url: nn.Module | str, cfg: EvaluateConfig, device: torch.device) -> nn.Module:
    if not isinstance(model_or_checkpoint_url, str):
        return model_or_checkpoint_url.to(device).eval()
    url = model_or_checkpoint_url
    read_lineage(url)  # only committed checkpoints are scored
    student, teacher, _, _ = load_checkpoint(url, device=device)
    if cfg.weights == "teacher":
        if teacher is None:
            raise CheckpointError(f"evaluate.weights is 'teacher' but checkpoint {url} holds no EMA teacher (a warm-up?)")
        return teacher.eval()
    return student.eval()


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def evaluate(
    model_or_checkpoint_url: nn.Module | str,
    target_urls: dict[str, str],
    cfg: EvaluateConfig,
    output_url: str,
    *,
    device: str = "auto",
    averages: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score a model (or a committed checkpoint artifact) on each target; commit the report at `output_url`.

    `averages` maps a target to its class-averaging rule ("union" or "gt-present"; `DEFAULT_AVERAGE` for a
    target left out). Returns {"url", "miou": {domain: mIoU}, "mean_miou", "images", "average"}.
    """
    averages = target_averages(target_urls, averages)
    identity = Identity.of(STAGE, evaluate_settings(cfg, averages), _inputs(model_or_checkpoint_url, target_urls))
    if identity.check_reusable(output_url, "evaluation"):
        log.info("evaluate: %s already committed, skipping", output_url)
        return {**read_lineage(output_url).get("stats", {}), "skipped": True}
    return prepare_evaluate(
        model_or_checkpoint_url, target_urls, cfg, output_url, device=device, averages=averages
    ).run_all()


def target_averages(target_urls: dict[str, str], averages: dict[str, str] | None) -> dict[str, str]:
    """The rule of every target, refusing unknown rules and rules for targets that are not scored."""
    averages = dict(averages or {})
    unknown = sorted(set(averages) - set(target_urls))
    if unknown:
        raise InputError(f"averaging rules given for targets {unknown} that are not evaluated")
    for name, rule in averages.items():
        if rule not in AVERAGE_RULES:
            raise InputError(f"target {name!r}: average must be one of {AVERAGE_RULES}, got {rule!r}")
    return {name: averages.get(name, DEFAULT_AVERAGE) for name in target_urls}


def _inputs(model_or_checkpoint_url: nn.Module | str, target_urls: dict[str, str]) -> list[str]:
    return ([model_or_checkpoint_url] if isinstance(model_or_checkpoint_url, str) else []) + list(target_urls.values())


def prepare_evaluate(
    model_or_checkpoint_url: nn.Module | str,
    target_urls: dict[str, str],
    cfg: EvaluateConfig,
    output_url: str,
    *,
    device: str = "auto",
    averages: dict[str, str] | None = None,
    verify: bool = True,
) -> ShardedJob:
    """One unit per (target, shard): a confusion matrix each, summed by `finish`, which writes the report.

    Confusion matrices add up exactly, so the scores do not depend on how units are spread over workers.
    The model is loaded by the first unit that runs (never by a driver that only plans and commits).
    """
    if not target_urls:
        raise InputError("evaluate needs at least one target artifact")
    for name in target_urls:
        if not DOMAIN_RE.match(name):
            raise InputError(f"target name {name!r} must be [A-Za-z0-9_-] (it names files in the report)")
    averages = target_averages(target_urls, averages)
    units = [(name, url, k) for name, url in target_urls.items() for k in range(len(open_artifact(url).shards))]
    torch_device = resolve_device(device)
    model = Lazy(lambda: _load_model(model_or_checkpoint_url, cfg, torch_device))

    def run_unit(i: int) -> dict[str, Any]:
        _, url, shard = units[i]
        conf, count = confusion_on(model.get(), url, cfg, torch_device, shard, verify)
        return {"confusion": conf.numpy().tolist(), "images": count}

    def finish(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
        if sorted(results) != list(range(len(units))):
            missing = sorted(set(range(len(units))) - set(results))
            raise ArtifactError(f"evaluate {output_url}: units {missing} returned no result")
        confusions = {name: np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64) for name in target_urls}
        images = dict.fromkeys(target_urls, 0)
        for i, (name, _, _) in enumerate(units):
            confusions[name] += np.asarray(results[i]["confusion"], dtype=np.int64)
            images[name] += results[i]["images"]
        for name, url in target_urls.items():
            if images[name] == 0:
                raise ArtifactError(f"{url} holds no samples to evaluate")
        return write_report(model_or_checkpoint_url, target_urls, cfg, output_url, confusions, images, averages)

    return ShardedJob(num_shards=len(units), run_shard=run_unit, finish=finish, name=STAGE)


def write_report(
    model_or_checkpoint_url: nn.Module | str,
    target_urls: dict[str, str],
    cfg: EvaluateConfig,
    output_url: str,
    confusions: dict[str, np.ndarray],
    images: dict[str, int],
    averages: dict[str, str],
) -> dict[str, Any]:
    """Commit the folder artifact: per-class and per-domain parquet, raw confusions, markdown and a chart.

    A class the target's rule leaves out of the mean has IoU null (its tp/fp/fn stay in the table)."""
    scored = {name: scored_classes(conf, averages[name]) for name, conf in confusions.items()}
    per_class = {name: np.where(scored[name], iou_per_class(conf), np.nan) for name, conf in confusions.items()}
    miou = {name: mean_iou(conf, averages[name]) for name, conf in confusions.items()}
    for name in target_urls:
        log.info("evaluate %s: mIoU %.2f over %d images (classes averaged: %s)",
                 name, 100 * miou[name], images[name], averages[name])

    folder = Folder.at(output_url)
    folder.remove()
    folder.makedirs()
    folder.makedirs("confusion")
    class_rows = []
    for name, conf in confusions.items():
        tp = np.diag(conf)
        for c in range(NUM_CLASSES):
            class_rows.append({
                "domain": name, "class_id": c, "class_name": CLASS_NAMES[c],
                "iou": None if np.isnan(per_class[name][c]) else float(per_class[name][c]),
                "tp": int(tp[c]), "fp": int(conf[:, c].sum() - tp[c]), "fn": int(conf[c].sum() - tp[c]),
            })
        folder.write_atomic(f"confusion/{name}.npy", _npy(conf))
    summary_rows = [{
        "domain": name, "url": target_urls[name], "images": images[name], "miou": miou[name],
        "pixel_accuracy": pixel_accuracy(confusions[name]),
        "average": averages[name],
        "classes_scored": int(scored[name].sum()),
    } for name in target_urls]
    folder.write_atomic("per_class.parquet", _parquet(pa.Table.from_pylist(class_rows)))
    folder.write_atomic("summary.parquet", _parquet(pa.Table.from_pylist(summary_rows)))
    model_name = model_or_checkpoint_url if isinstance(model_or_checkpoint_url, str) else type(model_or_checkpoint_url).__name__
    title = f"mIoU of {model_name} ({cfg.weights})"
    folder.write_atomic("report.md", markdown_table(per_class, miou, images, title, averages).encode())
    folder.write_atomic("iou.png", bar_chart(per_class, miou, title))

    finite = [v for v in miou.values() if not np.isnan(v)]
    stats = {  # NaN (a target with no labelled pixel) is stored as null: the marker stays strict JSON
        "url": output_url,
        "miou": {k: (None if np.isnan(v) else v) for k, v in miou.items()},
        "mean_miou": float(np.mean(finite)) if finite else None,
        "images": images,
        "average": averages,
    }
    commit_folder(output_url, stage=STAGE, config_hash=config_hash(evaluate_settings(cfg, averages)),
                  inputs=_inputs(model_or_checkpoint_url, target_urls), params=cfg.model_dump(mode="json"), stats=stats)
    return stats
