"""The refine stage: teacher pseudo-label artifact in, refined pseudo-label artifact out.

Input samples hold an image ("png"/"jpg"), the teacher label "seg.png" and "json"; optionally the true
label "true.seg.png" (only ever used to measure) and anything else (e.g. "conf.png"), which is carried
over byte for byte. Output samples hold the refined label as "seg.png" and the teacher label, unchanged,
as "teacher.seg.png", so every refinement can be inspected and undone.

Output shard i is made from input shard i, so `refine_shard` is one schedulable task and a rerun skips
the shards an interrupted run finished; each shard stores its own tally, and the commit sums them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from artifacts import Artifact, ArtifactError, ArtifactWriter, decode_member, image_member_name, open_artifact
from artifacts.identity import config_hash
from clouds.config import NoRefine, RefineConfig, SamRefine, SuperpixelRefine
from clouds.labels import IGNORE, NUM_CLASSES
from clouds.registry import from_config, registry
from models.sam import load_sam
from stages.evaluate.metrics import confusion_matrix, iou_per_class, mean_iou
from stages.refine.algorithm import check_pair, refine_with_sam
from stages.refine.components import sample_rng
from stages.refine.predictor import SamMaskPredictor
from stages.refine.superpixel import refine_with_superpixels
from stages.sharded import Lazy, ShardedJob

log = logging.getLogger(__name__)

STAGE = "refine"
TEACHER = "teacher.seg.png"
TRUE = "true.seg.png"

# (image, teacher label, sample key) -> (refined label, json-able per-sample statistics naming the method)
RefineFn = Callable[[np.ndarray, np.ndarray, str], tuple[np.ndarray, dict[str, Any]]]


def _sam(cfg: SamRefine, seed: int, device: str | torch.device) -> RefineFn:
    """SAM is loaded here, once, not per shard. A SamPredictor holds one image embedding at a time, so
    concurrent shard tasks (Prefect runs them in threads) take turns on it through a lock; otherwise one
    task's prompts could meet another's image."""
    predictor = SamMaskPredictor(load_sam(cfg.model_type, cfg.checkpoint, device), cfg.multimask)
    lock = threading.Lock()

    def refine(image: np.ndarray, teacher: np.ndarray, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        with lock:
            label, stats = refine_with_sam(
                image, teacher, predictor, cfg, sample_rng(seed, key), where=key
            )
        return label, {"method": "sam", **stats.to_json()}

    return refine


def _superpixel(cfg: SuperpixelRefine, seed: int, device: str | torch.device) -> RefineFn:
    def refine_superpixel(
        image: np.ndarray, teacher: np.ndarray, key: str
    ) -> tuple[np.ndarray, dict[str, Any]]:
        check_pair(image, teacher, key)
        label, stats = refine_with_superpixels(image, teacher, cfg)
        return label, {"method": "superpixel", **stats.to_json()}

    return refine_superpixel


def _none(cfg: NoRefine, seed: int, device: str | torch.device) -> RefineFn:
    def keep(image: np.ndarray, teacher: np.ndarray, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        check_pair(image, teacher, key)
        ignored = int((teacher == IGNORE).sum())
        return teacher.copy(), {"method": "none", "pixels_changed": 0, "pixels_ignored": ignored}

    return keep


REFINERS = registry({"sam": _sam, "superpixel": _superpixel, "none": _none})
"""`refine.method` -> the per-sample refinement's builder."""


def build_refiner(cfg: RefineConfig, seed: int, device: str | torch.device = "cpu") -> RefineFn:
    """The per-sample refinement `cfg.method` names."""
    return from_config(REFINERS, "refine.method", cfg.method)(cfg, seed, device)


COUNTS = (
    "samples",
    "fallbacks",
    "components_found",
    "components_kept",
    "pixels",
    "pixels_changed",
    "ignored_teacher",
    "ignored_refined",
    "labelled",
)


