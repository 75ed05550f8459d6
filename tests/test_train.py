"""The train stage: augmentations, repeat-factor mixing, optimizer groups, schedules, exact resume, artifacts."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from torch import nn
from torchvision import tv_tensors

from artifacts import ArtifactError, ArtifactWriter, Folder, read_lineage, verify_folder
from clouds.config import parse_config
from clouds.labels import IGNORE
from models.build import build_segmenter, tiny_model_config
from stages.train import checkpoints as ckpt_mod
from stages.train import recipe as recipe_mod
from stages.train.augment import SSDColorJitter, generated_views, source_transform, to_tv
from stages.train.checkpoints import read_metrics, read_train_state
from stages.train.data import LabeledArtifact, TrainData, collate
from stages.train.optim import build_optimizer, build_scheduler, param_groups
from stages.train.sampler import RepeatFactorSampler, generated_share
from stages.train.stage import train

H, W = 64, 128


# --------------------------------------------------------------------------------- augmentations
def _pair(h: int, w: int, seed: int = 0) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 216, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (h, w), dtype=np.uint8)
    label[:, : w // 4] = IGNORE
    return to_tv(image, label, "test")


@pytest.mark.parametrize("size", [(32, 64), (64, 128), (150, 300)])
def test_source_transform_gives_crop_size_and_keeps_label_values(size):
    image, label = _pair(*size)
    tf = source_transform((H, W), base_size=size, scale_range=(0.5, 2.0))
    for seed in range(6):
        torch.manual_seed(seed)
        img, lab = tf(image, label)
        assert img.shape == (3, H, W) and img.dtype == torch.uint8
        assert lab.shape == (H, W) and lab.dtype == torch.uint8
        assert set(lab.unique().tolist()) <= set(label.unique().tolist()) | {IGNORE}  # nearest, never blended


def test_source_pads_before_jitter_and_flip_like_the_reference():
    """Reference order (FixedSizeCrop(pad=True), then ColorAugSSD, then flip): the padding (image 0, label
    255) is jittered with the image and can end up on the left after a flip."""
    image, label = _pair(40, 80)
    label[:] = 3
    # Scaled to a short side of 20 (-> 20x40), smaller than the 64x128 crop on both sides.
    tf = source_transform((H, W), base_size=(40, 80), scale_range=(0.5, 0.5), color_jitter=True)
    flipped = lightened = 0
    for seed in range(24):
        torch.manual_seed(seed)
        img, lab = tf(image, label)
        assert (lab[20:, :] == IGNORE).all()
        left = bool((lab[:20, :40] == 3).all())
        assert left or (lab[:20, W - 40 :] == 3).all()  # the image sits at the left, or flipped to the right
        assert (lab[:20] == IGNORE).sum() == 20 * (W - 40)
        flipped += int(not left)
        pad = img[:, 20:, :]  # padded rows: 0 before the jitter, so anything above 0 came from it
        lightened += int(pad.float().mean() > 0)
    assert 0 < flipped < 24 and 0 < lightened < 24


def test_ssd_saturation_scales_hsv_s_channel_not_a_grey_blend():
    """detectron2 multiplies S in OpenCV's HSV: the brightest channel (V) stays; a blend with grey (what
    torchvision's adjust_saturation does) would darken it towards the grey level."""
    image = tv_tensors.Image(torch.tensor([[[200]], [[100]], [[50]]], dtype=torch.uint8).expand(3, 4, 4).clone())
    jitter = SSDColorJitter(brightness_delta=0, p=1.0, contrast=(1.0, 1.0), saturation=(0.5, 0.5), hue_delta=0)
    torch.manual_seed(0)
    out = jitter(image)[:, 0, 0].tolist()
    assert out[0] == 200  # V = max(R, G, B) is untouched
    assert out[2] > 50 and out[1] > 100  # less saturated: the other channels move up towards V
    assert abs(out[2] - 125) <= 2  # S 191 -> 95: min = V (1 - S/255) = 125.5


