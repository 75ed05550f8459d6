"""The evaluate stage: mIoU against an independent computation, the resize protocol, the committed report."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from artifacts import (
    ArtifactError,
    ArtifactWriter,
    Folder,
    commit_folder,
    open_artifact,
    read_lineage,
    verify_folder,
)
from clouds.config import EvaluateConfig
from clouds.labels import CLASS_NAMES, IGNORE, NUM_CLASSES, PALETTE, colorize
from models.build import build_segmenter, tiny_model_config
from models.checkpoint import save_checkpoint
from stages.evaluate import confusion_matrix, evaluate, iou_per_class, mean_iou, resize_short_side


def numpy_iou(pred: np.ndarray, label: np.ndarray) -> dict[int, float]:
    """Per-class IoU by explicit boolean logic; classes with an empty union are left out."""
    valid = label != IGNORE
    out = {}
    for c in range(NUM_CLASSES):
        p, g = (pred == c) & valid, (label == c) & valid
        union = (p | g).sum()
        if union:
            out[c] = (p & g).sum() / union
    return out


def test_miou_matches_independent_numpy_computation():
    rng = np.random.default_rng(0)
    present = [0, 1, 2, 8, 10, 13]  # classes 5, 7, ... appear nowhere (zero union: excluded)
    label = rng.choice(present + [11], size=(4, 40, 60)).astype(np.uint8)  # 11: in labels only (IoU 0)
    label[rng.random(label.shape) < 0.2] = IGNORE
    pred = rng.choice(present + [9], size=label.shape)  # 9: predicted only (IoU 0)
    copy = (rng.random(label.shape) < 0.5) & (label != IGNORE) & (label != 11)
    pred = np.where(copy, label, pred)
    conf = sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(g)) for p, g in zip(pred, label, strict=True))
    expected = numpy_iou(pred, label)
    iou = iou_per_class(conf)
    assert set(np.flatnonzero(np.isfinite(iou))) == set(expected) == set(present) | {9, 11}
    for c, v in expected.items():
        assert iou[c] == pytest.approx(v)
    assert expected[9] == 0 and expected[11] == 0
    assert mean_iou(conf) == pytest.approx(np.mean(list(expected.values())))
    # Predictions on ignored pixels do not count at all.
    assert conf.sum() == (label != IGNORE).sum()


def test_confusion_refuses_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="label values"):
        confusion_matrix(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 40, 255]))
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(torch.tensor([0, 19, 0, 0]), torch.zeros(4, dtype=torch.long))
    assert np.isnan(mean_iou(np.zeros((NUM_CLASSES, NUM_CLASSES))))


@pytest.mark.parametrize("hw,short,expected", [((100, 200), 50, (50, 100)), ((90, 60), 120, (180, 120)),
                                               ((64, 128), None, (64, 128)), ((64, 128), 64, (64, 128)),
                                               # detectron2 rounds to the nearest pixel (2046.98 -> 2047)
                                               ((1000, 1999), 1024, (1024, 2047)),
                                               ((1080, 1920), 1024, (1024, 1820)),
                                               ((3024, 4032), 1024, (1024, 1365))])
def test_resize_short_side_protocol(hw, short, expected):
    h, w = hw
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    label = torch.randint(0, 19, (h, w), dtype=torch.uint8)
    label[: h // 3] = IGNORE
    img, lab = resize_short_side(image, label, short)
    assert tuple(img.shape) == (3, *expected) and tuple(lab.shape) == expected and img.dtype == torch.uint8
    assert set(lab.unique().tolist()) <= set(label.unique().tolist())  # nearest: no invented ids


# --------------------------------------------------------------------------------- end to end
class PaletteOracle(nn.Module):
    """Reads the class off each pixel's Cityscapes colour: right wherever image and label are aligned."""

    def __init__(self):
        super().__init__()
        self.register_buffer("palette", torch.tensor(PALETTE, dtype=torch.float32))

    def predict_scores(self, images: torch.Tensor) -> torch.Tensor:
        dist = ((images[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(2)
        return -dist

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict_scores(images).argmax(1)


def _blocks(rng: np.random.Generator, h: int, w: int, classes: list[int]) -> np.ndarray:
    label = np.full((h, w), classes[0], np.uint8)
    for c in classes[1:]:
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        label[y : y + 16, x : x + 24] = c
    label[:4] = IGNORE
    return label


def write_target(url: str, n: int, classes: list[int], size=(64, 96), seed=0) -> str:
    rng = np.random.default_rng(seed)
    w = ArtifactWriter(url, stage="ingest", config_hash="t", shard_max_samples=2)
    samples = []
    for i in range(n):
        label = _blocks(rng, *size, classes)
        samples.append({"__key__": f"t{i:03d}", "png": colorize(label), "seg.png": label, "json": {"domain": "x"}})
    w.write_stream((s["__key__"], lambda s=s: s) for s in samples)
    w.commit()
    return url


class ConstantModel(PaletteOracle):
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long)


def test_evaluate_writes_committed_report(tmp_path):
    targets = {
        "real": write_target(str(tmp_path / "real"), 3, [0, 2, 13]),
        "fog": write_target(str(tmp_path / "fog"), 2, [10, 8, 11, 13], size=(48, 80), seed=1),
    }
    out = str(tmp_path / "eval")
    result = evaluate(PaletteOracle(), targets, EvaluateConfig(short_side=None, batch_size=2), out, device="cpu")
    assert result["miou"] == {"real": 1.0, "fog": 1.0} and result["images"] == {"real": 3, "fog": 2}

    lineage = verify_folder(out)
    assert lineage["stage"] == "evaluate" and [i["url"] for i in lineage["inputs"]] == list(targets.values())
    folder = Folder.at(out)
    per_class = pq.read_table(io.BytesIO(folder.read_bytes("per_class.parquet"))).to_pylist()
    assert len(per_class) == 2 * NUM_CLASSES
    real = {r["class_name"]: r["iou"] for r in per_class if r["domain"] == "real"}
    assert real["road"] == real["building"] == real["car"] == 1.0 and real["sky"] is None
    summary = pq.read_table(io.BytesIO(folder.read_bytes("summary.parquet"))).to_pylist()
    assert [(r["domain"], r["classes_scored"]) for r in summary] == [("real", 3), ("fog", 4)]
    report = folder.read_bytes("report.md").decode()
    assert "| class | real | fog |" in report and all(name in report for name in CLASS_NAMES)
    assert "**100.0**" in report
    assert folder.read_bytes("iou.png").startswith(b"\x89PNG")
    conf = np.load(io.BytesIO(folder.read_bytes("confusion/fog.npy")))
    assert conf.shape == (NUM_CLASSES, NUM_CLASSES) and conf.trace() == conf.sum() > 0

    # A rerun with the same inputs is a no-op; another setting on the same folder is refused.
    again = evaluate(PaletteOracle(), targets, EvaluateConfig(short_side=None, batch_size=2), out, device="cpu")
    assert again["skipped"] and again["miou"] == result["miou"]
    with pytest.raises(ArtifactError, match="another"):
        evaluate(PaletteOracle(), targets, EvaluateConfig(short_side=32), out, device="cpu")


def test_resize_protocol_keeps_image_and_label_aligned(tmp_path):
    targets = {"real": write_target(str(tmp_path / "real"), 2, [0, 2, 13])}
    for resolution, pixels in (("resized", 2 * 128 * 192), ("native", 2 * 64 * 96)):
        cfg = EvaluateConfig(short_side=128, label_resolution=resolution)  # upscaling 64 -> 128
        out = str(tmp_path / f"up-{resolution}")
        evaluate(PaletteOracle(), targets, cfg, out, device="cpu")
        conf = np.load(io.BytesIO(Folder.at(out).read_bytes("confusion/real.npy")))
        assert conf.sum() == pixels * 60 // 64  # scored at that resolution; the top 4 of 64 rows are ignore
        assert conf.trace() / conf.sum() > 0.97  # only pixels on blended class borders can be wrong
    # A constant prediction scores exactly the independent IoU of that class, at the resized size.
    result = evaluate(ConstantModel(), targets, EvaluateConfig(short_side=32), str(tmp_path / "const"), device="cpu")
    labels = []
    for key in ("t000", "t001"):
        s = open_artifact(targets["real"]).get(key)
        _, lab = resize_short_side(torch.zeros(3, 64, 96, dtype=torch.uint8), torch.from_numpy(s["seg.png"]), 32)
        labels.append(lab.numpy())
    label = np.stack(labels)
    expected = numpy_iou(np.zeros_like(label), label)
    assert result["miou"]["real"] == pytest.approx(np.mean(list(expected.values())))


def test_evaluate_a_checkpoint_artifact(tmp_path):
    targets = {"real": write_target(str(tmp_path / "real"), 2, [0, 2, 13])}
    ckpt = str(tmp_path / "ckpt")
    model = build_segmenter(tiny_model_config())
    save_checkpoint(ckpt, model, None, model.cfg, {"step": 0})
    with pytest.raises(ArtifactError, match="not a committed artifact"):
        evaluate(ckpt, targets, EvaluateConfig(short_side=None), str(tmp_path / "e0"), device="cpu")
    commit_folder(ckpt, stage="train", config_hash="t")
    with pytest.raises(ValueError, match="no EMA teacher"):
        evaluate(ckpt, targets, EvaluateConfig(short_side=None, weights="teacher"), str(tmp_path / "e1"), device="cpu")
    result = evaluate(ckpt, targets, EvaluateConfig(short_side=None), str(tmp_path / "e2"), device="cpu")
    assert 0.0 <= result["miou"]["real"] <= 1.0 and result["images"] == {"real": 2}
    assert read_lineage(str(tmp_path / "e2"))["inputs"][0]["url"] == ckpt


def test_evaluate_refuses_bad_targets(tmp_path):
    url = str(tmp_path / "bad")
    w = ArtifactWriter(url, stage="ingest", config_hash="t")
    w.write_shard(0, [{"__key__": "nolabel", "png": np.zeros((8, 8, 3), np.uint8)}])
    w.commit()
    with pytest.raises(ArtifactError, match="nolabel.*seg.png"):
        evaluate(PaletteOracle(), {"bad": url}, EvaluateConfig(short_side=None), str(tmp_path / "e"), device="cpu")
    with pytest.raises(ValueError, match="target name"):
        evaluate(PaletteOracle(), {"a/b": url}, EvaluateConfig(), str(tmp_path / "e"), device="cpu")


# ------------------------------------------------------------------ reference protocol (issue 11)
def _street_label(h: int, w: int, seed: int) -> np.ndarray:
    """Sky, buildings, road and sidewalk bands with thin poles, signs, people and cars: many 1-2 px borders."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), 10, np.uint8)  # sky
    label[h // 5 : h // 2] = 2  # building
    label[h // 2 : 3 * h // 4] = 1  # sidewalk
    label[3 * h // 4 :] = 0  # road
    for _ in range(40):
        x = int(rng.integers(0, w - 8))
        label[h // 6 : 3 * h // 4, x : x + int(rng.integers(3, 9))] = 5  # pole
        y, x = int(rng.integers(h // 2, h - h // 8)), int(rng.integers(0, w - w // 10))
        label[y : y + h // 12, x : x + int(rng.integers(w // 40, w // 10))] = int(rng.choice([11, 13, 7]))
    label[-h // 20 :] = IGNORE  # ego vehicle
    return label


class CentreOracle(nn.Module):
    """A perfectly aligned prediction: each output pixel gets the label found under its centre in the
    original image (computed here independently of PIL), at whatever size the evaluator resized to."""

    def __init__(self, label: np.ndarray):
        super().__init__()
        self.label = label

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        H, W = self.label.shape
        rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
        pred = self.label[rows[:, None], cols[None, :]].astype(np.int64)
        pred[pred == IGNORE] = 0  # a model never predicts 255; those pixels are not scored
        return torch.from_numpy(pred)[None].expand(images.shape[0], -1, -1)


@pytest.mark.parametrize("hw", [(1080, 1920), (3024, 4032)], ids=["acdc-1080x1920", "mapillary-3024x4032"])
def test_aligned_prediction_scores_100_after_reference_resize(tmp_path, hw):
    """Labels are resized at pixel centres like the image (PIL nearest), so a perfectly aligned prediction
    scores 100.0; torchvision's legacy nearest (half a pixel off) scored ~90 on the Mapillary size."""
    label = _street_label(*hw, seed=hw[0])
    url = str(tmp_path / "t")
    w = ArtifactWriter(url, stage="ingest", config_hash="t")
    w.write_shard(0, [{"__key__": "big", "png": colorize(label), "seg.png": label, "json": {}}])
    w.commit()
    result = evaluate(CentreOracle(label), {"t": url}, EvaluateConfig(short_side=1024), str(tmp_path / "e"),
                      device="cpu", averages={"t": "gt-present"})
    assert round(100 * result["miou"]["t"], 1) == 100.0
    conf = np.load(io.BytesIO(Folder.at(str(tmp_path / "e")).read_bytes("confusion/t.npy")))
    assert conf.trace() == conf.sum() > 0.9 * 1024 * 1024


def test_class_averaging_rule_per_target(tmp_path):
    """A class predicted but absent from the labels counts 0 under 'union' and is left out under 'gt-present'."""
    url = write_target(str(tmp_path / "t"), 2, [0, 2, 13])

    class Spurious(PaletteOracle):  # right everywhere, but calls a labelled patch "bus" (15): absent from labels
        def predict(self, images: torch.Tensor) -> torch.Tensor:
            pred = super().predict(images)
            pred[:, 10:12, 10:12] = 15
            return pred

    targets = {"as-cityscapes": url, "as-bdd": url}
    averages = {"as-cityscapes": "union", "as-bdd": "gt-present"}
    out = str(tmp_path / "e")
    result = evaluate(Spurious(), targets, EvaluateConfig(short_side=None), out, device="cpu", averages=averages)
    conf = np.load(io.BytesIO(Folder.at(out).read_bytes("confusion/as-bdd.npy")))
    iou = iou_per_class(conf)
    present = [c for c in range(NUM_CLASSES) if conf[c].sum() > 0]
    assert sorted(present) == [0, 2, 13] and iou[15] == 0.0
    assert result["miou"]["as-bdd"] == pytest.approx(np.mean(iou[present]))
    assert result["miou"]["as-cityscapes"] == pytest.approx(np.mean(iou[[*present, 15]]))
    assert result["miou"]["as-bdd"] > result["miou"]["as-cityscapes"]
    assert result["average"] == averages
    summary = pq.read_table(io.BytesIO(Folder.at(out).read_bytes("summary.parquet"))).to_pylist()
    assert {r["domain"]: (r["average"], r["classes_scored"]) for r in summary} == {
        "as-cityscapes": ("union", 4), "as-bdd": ("gt-present", 3)}
    report = Folder.at(out).read_bytes("report.md").decode()
    assert "| classes averaged | union | gt-present |" in report
    # The rule is part of the evaluation's identity: another rule on the same folder is not a silent reuse.
    with pytest.raises(ArtifactError, match="another"):
        evaluate(Spurious(), targets, EvaluateConfig(short_side=None), out, device="cpu",
                 averages={"as-cityscapes": "gt-present", "as-bdd": "gt-present"})
    with pytest.raises(ValueError, match="average must be one of"):
        evaluate(Spurious(), targets, EvaluateConfig(short_side=None), str(tmp_path / "e2"), device="cpu",
                 averages={"as-bdd": "mean"})


def test_each_target_kind_defaults_to_the_reference_rule():
    from clouds.config import load_config
    from clouds.config.data import DatasetSpec

    def rule(kind: str, **extra: object) -> str:
        return DatasetSpec(name="t", kind=kind, root="/data/x", **extra).average

    assert rule("cityscapes") == "union"
    assert rule("bdd10k") == rule("mapillary") == rule("acdc", condition="fog") == "gt-present"
    assert rule("cityscapes", average="gt-present") == "gt-present"  # a switch
    gta5 = load_config("configs/gta5.yaml")
    assert {t.name: t.average for t in gta5.data.targets} == {
        "target-cityscapes": "union", "target-bdd": "gt-present", "target-mapillary": "gt-present"}
    acdc = load_config("configs/cityscapes-acdc.yaml")
    assert {t.average for t in acdc.data.targets} == {"gt-present"}
