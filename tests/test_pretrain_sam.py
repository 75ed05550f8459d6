"""`clouds run pretrain-sam`: object masks from the renderer, SAM's objective, the resumable stage, the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from artifacts import is_committed, read_lineage
from artifacts.identity import Identity
from clouds.config import load_config
from models.sam import build_sam, load_sam
from stages.pretrain import sam_stage
from stages.pretrain.masks import PAD_POINT, MaskBank
from stages.pretrain.sam_objective import sam_loss

TINY = "configs/tiny.yaml"
SMALL = ["pretrain_sam.model_type=tiny", "pretrain_sam.scenes=4", "pretrain_sam.iters=4",
         "pretrain_sam.batch_size=2", "pretrain_sam.masks_per_image=3", "pretrain_sam.checkpoint_every=2",
         "pretrain_sam.warmup_iters=1", "pretrain_sam.height=32", "pretrain_sam.width=64"]


@pytest.fixture(scope="module")
def bank() -> MaskBank:
    return MaskBank.render(("sim", "fog", "night"), scenes=3, seed=3000, height=32, width=64, generated_share=0.5)


def test_every_street_keeps_its_object_ids(bank):
    assert bank.images.shape == (3, 32, 64, 3) and bank.inst.shape == (3, 32, 64)
    assert all(d in ("sim", "fog", "night") for d in bank.domains)
    assert all(len(np.unique(bank.inst[s])) > 3 for s in range(3))  # sky, road and objects


def test_prompt_points_fall_inside_their_masks(bank):
    sam = build_sam("tiny")
    batch = bank.batch(np.random.default_rng(0), 4, masks_per_image=5, max_points=5, min_area=8, sam=sam)
    side = sam.image_encoder.img_size
    assert batch.images.shape == (4, 3, side, side) and batch.original_size == (32, 64)
    scale = batch.input_size[1] / 64
    for points, labels, masks in zip(batch.points, batch.labels, batch.masks, strict=True):
        assert points.shape == (5, 5, 2) and labels.shape == (5, 5) and masks.shape == (5, 32, 64)
        assert set(masks.unique().tolist()) <= {0.0, 1.0} and (masks.sum((1, 2)) >= 8).all()
        assert ((labels == 1) | (labels == PAD_POINT)).all() and (labels[:, 0] == 1).all()
        for k in range(5):
            for (x, y), label in zip(points[k].tolist(), labels[k].tolist(), strict=True):
                if label == 1:  # back to original pixels: the point lies on its object
                    assert masks[k, round(y / scale), round(x / scale)] == 1


def test_the_objective_trains_sam(bank):
    torch.manual_seed(0)
    sam = build_sam("tiny").train()
    batch = bank.batch(np.random.default_rng(1), 2, masks_per_image=4, max_points=3, min_area=8, sam=sam)
    optimizer = torch.optim.AdamW(sam.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss, row = sam_loss(sam, batch)
        first = row if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert 0.0 <= row["best_iou"] <= 1.0 and row["mask"] < 0.8 * first["mask"]


def test_pretrain_sam_commits_a_file_refinement_loads(tmp_path):
    cfg = load_config(TINY, SMALL)
    out = str(tmp_path / "pretrain-sam")
    stats = sam_stage.pretrain_sam(cfg, out, {"command": "test"})
    assert is_committed(out) and stats["step"] == 4 and (tmp_path / "pretrain-sam" / "loss.png").stat().st_size > 0
    assert read_lineage(out)["params"]["pretrain_sam"]["iters"] == 4
    path = tmp_path / "pretrain-sam" / sam_stage.SAM_FILE
    sam = load_sam("tiny", path)
    saved = load_file(str(path))
    assert all(v.dtype == torch.float16 for v in saved.values())
    for key, value in sam.state_dict().items():
        assert torch.equal(value, saved[key].to(value.dtype)), key
    assert not (tmp_path / "pretrain-sam" / "_progress").exists()
    again = sam_stage.pretrain_sam(cfg, out, {})
    assert again["skipped"]


def test_the_shipped_sam_refines_through_the_tiny_profile():
    """The file `configs/tiny.yaml` names is the one its pretrain_sam section makes, and refinement runs on it."""
    import json

    from safetensors import safe_open

    from clouds.toycity.dataset import generate
    from stages.refine.algorithm import refine_with_sam
    from stages.refine.components import sample_rng
    from stages.refine.predictor import SamMaskPredictor

    cfg = load_config(TINY)
    assert cfg.refine.method == "sam" and cfg.refine.model_type == "toy"
    with safe_open(cfg.refine.checkpoint, "pt") as f:
        provenance = json.loads(f.metadata()["provenance"])
    assert provenance["pretrain_sam"] == cfg.pretrain_sam.model_dump(mode="json")
    assert provenance["config_hash"] == Identity.of(sam_stage.STAGE, sam_stage.pretrain_sam_params(cfg)).config_hash
    image, label, _ = generate("fog", 0, 7, 64, 128)
    predictor = SamMaskPredictor(load_sam(cfg.refine.model_type, cfg.refine.checkpoint), cfg.refine.multimask)
    refined, stats = refine_with_sam(image, label, predictor, cfg.refine, sample_rng(0, "x"), "x")
    assert stats.components_kept > 0 and refined.shape == label.shape
    kept = refined != 255
    assert kept.any() and (refined[kept] == label[kept]).mean() > 0.8  # true prompts: its masks follow objects
