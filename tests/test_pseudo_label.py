"""Teacher pseudo-labelling: labels + confidence per image, quality against true labels, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artifacts import ArtifactWriter, open_artifact
from clouds.config import PseudoLabelConfig
from models.build import build_segmenter, tiny_model_config
from stages.pseudo_label import label_images, prepare_pseudo_label


class Fixed(torch.nn.Module):
    """A 'teacher' whose scores the test controls: class 13 on the left half, class 0 elsewhere."""

    def predict_scores(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        scores = torch.full((b, 19, h, w), 0.01)
        scores[:, 0] = 0.5
        scores[:, 13, :, : w // 2] = 0.9
        scores[:, 13, :, w // 2 :] = 0.45  # nearly tied with road: low confidence on the right
        return scores


def images_artifact(url: str, n: int = 5, shard: int = 2) -> None:
    w = ArtifactWriter(url, stage="synthesize", config_hash="s", shard_max_samples=shard)
    true = np.zeros((16, 32), np.uint8)
    true[:, :16] = 13

    def items():
        for i in range(n):
            yield f"img{i}", lambda i=i: {"__key__": f"img{i}", "png": np.full((16, 32, 3), i * 10, np.uint8),
                                         "true.seg.png": true, "json": {"domain": "generated", "prompt": f"p{i}"}}

    w.write_stream(items())
    w.commit()


def test_labels_confidence_and_quality(tmp_path):
    images_artifact("memory://gen")
    job = prepare_pseudo_label(Fixed(), "memory://gen", "memory://gen", "memory://pl", PseudoLabelConfig(batch_size=2),
                               device=torch.device("cpu"))
    art = job.run_all()
    assert art.num_samples == 5 and len(art.shards) == 3
    s = next(art.iter_samples())
    assert (s["seg.png"][:, :16] == 13).all() and (s["seg.png"][:, 16:] == 0).all()
    assert s["conf.png"][0, 0] > s["conf.png"][0, 31]
    assert s["json"]["prompt"] == "p0" and s["json"]["pseudo_miou"] == pytest.approx(1.0)
    assert art.lineage["stats"]["pseudo_miou"] == pytest.approx(1.0)
    assert set(art.lineage["stats"]["pseudo_miou_per_shard"]) == {"0", "1", "2"}
    assert art.manifest.column("meta_pseudo_miou").to_pylist() == [1.0] * 5


def test_threshold_sends_low_confidence_to_ignore():
    image = np.zeros((16, 32, 3), np.uint8)
    [(label, conf)] = label_images(Fixed(), [image], 4, torch.device("cpu"), confidence_threshold=0.5)
    assert (label[:, :16] == 13).all() and (label[:, 16:] == 255).all()


def test_resume_keeps_done_shards_and_matches_uninterrupted():
    images_artifact("memory://gen")
    cfg = PseudoLabelConfig(batch_size=2)
    ref = prepare_pseudo_label(Fixed(), "memory://gen", "memory://gen", "memory://ref", cfg, device=torch.device("cpu")).run_all()
    job = prepare_pseudo_label(Fixed(), "memory://gen", "memory://gen", "memory://part", cfg, device=torch.device("cpu"))
    job.run_shard(0)
    again = prepare_pseudo_label(Fixed(), "memory://gen", "memory://gen", "memory://part", cfg, device=torch.device("cpu"))
    assert again.pending() == [1, 2]
    art = again.run_all()
    assert art.lineage["content_hash"] == ref.lineage["content_hash"]
    assert art.lineage["stats"] == ref.lineage["stats"]


def test_real_tiny_teacher_labels_every_pixel():
    torch.manual_seed(0)
    model = build_segmenter(tiny_model_config())
    images_artifact("memory://gen", n=2)
    art = prepare_pseudo_label(model, "memory://gen", "memory://gen", "memory://pl", PseudoLabelConfig(batch_size=2),
                               device=torch.device("cpu")).run_all()
    for s in open_artifact(art.url).iter_samples():
        assert s["seg.png"].shape == (16, 32) and s["seg.png"].max() < 19
        assert s["conf.png"].dtype == np.uint8


def test_bad_image_is_named():
    with pytest.raises(ValueError, match="image 0: expected HxWx3 uint8"):
        label_images(Fixed(), [np.zeros((4, 4), np.uint8)], 1, torch.device("cpu"))


def test_stage_with_a_confidence_threshold_scores_the_labelled_pixels(tmp_path):
    """The threshold's ignore pixels (255) are not predictions: the stage scored them as one and failed."""
    images_artifact("memory://gen-th")
    cfg = PseudoLabelConfig(batch_size=2, confidence_threshold=0.5)
    art = prepare_pseudo_label(Fixed(), "memory://gen-th", "memory://gen-th", "memory://pl-th", cfg,
                               device=torch.device("cpu")).run_all()
    s = next(art.iter_samples())
    assert (s["seg.png"][:, 16:] == 255).all() and s["json"]["pseudo_coverage"] == pytest.approx(0.5)
    assert s["json"]["pseudo_miou"] == pytest.approx(1.0) and art.lineage["stats"]["pseudo_miou"] == pytest.approx(1.0)
