"""`clouds pretrain`: paired renders, the dense cross-domain objective, the resumable stage, tower files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from artifacts import is_committed, read_lineage
from clouds.config import BackboneConfig, ConfigError, load_config
from models.backbone import build_backbone, create_clip
from models.tower_weights import is_image_tower_file, read_metadata, save_image_tower
from stages.pretrain import stage as pretrain_stage
from stages.pretrain.objective import DenseCrossDomainObjective, ObjectiveWeights, match_loss, object_masks
from stages.pretrain.pairs import PairBank

TINY = "configs/tiny.yaml"
SMALL = ["pretrain.scenes=4", "pretrain.iters=4", "pretrain.batch_size=2", "pretrain.checkpoint_every=2",
         "pretrain.warmup_iters=1", "pretrain.domains=[sim, fog, night]"]


@pytest.fixture(scope="module")
def bank() -> PairBank:
    return PairBank.render(("sim", "fog", "night"), scenes=3, seed=1000, height=32, width=64)


def test_one_street_per_row_in_every_domain(bank):
    assert bank.images.shape == (3, 3, 32, 64, 3) and bank.inst.shape == (3, 32, 64)
    assert not np.array_equal(bank.images[0, 0], bank.images[0, 1])  # sim and fog look different
    assert bank.inst[0].max() > 1 and bank.depth.max() <= 200.0


def test_a_batch_pairs_two_domains_and_moves_labels_with_images(bank):
    batch = bank.batch(np.random.default_rng(0), 16)
    assert batch["a"].shape == (16, 3, 32, 64) and batch["inst_a"].shape == (16, 32, 64)
    assert not torch.equal(batch["a"], batch["b"])
    rendered = {bank.inst[s].tobytes(): s for s in range(len(bank))}
    flipped = {bank.inst[s][:, ::-1].tobytes(): s for s in range(len(bank))}
    for i in range(16):
        for view in ("a", "b"):  # uncropped: each view is a whole render, flipped or not with its labels
            inst = batch[f"inst_{view}"][i].numpy().astype(np.int32)
            s = rendered.get(inst.tobytes(), flipped.get(inst.tobytes()))
            assert s is not None
            image = batch[view][i].permute(1, 2, 0).numpy().astype(np.uint8)
            own = bank.images[s] if inst.tobytes() in rendered else bank.images[s][:, :, ::-1]
            assert any(np.array_equal(image, own[d]) for d in range(3))


def test_cropped_views_put_an_object_at_different_places(bank):
    batch = bank.batch(np.random.default_rng(0), 8, crop_scale=(0.3, 0.5))
    assert batch["inst_a"].shape == (8, 32, 64)
    moved = [not torch.equal(batch["inst_a"][i], batch["inst_b"][i]) for i in range(8)]
    assert all(moved)
    # Labels are resized with nearest: still object ids of that street, never blends of two.
    for i in range(8):
        assert set(batch["inst_a"][i].unique().tolist()) <= set(range(int(bank.inst.max()) + 1))


def test_matching_loss_rewards_embeddings_that_agree_across_domains(bank):
    inst = torch.from_numpy(bank.inst[:2]).long()
    masks, valid = object_masks(inst, (4, 8), 1, int(inst.max()) + 1)
    same = torch.nn.functional.normalize(torch.randn(2, 16, 4, 8), dim=1)
    agree, acc_agree = match_loss(same, same, masks, masks, valid, 0.1)
    other, _ = match_loss(same, torch.nn.functional.normalize(torch.randn(2, 16, 4, 8), dim=1), masks, masks,
                          valid, 0.1)
    assert agree < other and acc_agree > 0.5


def test_the_objective_trains_the_tower(bank):
    cfg = BackboneConfig(name="clouds-tiny-convnext", pretrained=None, freeze=False)
    tower = build_backbone(cfg, create_clip(cfg))
    objective = DenseCrossDomainObjective(tower.channels, 16, ObjectiveWeights())
    batch = bank.batch(np.random.default_rng(1), 2, crop_scale=(0.5, 1.0))
    feats = tower(tower.normalize(torch.cat([batch["a"], batch["b"]])))
    loss, row = objective([f[:2] for f in feats], [f[2:] for f in feats], batch)
    loss.backward()
    assert torch.isfinite(loss) and set(row) == {"loss", "match", "match_acc", "depth", "edge"}
    trunk = tower.visual.trunk  # the pyramid the decoder reads; the pooling head and projection are unused
    assert all(p.grad is not None for m in (trunk.stem, trunk.stages) for p in m.parameters())


def test_pretrain_commits_a_tower_file_the_backbone_loads(tmp_path):
    cfg = load_config(TINY, SMALL)
    out = str(tmp_path / "pretrain")
    stats = pretrain_stage.pretrain(cfg, out, {"command": "test"})
    assert is_committed(out) and stats["step"] == 4
    path = tmp_path / "pretrain" / "image_tower.safetensors"
    assert is_image_tower_file(path) and (tmp_path / "pretrain" / "loss.png").stat().st_size > 0
    meta = read_metadata(path)
    assert meta["model"] == "clouds-tiny-convnext" and meta["provenance"]["command"] == "test"
    assert meta["provenance"]["pretrain"]["seed"] == 0
    assert read_lineage(out)["params"]["pretrain"]["iters"] == 4
    loaded = create_clip(BackboneConfig(name="clouds-tiny-convnext", pretrained=str(path)))
    saved = load_file(str(path))
    for key, value in loaded.visual.state_dict().items():
        assert torch.equal(value, saved[key].to(value.dtype)), key
    assert not (tmp_path / "pretrain" / "_progress").exists()


def test_a_tower_file_of_another_model_is_refused_naming_both(tmp_path):
    clip = create_clip(BackboneConfig(name="clouds-tiny-rn", pretrained=None))
    path = tmp_path / "rn.safetensors"
    save_image_tower(path, clip.visual, "clouds-tiny-rn", {})
    with pytest.raises(ValueError, match="holds the image tower of 'clouds-tiny-rn', but backbone.name is "
                                         "'clouds-tiny-convnext'"):
        create_clip(BackboneConfig(name="clouds-tiny-convnext", pretrained=str(path)))
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        create_clip(BackboneConfig(name="clouds-tiny-convnext", pretrained=str(missing)))


def test_pretrain_domains_must_be_two_distinct(tmp_path):
    with pytest.raises(ConfigError, match="pretrain.domains"):
        load_config(TINY, ["pretrain.domains=[fog, fog]"])
    with pytest.raises(ConfigError, match="pretrain.domains"):
        load_config(TINY, ["pretrain.domains=[dusk, fog]"])


@pytest.mark.slow
def test_clouds_pretrain_flow_builds_once_and_reuses(harness, tmp_path):
    from clouds.layout import RunLayout
    from pipelines.clouds_flow import clouds

    root = str(tmp_path / "runs")
    first = clouds(mode="pretrain", config=TINY, overrides=SMALL, root=root, run="pt")
    url = RunLayout(root, "pt").once("pretrain")
    assert first["steps"] == [{"stage": "pretrain", "url": url, "reused": False}] and is_committed(url)
    assert read_metadata(f"{url}/image_tower.safetensors")["provenance"]["overrides"] == SMALL
    again = clouds(mode="pretrain", config=TINY, overrides=SMALL, root=root, run="pt")
    assert again["steps"][0]["reused"]
    changed = clouds(mode="pretrain", config=TINY, overrides=[*SMALL, "pretrain.seed=1"], root=root, run="pt")
    assert not changed["steps"][0]["reused"] and read_lineage(url)["params"]["pretrain"]["seed"] == 1


def test_a_checkpoint_refuses_a_replaced_frozen_tower_file(tmp_path):
    from models.build import build_segmenter, tiny_model_config
    from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "tower.safetensors"
    torch.manual_seed(1)
    save_image_tower(path, create_clip(BackboneConfig(name="clouds-tiny-convnext", pretrained=None)).visual,
                     "clouds-tiny-convnext", {})
    cfg = tiny_model_config()
    cfg.backbone.pretrained, cfg.backbone.freeze = str(path), True
    model = build_segmenter(cfg)
    save_checkpoint(str(tmp_path / "ckpt"), model, None, cfg, {})
    assert not (tmp_path / "ckpt" / "backbone.safetensors").exists()  # rebuilt from the file, not copied
    student, _, _, _ = load_checkpoint(str(tmp_path / "ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), model.state_dict().values(), strict=True))
    torch.manual_seed(2)  # the file is replaced by another tower of the same architecture
    save_image_tower(path, create_clip(BackboneConfig(name="clouds-tiny-convnext", pretrained=None)).visual,
                     "clouds-tiny-convnext", {})
    with pytest.raises(CheckpointError, match="the weight file was replaced"):
        load_checkpoint(str(tmp_path / "ckpt"))


SHIPPED = "models/weights/clouds-tiny-convnext-toycity.safetensors"


def test_the_shipped_tower_loads_frozen_through_the_tiny_profile():
    from pathlib import Path

    from models.build import build_segmenter

    path = Path(SHIPPED)
    assert path.stat().st_size <= 10 * 2**20  # small enough to live in the repository
    cfg = load_config(TINY)
    assert cfg.model.backbone.pretrained == SHIPPED and cfg.model.backbone.freeze
    meta = read_metadata(path)
    # How it was made: the command, and the settings its committed artifact was hashed from.
    assert meta["provenance"]["config"] == TINY and meta["provenance"]["pretrain"]["seed"] == cfg.pretrain.seed
    assert meta["provenance"]["pretrain"] == cfg.pretrain.model_dump(mode="json")
    model = build_segmenter(cfg.model)
    saved = load_file(str(path))
    for key, value in model.backbone.visual.state_dict().items():
        assert torch.equal(value, saved[key].to(value.dtype)), key
    assert not any(p.requires_grad for p in model.backbone.parameters())