def test_ssd_jitter_brightness_is_additive_on_255_scale_and_masks_pass_through():
    grey = tv_tensors.Image(torch.full((3, 8, 8), 100, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.full((8, 8), 7, dtype=torch.uint8))
    jitter = SSDColorJitter(p=1.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue_delta=0)
    shifts = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out, m = jitter(grey, mask)
        assert torch.equal(m, mask)
        values = out.unique()
        assert values.numel() == 1  # one offset for every pixel and channel
        shifts.add(int(values) - 100)
    assert all(-32 <= s <= 32 for s in shifts) and max(shifts) - min(shifts) > 20


def test_ssd_jitter_contrast_multiplies():
    image = tv_tensors.Image(torch.tensor([[[10, 100, 200]]] * 3, dtype=torch.uint8))
    jitter = SSDColorJitter(brightness_delta=0, p=1.0, contrast=(1.5, 1.5), saturation=(1.0, 1.0), hue_delta=0)
    torch.manual_seed(0)
    assert jitter(image)[0, 0].tolist() == [15, 150, 255]  # x * 1.5, clipped (not blended towards the mean)


def test_generated_views_share_one_flip():
    h, w = 16, 32
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2 :] = 200
    label = np.zeros((h, w), np.uint8)
    label[:, w // 2 :] = 1
    img, lab = to_tv(image, label, "test")
    flips = set()
    for seed in range(16):
        torch.manual_seed(seed)
        clean, jittered, out = generated_views(img, lab)
        assert clean.shape == jittered.shape == (3, h, w) and out.shape == (h, w)
        bright = out == 1
        assert (clean[:, bright] == 200).all() and (clean[:, ~bright] == 0).all()
        assert jittered[:, bright].float().mean() > jittered[:, ~bright].float().mean()  # jitter keeps the geometry
        flips.add(bool(out[0, 0] == 1))
    assert flips == {True, False}


# --------------------------------------------------------------------------------- sampling
def test_repeat_factor_share_matches_paper_for_gta5():
    share = generated_share(24904, 5000, 2.0)
    assert share == pytest.approx(10000 / 34904)
    assert 0.25 <= share <= 0.29
    assert 0.25 <= generated_share(9400, 5000, 0.7) <= 0.29  # SYNTHIA
    assert 0.25 <= generated_share(2975, 5000, 0.2) <= 0.29  # Cityscapes -> ACDC
    sampler = RepeatFactorSampler([24904, 5000], [1.0, 2.0], seed=0)
    batches = sampler.batches_from(0, 8)
    drawn = [ref.dataset for _ in range(2000) for ref in next(batches)]
    assert np.mean(drawn) == pytest.approx(share, abs=0.01)


def test_fractional_repeat_factor_and_determinism():
    sampler = RepeatFactorSampler([940, 500], [1.0, 0.7], seed=3)
    epoch = sampler.epoch(0)
    assert np.sum(epoch >= 940) == pytest.approx(350, abs=40)  # stochastic rounding of 0.7 per image
    assert np.array_equal(np.sort(epoch[epoch < 940]), np.arange(940))  # every source image once per epoch
    again = RepeatFactorSampler([940, 500], [1.0, 0.7], seed=3)
    assert np.array_equal(again.epoch(1), sampler.epoch(1))
    # Starting at a position gives exactly the tail of the stream from 0 (what a resume relies on).
    full = sampler.iter_from(0)
    head = [next(full) for _ in range(2000)]
    tail = sampler.iter_from(1500)
    assert [next(tail) for _ in range(500)] == head[1500:]
    other = RepeatFactorSampler([940, 500], [1.0, 0.7], seed=4)
    assert [r.index for r in head[:50]] != [next(other.iter_from(i)).index for i in range(50)]


def test_sampler_refuses_nothing_to_sample():
    with pytest.raises(ValueError, match="nothing to sample"):
        RepeatFactorSampler([0, 10], [1.0, 0.0], seed=0)


# --------------------------------------------------------------------------------- optimizer
class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.proj = nn.Linear(8, 8)
        self.ln = nn.LayerNorm(8)
        self.queries = nn.Embedding(4, 8)
        self.frozen = nn.Linear(8, 8).requires_grad_(False)


def test_weight_decay_groups():
    toy = _Toy()
    decay, no_decay = param_groups(toy, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(no_decay["params"]) == ids([*toy.gn.parameters(), *toy.ln.parameters(), toy.queries.weight])
    assert ids(decay["params"]) == ids([toy.conv.weight, toy.conv.bias, toy.proj.weight, toy.proj.bias])


def test_weight_decay_groups_on_the_segmenter():
    model = build_segmenter(tiny_model_config())
    decay, no_decay = param_groups(model, 0.05)
    exempt = ids = {id(p) for p in no_decay["params"]}
    for module in model.decoder.modules():
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.Embedding)):
            assert all(id(p) in exempt for p in module.parameters(recurse=False)), type(module).__name__
    handed = ids | {id(p) for p in decay["params"]}
    assert not handed & {id(p) for p in model.backbone.parameters()}  # the frozen CLIP tower is not optimised
    assert handed == {id(p) for p in model.decoder.parameters() if p.requires_grad}