@dataclass
class Tally:
    """What refinement did to some samples; tallies add up, so the artifact total is exact."""

    samples: int = 0
    fallbacks: int = 0
    components_found: int = 0
    components_kept: int = 0
    pixels: int = 0
    pixels_changed: int = 0
    ignored_teacher: int = 0
    ignored_refined: int = 0
    labelled: int = 0  # samples that carried a true label
    conf_teacher: np.ndarray = field(default_factory=lambda: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64))
    conf_refined: np.ndarray = field(default_factory=lambda: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64))

    def add(
        self, teacher: np.ndarray, refined: np.ndarray, true: np.ndarray | None, stats: dict[str, Any]
    ) -> None:
        self.samples += 1
        self.fallbacks += int(bool(stats.get("fallback", False)))
        self.components_found += int(stats.get("components_found", 0))
        self.components_kept += int(stats.get("components_kept", 0))
        self.pixels += teacher.size
        self.pixels_changed += int((refined != teacher).sum())
        self.ignored_teacher += int((teacher == IGNORE).sum())
        self.ignored_refined += int((refined == IGNORE).sum())
        if true is not None:
            self.labelled += 1
            self.conf_teacher += confusion_matrix(teacher, true, skip_ignored_predictions=True)
            self.conf_refined += confusion_matrix(refined, true, skip_ignored_predictions=True)

    def __iadd__(self, other: Tally) -> Tally:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.conf_teacher = self.conf_teacher + other.conf_teacher
        self.conf_refined = self.conf_refined + other.conf_refined
        return self

    def to_json(self) -> dict[str, Any]:
        """Everything needed to add tallies up later (the raw counts and confusion matrices)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTS}
        if self.labelled:
            out["confusion_teacher"] = self.conf_teacher.tolist()
            out["confusion_refined"] = self.conf_refined.tolist()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        tally = cls(**{name: int(data[name]) for name in COUNTS})
        if "confusion_teacher" in data:
            tally.conf_teacher = np.asarray(data["confusion_teacher"], dtype=np.int64)
            tally.conf_refined = np.asarray(data["confusion_refined"], dtype=np.int64)
        return tally

    def summary(self) -> dict[str, Any]:
        """Readable figures. mIoU counts pixels both labels assign (ignore is no error), hence coverage too."""
        pixels = max(self.pixels, 1)
        out: dict[str, Any] = {
            "samples": self.samples,
            "fallbacks": self.fallbacks,
            "components_found": self.components_found,
            "components_kept": self.components_kept,
            "pixels_changed": self.pixels_changed,
            "coverage_teacher": 1.0 - self.ignored_teacher / pixels,
            "coverage_refined": 1.0 - self.ignored_refined / pixels,
            "labelled_samples": self.labelled,
        }
        if self.labelled:
            out["miou_teacher"] = mean_iou(self.conf_teacher)
            out["miou_refined"] = mean_iou(self.conf_refined)
        return out


def _decode(raw: dict[str, Any], member: str, where: str) -> Any:
    try:
        return decode_member(member, raw[member])
    except Exception as err:  # PIL/json raise their own types on bad bytes
        raise ArtifactError(f"{where}: member {member!r} cannot be decoded: {err}") from err


def _label(raw: dict[str, Any], member: str, where: str) -> np.ndarray:
    label = _decode(raw, member, where)
    if label.ndim != 2:
        raise ArtifactError(
            f"{where}: {member!r} must be a single-channel label image, got shape {label.shape}"
        )
    return label


def _image(raw: dict[str, Any], where: str) -> np.ndarray:
    name = image_member_name(raw)
    if name is None:
        members = sorted(m for m in raw if not m.startswith("__"))
        raise ArtifactError(f"{where}: no image member (png/jpg); members: {members}")
    image = _decode(raw, name, where)
    if image.ndim != 3:
        raise ArtifactError(f"{where}: image must be RGB, got shape {image.shape}")
    return image


def _refined_samples(
    source: Artifact, shard: str, refine: RefineFn, tally: Tally
) -> Iterator[dict[str, Any]]:
    """Output samples of one shard; members other than the labels travel as the bytes they were."""
    for raw in source.iter_samples([shard], decode=False):
        key = raw["__key__"]
        where = f"{source.shard_url(shard)}, sample {key!r}"
        if "seg.png" not in raw:
            raise ArtifactError(f"{where}: no teacher label 'seg.png' to refine")
        if TEACHER in raw:
            raise ArtifactError(f"{where}: already holds {TEACHER!r}; is this artifact refined already?")
        image, teacher = _image(raw, where), _label(raw, "seg.png", where)
        true = _label(raw, TRUE, where) if TRUE in raw else None
        if true is not None and true.shape != teacher.shape:
            raise ArtifactError(
                f"{where}: true label {true.shape} and teacher label {teacher.shape} differ in size"
            )
        meta = _decode(raw, "json", where) if "json" in raw else {}
        if not isinstance(meta, dict):
            raise ArtifactError(f"{where}: 'json' must hold an object, got {type(meta).__name__}")
        try:
            refined, stats = refine(image, teacher, key)
        except ValueError as err:
            raise ArtifactError(f"{source.shard_url(shard)}: {err}") from err
        tally.add(teacher, refined, true, stats)
        sample = {m: v for m, v in raw.items() if m not in ("__shard__", "seg.png", "json")}
        sample.update({TEACHER: raw["seg.png"], "seg.png": refined, "json": {**meta, "refine": stats}})
        yield sample


def refine_shard(source: Artifact, index: int, writer: ArtifactWriter, refine: RefineFn) -> dict[str, Any]:
    """Refine input shard `index` into output shard `index`; returns (and stores with it) its tally."""
    tally = Tally()
    stats: dict[str, Any] = {}

    def samples() -> Iterator[dict[str, Any]]:
        yield from _refined_samples(source, source.shards[index], refine, tally)
        stats.update(tally.to_json())  # filled before the writer saves the shard's stats

    writer.write_shard(index, samples(), stats)
    return stats


def summarize(shard_stats: dict[int, dict[str, Any]], method: str) -> dict[str, Any]:
    """The commit's statistics: totals, per-class IoU before and after, and each shard's figures."""
    total = Tally()
    per_shard = {}
    for index, data in sorted(shard_stats.items()):
        tally = Tally.from_json(data)
        total += tally
        per_shard[str(index)] = tally.summary()
    out: dict[str, Any] = {"method": method, **total.summary(), "shards": per_shard}
    if total.labelled:
        for name, conf in (("teacher", total.conf_teacher), ("refined", total.conf_refined)):
            out[f"iou_per_class_{name}"] = [None if np.isnan(v) else float(v) for v in iou_per_class(conf)]
            out[f"confusion_{name}"] = conf.tolist()
    return out


def refine_settings(cfg: RefineConfig, seed: int) -> dict[str, Any]:
    """What the refined labels depend on besides the pseudo labels: hashed and recorded as they are."""
    return {"refine": cfg.model_dump(mode="json"), "seed": seed}


def prepare_refine(
    input_url: str,
    output_url: str,
    cfg: RefineConfig,
    seed: int,
    shard_max_samples: int,
    *,
    device: str | torch.device = "cpu",
    refine: RefineFn | None = None,
    overwrite: bool = False,
    attach: bool = False,
    verify: bool = True,
) -> ShardedJob:
    """One task per input shard. The refiner (SAM) is built on the first shard that needs it, once.

    `refine` replaces the refiner `cfg` describes (e.g. one already holding a loaded SAM).
    """
    source = open_artifact(input_url, verify=verify)  # verify: artifacts.verify_reads
    writer = ArtifactWriter(
        output_url,
        stage=STAGE,
        config_hash=config_hash(refine_settings(cfg, seed)),
        inputs=[input_url],
        params=refine_settings(cfg, seed),
        shard_max_samples=shard_max_samples,
        overwrite=overwrite,
        attach=attach,
    )
    refiner = Lazy.of(refine) if refine is not None else Lazy(lambda: build_refiner(cfg, seed, device))
    return ShardedJob(
        num_shards=len(source.shards),
        run_shard=lambda index: refine_shard(source, index, writer, refiner.get()),
        finish=lambda _: writer.commit(
            summarize(writer.shard_stats(), cfg.method), expected_shards=len(source.shards)
        ),
        is_done=writer.is_shard_complete,
        name=STAGE,
    )
