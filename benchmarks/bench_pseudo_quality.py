"""What does refinement do to pseudo labels? Teacher labels, confidence thresholds and superpixels, scored.

Reads committed pseudo-label artifacts whose generated images carry true labels (the toycity backend keeps
them for measurement only) and scores variants of the same teacher output against them, without training:
the teacher's argmax; its pixels at or above a confidence threshold (`pseudo_label.confidence_threshold`,
same rule as the stage: the stored winning share); and each of those after superpixel refinement
(`refine.method: superpixel`: every SLIC segment takes its majority label, all-ignore segments stay ignore)
and, with `--sam`, after SAM refinement (`refine.method: sam`, the refine stage's own algorithm with run seed
0), plus SAM prompted from the true label, which scores its masks alone. Quality is the stages' own: confusion over the pixels a label claims, mean over classes with a
non-zero union; coverage is the share of labelled true pixels the variant keeps.

    python benchmarks/bench_pseudo_quality.py /tmp/effect/s0/round-001/pseudo-label --thresholds 0.5 0.75 0.9 \
        --sam models/weights/clouds-toy-sam-toycity.safetensors

Pseudo-label artifacts come from any run of the tiny profile (`clouds run full-round --round 1 ...`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from artifacts import image_member, open_artifact
from clouds.config import SamRefine, SuperpixelRefine
from clouds.labels import IGNORE, NUM_CLASSES
from stages.evaluate.metrics import confusion_matrix, mean_iou, pixel_accuracy
from stages.refine.algorithm import refine_with_sam
from stages.refine.components import sample_rng
from stages.refine.predictor import SamMaskPredictor
from stages.refine.superpixel import majority_vote, superpixels


@dataclass
class Score:
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64))
    kept: int = 0
    labelled: int = 0

    def add(self, label: np.ndarray, true: np.ndarray) -> None:
        self.confusion += confusion_matrix(label, true, skip_ignored_predictions=True)
        self.kept += int(((label != IGNORE) & (true != IGNORE)).sum())
        self.labelled += int((true != IGNORE).sum())

    def row(self, name: str) -> str:
        coverage = self.kept / max(self.labelled, 1)
        return (f"{name:34s} {coverage:8.2f} {100 * mean_iou(self.confusion):8.1f} "
                f"{100 * pixel_accuracy(self.confusion):8.1f}")


class SamVariant:
    """The refine stage's SAM algorithm (same prompts, same per-sample seed) on one image's labels."""

    def __init__(self, cfg: SamRefine):
        from models.sam import load_sam

        self.cfg = cfg
        self.predictor = SamMaskPredictor(load_sam(cfg.model_type, cfg.checkpoint), cfg.multimask)

    def __call__(self, image: np.ndarray, label: np.ndarray, key: str) -> np.ndarray:
        return refine_with_sam(image, label, self.predictor, self.cfg, sample_rng(0, key), key)[0]


def variants(sample: dict, segments: np.ndarray, thresholds: list[float], sam: SamVariant | None) -> dict[str, np.ndarray]:
    label, conf, key = sample["seg.png"], sample["conf.png"], sample["__key__"]
    image = np.asarray(image_member(sample))[..., :3]
    out = {"teacher": label, "teacher + superpixel": majority_vote(segments, label)}
    if sam is not None:
        out["teacher + SAM"] = sam(image, label, key)
        out["true label + SAM (its masks alone)"] = sam(image, sample["true.seg.png"], key)
    for t in thresholds:
        kept = np.where(conf >= round(255 * t), label, IGNORE).astype(np.uint8)
        out[f"teacher >= {t:g}"] = kept
        out[f"teacher >= {t:g} + superpixel"] = majority_vote(segments, kept)
        if sam is not None:
            out[f"teacher >= {t:g} + SAM"] = sam(image, kept, key)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="+", help="committed pseudo-label artifacts (with true.seg.png members)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    parser.add_argument("--segments", type=int, default=150, help="SLIC segments (configs/tiny.yaml: 150)")
    parser.add_argument("--sam", metavar="CHECKPOINT", help="also refine with this SAM (e.g. the shipped "
                        "models/weights/clouds-toy-sam-toycity.safetensors)")
    parser.add_argument("--sam-model-type", default="toy", help="refine.model_type of --sam (default: toy)")
    parser.add_argument("--min-area-fraction", type=float, default=0.004,
                        help="SAM: refine.min_area_fraction (configs/tiny.yaml: 0.004)")
    args = parser.parse_args()
    cfg = SuperpixelRefine(segments=args.segments)
    sam = None if args.sam is None else SamVariant(SamRefine(
        model_type=args.sam_model_type, checkpoint=args.sam, min_area_fraction=args.min_area_fraction))
    started = time.monotonic()
    for url in args.artifacts:
        scores: dict[str, Score] = {}
        samples = 0
        for sample in open_artifact(url).iter_samples():
            missing = [m for m in ("seg.png", "conf.png", "true.seg.png") if m not in sample]
            if missing:
                raise SystemExit(f"{url}: sample {sample['__key__']} lacks {', '.join(missing)}: give a pseudo-label "
                                 "artifact of generated images with true labels")
            segments = superpixels(np.asarray(image_member(sample))[..., :3], cfg)
            for name, label in variants(sample, segments, args.thresholds, sam).items():
                scores.setdefault(name, Score()).add(label, sample["true.seg.png"])
            samples += 1
        with_sam = "" if sam is None else f", SAM {args.sam_model_type} {args.sam}"
        print(f"{url}: {samples} images, SLIC {args.segments} segments{with_sam}")
        print(f"{'labels':34s} {'coverage':>8s} {'mIoU %':>8s} {'acc %':>8s}")
        for name, score in scores.items():
            print(score.row(name))
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