def test_poly_schedule_values_and_constant():
    layer = nn.Linear(2, 2)
    opt = build_optimizer(layer, lr=1e-2, weight_decay=0.05)
    sched = build_scheduler(opt, "poly", total_iters=10, power=0.9)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1e-2 * (1 - t / 10) ** 0.9 for t in range(10)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    opt = build_optimizer(layer, lr=1e-5, weight_decay=0.05)
    sched = build_scheduler(opt, "constant", total_iters=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 1e-5
    with pytest.raises(ValueError, match="schedule"):
        build_scheduler(opt, "cosine", 10)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- tiny artifacts
def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A road/sky/car toy scene: labels with structure, image colours that follow them."""
    label = np.zeros((H, W), np.uint8)
    horizon = int(rng.integers(H // 4, H // 2))
    label[:horizon] = 10
    x = int(rng.integers(0, W - 32))
    label[horizon : horizon + 16, x : x + 32] = 13
    image = np.zeros((H, W, 3), np.uint8)
    image[label == 0] = (128, 64, 128)
    image[label == 10] = (70, 130, 180)
    image[label == 13] = (0, 0, 142)
    image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
    return image, label


def write_source(url: str, n: int = 6, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    w = ArtifactWriter(url, stage="ingest", config_hash="t", shard_max_samples=4)

    def sample(i):
        image, label = _scene(rng)
        return {"__key__": f"src{i:03d}", "png": image, "seg.png": label, "json": {"domain": "sim"}}

    w.write_stream((f"src{i:03d}", lambda i=i: sample(i)) for i in range(n))
    w.commit()
    return url


def write_synthetic(url: str, n: int = 4, seed: int = 1, with_label: bool = True) -> str:
    rng = np.random.default_rng(seed)
    w = ArtifactWriter(url, stage="refine", config_hash="t", shard_max_samples=3)

    def sample(i):
        image, label = _scene(rng)
        s = {"__key__": f"gen{i:03d}", "png": image, "json": {"domain": "generated"},
             # Diagnostic ground truth that is NOT train ids: reading it for training would fail loudly.
             "true.seg.png": np.full((H, W), 77, np.uint8)}
        if with_label:
            s["seg.png"] = label
        return s

    w.write_stream((f"gen{i:03d}", lambda i=i: sample(i)) for i in range(n))
    w.commit()
    return url


def tiny_cfg(**train):
    tree = {
        "run": {"seed": 7, "device": "cpu"},
        "data": {"source": {"name": "source", "kind": "toycity", "domain": "sim", "count": 6}},
        "model": tiny_model_config().model_dump(mode="json"),
        "train": {
            "warmup_iters": 6, "joint_iters": 6, "batch_size": 2, "lr": 1e-3, "crop_size": [H, W],
            "base_size": [H, W], "checkpoint_every": 3, "log_every": 1, "num_workers": 0, "ema_period": 2,
            "ema_alpha": 0.5, "grad_clip": 0.01, **train,
        },
    }
    return parse_config(tree)


def _weights(url: str, name: str = "student_decoder.safetensors") -> dict[str, torch.Tensor]:
    return load_safetensors(Folder.at(url).read_bytes(name))


def test_data_reads_image_and_refined_label_only(tmp_path):
    src = write_source(str(tmp_path / "src"))
    gen = write_synthetic(str(tmp_path / "gen"))
    art = LabeledArtifact(gen)
    image, label = art.load(2)
    assert image.shape == (H, W, 3) and label.shape == (H, W) and 77 not in np.unique(label)
    data = TrainData(tiny_cfg().train, src, [gen], seed=0)
    images, labels = next(data.batches(0))
    assert images.shape == (2, 3, H, W) and images.dtype == torch.float32 and labels.dtype == torch.long
    again, again_labels = next(data.batches(0))
    assert torch.equal(images, again) and torch.equal(labels, again_labels)  # per-draw seeds
    with pytest.raises(ArtifactError, match=r"gen000.*'seg.png'"):
        LabeledArtifact(write_synthetic(str(tmp_path / "nolabel"), with_label=False))


def test_batches_do_not_depend_on_worker_count(tmp_path):
    src = write_source(str(tmp_path / "src"))
    gen = write_synthetic(str(tmp_path / "gen"))
    single = TrainData(tiny_cfg(num_workers=0).train, src, [gen], seed=5).batches(4)
    pooled = TrainData(tiny_cfg(num_workers=2).train, src, [gen], seed=5).batches(4)
    for _ in range(3):
        (a, la), (b, lb) = next(single), next(pooled)
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_collate_pads_to_batch_max():
    a = (torch.full((3, 4, 6), 9, dtype=torch.uint8), torch.ones(4, 6, dtype=torch.uint8))
    b = (torch.full((3, 5, 3), 9, dtype=torch.uint8), torch.ones(5, 3, dtype=torch.uint8))
    images, labels = collate([a, b])
    assert images.shape == (2, 3, 5, 6) and labels.shape == (2, 5, 6)
    assert images[0, :, 4:].eq(0).all() and labels[0, 4:].eq(IGNORE).all() and labels[1, :, 3:].eq(IGNORE).all()


class _Crash(RuntimeError):
    pass


def test_resume_after_crash_equals_uninterrupted_run(tmp_path, monkeypatch):
    src = write_source(str(tmp_path / "src"))
    cfg = tiny_cfg(checkpoint_every=2)
    full = train(cfg, src, [], str(tmp_path / "full"), iters=4, mode="warmup")
    assert full["step"] == 4

    real_save = recipe_mod.save_progress

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise _Crash("simulated crash right after the step-2 snapshot")

    out = str(tmp_path / "resumed")
    monkeypatch.setattr(recipe_mod, "save_progress", save_then_crash)
    with pytest.raises(_Crash):
        train(cfg, src, [], out, iters=4, mode="warmup")
    monkeypatch.undo()
    with pytest.raises(ArtifactError, match="not a committed artifact"):
        read_lineage(out)
    assert read_train_state(ckpt_mod.latest_progress(out))["step"] == 2
    resumed = train(cfg, src, [], out, iters=4, mode="warmup")
    assert resumed["step"] == 4 and not Folder.at(out).exists("_progress")
    a, b = _weights(str(tmp_path / "full")), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    sa, sb = read_train_state(str(tmp_path / "full")), read_train_state(out)
    assert sa["position"] == sb["position"] == 8
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]  # the log continues across the restart


def test_the_recipe_steps_one_by_one_are_what_train_runs(tmp_path):
    """torchrun, Ray Train and the flow run the recipe; `train()` is the same recipe, step for step."""
    src = write_source(str(tmp_path / "src"))
    cfg = tiny_cfg(checkpoint_every=2)
    whole = train(cfg, src, [], str(tmp_path / "whole"), iters=3, mode="warmup")
    out = str(tmp_path / "steps")
    recipe = recipe_mod.TrainRecipe(cfg, src, [], out, iters=3, mode="warmup")
    assert recipe.setup() is None
    recipe.load_checkpoint()
    recipe.train()
    stats = recipe.save_checkpoint()
    recipe.cleanup()
    assert recipe.state is None and recipe.data is None
    assert {k: v for k, v in stats.items() if k != "url"} == {k: v for k, v in whole.items() if k != "url"}
    a, b = _weights(str(tmp_path / "whole")), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_lineage(out)["config_hash"] == read_lineage(str(tmp_path / "whole"))["config_hash"]
    again = recipe_mod.TrainRecipe(cfg, src, [], out, iters=3, mode="warmup")
    assert again.setup() == {**stats, "skipped": True} and again.data is None  # committed: nothing opened
    with pytest.raises(ValueError, match="iters must be >= 1"):
        recipe_mod.TrainRecipe(cfg, src, [], out, iters=0)


def test_warmup_then_joint_rounds_commit_checkpoint_artifacts(tmp_path):
    src = write_source(str(tmp_path / "src"))
    gen = write_synthetic(str(tmp_path / "gen"))
    cfg = tiny_cfg(checkpoint_every=100)
    warm_url = str(tmp_path / "warmup")
    warm = train(cfg, src, [], warm_url, iters=2, mode="warmup")
    assert warm["step"] == 2 and warm["generated_share"] == 0.0
    assert warm["inference"] == {"short_side": 1024}  # evaluate.short_side: predict's default for the checkpoint
    lineage = verify_folder(warm_url)
    assert lineage["stage"] == "train" and lineage["params"]["mode"] == "warmup"
    assert {"student_decoder.safetensors", "model.json", "train_state.pt", "metrics.parquet"} <= set(lineage["files"])
    assert not Folder.at(warm_url).exists("teacher_decoder.safetensors")
    metrics = read_metrics(warm_url)
    assert [r["step"] for r in metrics] == [1, 2] and {"loss", "loss_ce", "lr", "time_s", "it_per_s"} <= set(metrics[0])

    with pytest.raises(ValueError, match="init_checkpoint"):
        train(cfg, src, [gen], str(tmp_path / "j0"), iters=2, mode="joint")
    with pytest.raises(ValueError, match="synthetic"):
        train(cfg, src, [], str(tmp_path / "j0"), init_checkpoint=warm_url, iters=2, mode="joint")

    round1 = str(tmp_path / "round1")
    joint = train(cfg, src, [gen], round1, init_checkpoint=warm_url, iters=3, mode="joint")
    assert joint["step"] == 3 and joint["generated_share"] == pytest.approx(8 / 14)  # 2.0 * 4 / (6 + 2.0 * 4)
    assert read_lineage(round1)["inputs"][1]["url"] == gen
    warm_w, student, teacher = _weights(warm_url), _weights(round1), _weights(round1, "teacher_decoder.safetensors")
    k = next(iter(student))
    moved = [name for name in student if not torch.equal(teacher[name], warm_w[name])]
    assert moved, "the EMA teacher was never updated"
    assert any(not torch.equal(teacher[n], student[n]) for n in student), "teacher should lag the student"
    assert teacher[k].shape == student[k].shape

    round2 = str(tmp_path / "round2")
    cont = train(cfg, src, [gen], round2, init_checkpoint=round1, iters=2, mode="joint")
    assert cont["step"] == 5 and cont["samples_seen"] == 10  # the joint schedule continues across rounds
    again = train(cfg, src, [gen], round2, init_checkpoint=round1, iters=2, mode="joint")
    assert again["skipped"] and again["step"] == 5


def test_training_logs_progress_lines_without_a_terminal(tmp_path, caplog, monkeypatch):
    """Log files, nohup and Prefect workers get INFO lines with the rate and the ETA (no tqdm bar there)."""
    import stages.train.loop as loop_mod

    monkeypatch.setattr(loop_mod, "PROGRESS_LOG_INTERVAL_S", 0.0)
    src = write_source(str(tmp_path / "src"))
    with caplog.at_level(logging.INFO, logger="stages.train.loop"):
        train(tiny_cfg(log_every=1), src, [], str(tmp_path / "w"), iters=3, mode="warmup")
    lines = [r.getMessage() for r in caplog.records if r.name == "stages.train.loop"]
    assert len(lines) == 3, lines
    assert re.fullmatch(r"train warmup: step 3/3, loss \d+\.\d{4}, lr \S+, \d+\.\d\d it/s, ETA 0m00s", lines[-1])
    assert lines[0].startswith("train warmup: step 1/3")
