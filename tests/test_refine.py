"""SAM pseudo-label refinement: the algorithm pinned with a scripted predictor, the real SamPredictor path
with a tiny random SAM, the superpixel baseline, SAM loading, and the stage through memory:// artifacts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy import ndimage

from artifacts import ArtifactError, ArtifactWriter, open_artifact
from artifacts.identity import Identity, config_hash
from clouds.config import NoRefine, RefineConfig, SamRefine, SuperpixelRefine
from clouds.labels import IGNORE
from models.sam import build_tiny_sam, load_sam
from stages.evaluate.metrics import confusion_matrix, mean_iou
from stages.refine.algorithm import best_masks, compose_label, refine_with_sam
from stages.refine.components import PAD_LABEL, build_prompts, find_components, sample_points, sample_rng
from stages.refine.predictor import SamMaskPredictor
from stages.refine.stage import build_refiner, prepare_refine, refine_settings
from stages.refine.superpixel import majority_vote, refine_with_superpixels

H, W = 64, 128


def refine_here(input_url: str, output_url: str, rcfg: RefineConfig, seed: int, shard_max_samples: int, **kwargs):
    """The whole stage in this process: every pending shard, then the commit (as `clouds run` does)."""
    return prepare_refine(input_url, output_url, rcfg, seed, shard_max_samples, **kwargs).run_all()


class ScriptedPredictor:
    """Answers each component with the masks and scores the test dictates, and records every call."""

    def __init__(self, answer):
        self.answer = answer  # (points [K,N,2], labels [K,N]) -> (masks [K,M,H,W], iou [K,M])
        self.images: list[np.ndarray] = []
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def set_image(self, image: np.ndarray) -> None:
        self.images.append(image)

    def predict_batch(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((points.copy(), labels.copy()))
        return self.answer(points, labels)


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def fixed_masks(*masks: np.ndarray):
    """One single-mask answer per component, in component order."""

    def answer(points, labels):
        assert points.shape[0] == len(masks)
        return np.stack(masks)[:, None], np.ones((len(masks), 1), np.float32)

    return answer


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def cfg(**kw) -> SamRefine:
    return SamRefine(**{"min_area": 50, **kw})


def two_class_label() -> np.ndarray:
    """road (0) on the left, car (13) on the right, a 4x5 = 20 px sign (7) in the road."""
    label = np.zeros((H, W), np.uint8)
    label[:, 64:] = 13
    label[10:14, 10:15] = 7
    return label


# -- components and points ----------------------------------------------------------------------


def test_area_threshold_is_strict_and_the_fraction_overrides_it():
    label = two_class_label()
    kept, found = find_components(label, threshold=20, connectivity=4)
    assert found == 3 and [c.class_id for c in kept] == [0, 13]  # the 20 px sign is not > 20
    kept, _ = find_components(label, threshold=19, connectivity=4)
    assert [c.class_id for c in kept] == [0, 7, 13]
    prompts = build_prompts(label, threshold=5000, points_per_component=5, rng=sample_rng(0, "k"))
    assert prompts.num_components == 0
    # 5000 px would drop everything at 64x128; a share of H*W scales the rule to the image
    refined_cfg = cfg(min_area=5000, min_area_fraction=0.002)  # 16.4 px
    predictor = ScriptedPredictor(fixed_masks(rect(0, H, 0, 64), rect(10, 14, 10, 15), rect(0, H, 64, W)))
    refine_with_sam(np.zeros((H, W, 3), np.uint8), label, predictor, refined_cfg, sample_rng(0, "k"))
    assert predictor.calls[0][0].shape[0] == 3


def test_connectivity_switch():
    label = np.full((H, W), 255, np.uint8)
    label[0:10, 0:10] = 2
    label[10:20, 10:20] = 2  # touches the first square only at a corner
    assert find_components(label, 0, connectivity=4)[1] == 2
    assert find_components(label, 0, connectivity=8)[1] == 1
    with pytest.raises(ValueError, match="connectivity"):
        find_components(label, 0, connectivity=6)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_are_those_of_ndimage_label_run_class_by_class(connectivity):
    rng = np.random.default_rng(connectivity)
    label = rng.integers(0, 4, (H // 4, W // 4)).repeat(4, 0).repeat(4, 1).astype(np.uint8)
    label[rng.random((H, W)) < 0.1] = 255
    label[label == 3] = 17
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    expected = []
    for class_id in (0, 1, 2, 17):
        regions, count = ndimage.label(label == class_id, structure=structure)
        expected += [(class_id, frozenset(np.flatnonzero(regions == i))) for i in range(1, count + 1)]
    kept, found = find_components(label, threshold=0, connectivity=connectivity)
    got = [(c.class_id, frozenset(np.flatnonzero(c.full_mask(label.shape)))) for c in kept]
    assert found == len(expected) and got == expected  # same components, in (class, raster) order
    assert [c.area for c in kept] == [len(pixels) for _, pixels in expected]


def test_points_are_distinct_inside_their_component_and_padded_when_it_is_small():
    label = np.full((H, W), 255, np.uint8)
    label[5:25, 5:25] = 11
    label[40, 40:43] = 11  # a 3 px component
    prompts = build_prompts(label, threshold=0, points_per_component=5, rng=sample_rng(3, "x"))
    components, _ = find_components(label, 0)
    assert prompts.points.shape == (2, 5, 2) and prompts.labels.shape == (2, 5)
    for row, component in enumerate(components):
        full = component.full_mask(label.shape)
        real = prompts.labels[row] == 1
        pts = prompts.points[row][real].astype(int)
        assert len(pts) == min(5, component.area)
        assert len({tuple(p) for p in pts}) == len(pts)
        assert full[pts[:, 1], pts[:, 0]].all()  # (x, y) order
        assert (prompts.labels[row][~real] == PAD_LABEL).all()
    assert prompts.labels[1].tolist() == [1, 1, 1, PAD_LABEL, PAD_LABEL]


def test_points_depend_only_on_seed_and_key():
    label = two_class_label()
    a = build_prompts(label, 0, 5, sample_rng(7, "img_1")).points
    b = build_prompts(label, 0, 5, sample_rng(7, "img_1")).points
    c = build_prompts(label, 0, 5, sample_rng(7, "img_2")).points
    d = build_prompts(label, 0, 5, sample_rng(8, "img_1")).points
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    component = find_components(label, 0)[0][0]
    assert sample_points(component, 5, sample_rng(7, "img_1")).shape == (5, 2)
    with pytest.raises(ValueError, match="non-negative"):
        sample_rng(-1, "img_1")


# -- the refinement algorithm ---------------------------------------------------------------------


def test_fallback_keeps_the_teacher_label_and_never_calls_sam(image):
    label = two_class_label()
    predictor = ScriptedPredictor(fixed_masks())
    refined, stats = refine_with_sam(image, label, predictor, cfg(min_area=10**6), sample_rng(0, "k"))
    np.testing.assert_array_equal(refined, label)
    assert stats.fallback and stats.components_found == 3 and stats.components_kept == 0
    assert stats.pixels_changed == 0 and not predictor.images and not predictor.calls


def test_one_embedding_and_one_batched_call_per_image(image):
    label = two_class_label()
    predictor = ScriptedPredictor(fixed_masks(rect(0, H, 0, 64), rect(0, H, 64, W)))
    refine_with_sam(image, label, predictor, cfg(points_per_component=4), sample_rng(0, "k"))
    assert len(predictor.images) == 1 and predictor.images[0] is image
    assert len(predictor.calls) == 1
    points, labels = predictor.calls[0]
    assert points.shape == (2, 4, 2) and (labels == 1).all()


def test_masks_replace_the_teacher_union_per_class_overlaps_cleared_rest_ignored(image):
    label = np.zeros((H, W), np.uint8)  # road everywhere ...
    label[:, 40:50] = 1  # ... split in two by a sidewalk strip: road has two components
    road_left, road_right, sidewalk = rect(0, 30, 0, 45), rect(0, 30, 48, 100), rect(20, 64, 38, 52)
    predictor = ScriptedPredictor(fixed_masks(road_left, road_right, sidewalk))  # class order: 0, 0, 1
    refined, stats = refine_with_sam(image, label, predictor, cfg(), sample_rng(0, "k"))

    overlap = (road_left | road_right) & sidewalk
    assert overlap.sum() > 0 and (refined[overlap] == IGNORE).all()
    assert (refined[(road_left | road_right) & ~sidewalk] == 0).all()  # both road masks, one class
    assert (refined[sidewalk & ~road_left & ~road_right] == 1).all()
    uncovered = ~(road_left | road_right | sidewalk)
    assert (refined[uncovered] == IGNORE).all()  # teacher said road there; SAM masks replace it
    assert stats.components_kept == 3 and not stats.fallback
    assert stats.pixels_ignored == int((refined == IGNORE).sum())
    assert stats.pixels_changed == int((refined != label).sum())


def test_the_mask_with_the_highest_predicted_iou_wins(image):
    label = two_class_label()
    candidates = [rect(0, 10, 0, 10), rect(0, 20, 0, 20), rect(0, 30, 0, 30)]

    def answer(points, labels):
        masks = np.stack([np.stack(candidates), np.stack(candidates)])
        return masks, np.array([[0.2, 0.9, 0.5], [0.1, 0.2, 0.3]], np.float32)

    refined, _ = refine_with_sam(image, label, ScriptedPredictor(answer), cfg(), sample_rng(0, "k"))
    # both components answer with overlapping squares; road's pick (20x20) sits inside car's (30x30)
    assert (refined[:20, :20] == IGNORE).all() and (refined[20:30, :30] == 13).all()
    assert (refined[30:] == IGNORE).all()


def test_bad_inputs_and_bad_predictor_answers_fail_with_the_sample_named(image):
    label = two_class_label()
    predictor = ScriptedPredictor(fixed_masks(rect(0, H, 0, 64), rect(0, H, 64, W)))
    with pytest.raises(ValueError, match="img_9.*label is"):
        refine_with_sam(image, label[:, :100], predictor, cfg(), sample_rng(0, "k"), where="img_9")
    with pytest.raises(ValueError, match="img_9.*not train ids"):
        refine_with_sam(
            image, np.full((H, W), 40, np.uint8), predictor, cfg(), sample_rng(0, "k"), where="img_9"
        )
    wrong = ScriptedPredictor(lambda p, lab: (np.zeros((1, 3, H, W), bool), np.zeros((1, 3), np.float32)))
    with pytest.raises(ValueError, match="expected 2 masks"):
        refine_with_sam(image, label, wrong, cfg(), sample_rng(0, "k"))


def test_compose_label_rules():
    a, b = rect(0, 10, 0, 10), rect(5, 15, 5, 15)
    out = compose_label(np.array([4, 9]), np.stack([a, b]))
    assert out[0, 0] == 4 and out[14, 14] == 9 and out[7, 7] == IGNORE and out[40, 40] == IGNORE
    c = rect(0, 64, 8, 9)  # a third mask through both: triple and double claims are all cleared
    out = compose_label(np.array([18, 0, 4]), np.stack([a, b, c]))
    assert out[0, 0] == 18 and out[14, 14] == 0 and out[50, 8] == 4
    assert out[7, 8] == IGNORE and out[2, 8] == IGNORE and out[12, 8] == IGNORE


# -- the real SamPredictor path, with a tiny random SAM --------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam() -> torch.nn.Module:
    torch.manual_seed(0)
    return load_sam("tiny", None)


def test_sam_predictor_path_runs_and_batching_does_not_change_answers(tiny_sam, image):
    predictor = SamMaskPredictor(tiny_sam, multimask=True, select_best=False)  # predict_torch as it is
    predictor.set_image(image)
    prompts = build_prompts(two_class_label(), 0, 5, sample_rng(0, "k"))
    masks, iou = predictor.predict_batch(prompts.points, prompts.labels)
    assert masks.shape == (3, 3, H, W) and masks.dtype == bool and iou.shape == (3, 3)
    for k in range(3):  # one call per component: equal up to float32 rounding
        one_mask, one_iou = predictor.predict_batch(prompts.points[k : k + 1], prompts.labels[k : k + 1])
        np.testing.assert_allclose(one_iou[0], iou[k], rtol=1e-4, atol=1e-5)
        assert (one_mask[0] != masks[k]).mean() < 1e-3

    picking = SamMaskPredictor(tiny_sam, multimask=True)  # picks the best mask before upsampling
    picking.set_image(image)
    best, best_iou = picking.predict_batch(prompts.points, prompts.labels)
    assert best.shape == (3, 1, H, W) and best_iou.shape == (3, 1)
    np.testing.assert_array_equal(best[:, 0], best_masks(masks, iou))
    np.testing.assert_array_equal(best_iou[:, 0], iou.max(axis=1))

    refined, stats = refine_with_sam(
        image, two_class_label(), predictor, cfg(min_area_fraction=0.001), sample_rng(0, "k")
    )
    assert refined.shape == (H, W) and refined.dtype == np.uint8
    assert set(np.unique(refined).tolist()) <= {0, 7, 13, IGNORE} and stats.components_kept == 3

    single = SamMaskPredictor(tiny_sam, multimask=False)
    single.set_image(image)
    assert single.predict_batch(prompts.points, prompts.labels)[0].shape == (3, 1, H, W)


def test_sam_predictor_rejects_bad_images_and_prompts_before_an_image(tiny_sam):
    predictor = SamMaskPredictor(tiny_sam)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        predictor.set_image(np.zeros((H, W), np.uint8))
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict_batch(np.zeros((1, 5, 2), np.float32), np.ones((1, 5), np.int32))
    predictor.set_image(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="points"):
        predictor.predict_batch(np.zeros((1, 5), np.float32), np.ones((1, 5), np.int32))


# -- loading SAM ------------------------------------------------------------------------------------


def test_checkpoints_missing_required_mismatched_and_round_tripped(tmp_path):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError, match="sam_vit_b_01ec64.pth"):
        load_sam("vit_b", missing)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        load_sam("vit_h", None)
    with pytest.raises(ValueError, match="unknown SAM model type"):
        load_sam("vit_x", None)

    torch.manual_seed(1)
    saved = build_tiny_sam()
    path = tmp_path / "tiny.pth"
    torch.save(saved.state_dict(), path)
    loaded = load_sam("tiny", path)
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training

    torch.save({"image_encoder.bogus": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not match model type 'tiny'"):
        load_sam("tiny", tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_sam("tiny", tmp_path / "junk.pth")


@pytest.mark.skipif(importlib.util.find_spec("mobile_sam") is not None, reason="mobile_sam is installed")
def test_mobile_sam_missing_names_the_install_command(tmp_path):
    torch.save({}, tmp_path / "mobile_sam.pt")
    with pytest.raises(ImportError, match="github.com/ChaoningZhang/MobileSAM"):
        load_sam("vit_t", tmp_path / "mobile_sam.pt")


# -- superpixels --------------------------------------------------------------------------------


def test_majority_vote_ignores_255_and_breaks_ties_to_the_lowest_id():
    segments = np.repeat(np.array([[0, 1, 2, 3]]), 4, axis=0).repeat(2, axis=1)  # 4 vertical bands
    teacher = np.array([[5, 5, 9, 9, 255, 255, 6, 3]] * 4, np.uint8)
    teacher[0, 0] = 7  # band 0: 7 x1, 5 x7
    teacher[:, 2] = 255  # band 1: 9 x4, 255 x4 -> 9
    out = majority_vote(segments, teacher)
    assert (out[:, :2] == 5).all() and (out[:, 2:4] == 9).all()
    assert (out[:, 4:6] == IGNORE).all() and (out[:, 6:] == 3).all()  # 6 vs 3 tie, 4 each


@pytest.mark.parametrize("options", [{"algorithm": "slic", "segments": 8, "compactness": 0.1},
                                     {"algorithm": "felzenszwalb", "sigma": 0.0}], ids=["slic", "felzenszwalb"])
def test_superpixels_snap_a_noisy_teacher_to_image_edges(options):
    image = np.zeros((H, W, 3), np.uint8)
    image[:, 70:] = (240, 240, 240)
    teacher = np.zeros((H, W), np.uint8)
    teacher[:, 64:] = 10  # boundary 6 px off the real edge at x = 70
    rng = np.random.default_rng(0)
    teacher[rng.random((H, W)) < 0.05] = 255
    refined, stats = refine_with_superpixels(image, teacher, SuperpixelRefine(**options))
    assert (refined[:, :70] == 0).mean() > 0.98 and (refined[:, 70:] == 10).all()
    assert stats.superpixels >= 2 and stats.pixels_ignored == 0


# -- quality --------------------------------------------------------------------------------------


def test_miou_excludes_ignore_and_zero_union_classes():
    true = np.array([[0, 0, 1, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 255, 0]], np.uint8)
    conf = confusion_matrix(pred, true, skip_ignored_predictions=True)
    assert conf.sum() == 3 and conf[0, 0] == 1 and conf[0, 1] == 1 and conf[1, 1] == 1
    assert mean_iou(conf) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert np.isnan(mean_iou(np.zeros_like(conf)))


# -- the stage through memory:// artifacts -------------------------------------------------------


def make_teacher_artifact(url: str, shards: int = 2, per_shard: int = 2, true: bool = True) -> None:
    rng = np.random.default_rng(1)
    writer = ArtifactWriter(
        url, stage="pseudo_label", config_hash="t", params={}, shard_max_samples=per_shard
    )
    for s in range(shards):
        samples = []
        for i in range(per_shard):
            img = np.full((H, W, 3), rng.integers(0, 40), np.uint8)  # dark road, bright car
            img[:, 70:] = rng.integers(200, 256)
            gt = np.where(np.arange(W)[None, :] >= 70, 13, 0).repeat(H, 0).astype(np.uint8)
            teacher = gt.copy()
            teacher[:, 64:70] = 13  # the teacher spills over the edge
            sample = {
                "__key__": f"gen_{s}_{i}",
                "png": img,
                "seg.png": teacher,
                "conf.png": np.full((H, W), 200, np.uint8),
                "json": {"domain": "generated", "prompt": "A photo of a street"},
            }
            if true:
                sample["true.seg.png"] = gt
            samples.append(sample)
        writer.write_shard(s, samples)
    writer.commit()


def test_stage_round_trip_keeps_teacher_and_measures_quality():
    make_teacher_artifact("memory://in")
    rcfg = SuperpixelRefine(segments=16, compactness=0.1)
    art = refine_here("memory://in", "memory://out", rcfg, seed=0, shard_max_samples=2)
    source = open_artifact("memory://in")
    assert art.num_samples == 4 and len(art.shards) == 2 and art.keys == source.keys
    assert art.lineage["inputs"][0]["url"] == "memory://in"
    raw_in = {s["__key__"]: s for s in source.iter_samples(decode=False)}
    for s in art.iter_samples(decode=False):
        before = raw_in[s["__key__"]]
        assert s["teacher.seg.png"] == before["seg.png"]  # byte for byte
        assert s["png"] == before["png"] and s["true.seg.png"] == before["true.seg.png"]
        assert s["conf.png"] == before["conf.png"]
    sample = art.get("gen_1_0")
    assert sample["json"]["domain"] == "generated" and sample["json"]["refine"]["method"] == "superpixel"
    stats = art.lineage["stats"]
    assert stats["samples"] == 4 and stats["labelled_samples"] == 4 and len(stats["shards"]) == 2
    assert stats["miou_refined"] > stats["miou_teacher"]  # superpixels move the boundary to the edge
    assert stats["pixels_changed"] > 0


def test_stage_resumes_an_interrupted_run_to_the_same_result():
    make_teacher_artifact("memory://in")
    rcfg = cfg(model_type="tiny", min_area_fraction=0.01)
    seen: list[str] = []
    base = build_refiner(rcfg, seed=5)

    def counting(image, teacher, key):
        seen.append(key)
        return base(image, teacher, key)

    full = refine_here("memory://in", "memory://full", rcfg, seed=5, shard_max_samples=2, refine=counting)
    job = prepare_refine("memory://in", "memory://part", rcfg, seed=5, shard_max_samples=2, refine=counting)
    assert job.num_shards == 2 and job.pending() == [0, 1]
    job.run_shard(0)  # then the run dies
    seen.clear()
    resumed = refine_here(
        "memory://in", "memory://part", rcfg, seed=5, shard_max_samples=2, refine=counting
    )
    assert seen == ["gen_1_0", "gen_1_1"]  # only the unfinished shard was refined again
    assert resumed.lineage["stats"] == full.lineage["stats"]
    assert resumed.lineage["content_hash"] == full.lineage["content_hash"]
    assert resumed.lineage["config_hash"] == config_hash(refine_settings(rcfg, 5))
    stats = full.lineage["stats"]
    assert stats["method"] == "sam" and stats["components_kept"] >= 8 and set(stats["shards"]) == {"0", "1"}
    assert full.get("gen_0_1")["json"]["refine"]["components_kept"] >= 2

    # Committed from the same input with the same settings: the one up-to-date rule reuses it.
    assert Identity.of("refine", refine_settings(rcfg, 5), ["memory://in"]).is_current("memory://full")
    assert not Identity.of("refine", refine_settings(NoRefine(), 5), ["memory://in"]).is_current("memory://full")
    with pytest.raises(ArtifactError, match="already a committed artifact"):
        refine_here("memory://in", "memory://full", NoRefine(), seed=5, shard_max_samples=2)


def test_stage_names_the_sample_when_input_is_bad():
    writer = ArtifactWriter("memory://bad", stage="pseudo_label", config_hash="t")
    img = np.zeros((H, W, 3), np.uint8)
    writer.write_shard(0, [{"__key__": "no_label", "png": img, "json": {}}])
    writer.commit()
    with pytest.raises(ArtifactError, match="no_label.*seg.png"):
        refine_here("memory://bad", "memory://o1", NoRefine(), seed=0, shard_max_samples=4)
    writer = ArtifactWriter("memory://bad2", stage="pseudo_label", config_hash="t")
    writer.write_shard(0, [{"__key__": "small_label", "png": img, "seg.png": np.zeros((8, 8), np.uint8)}])
    writer.commit()
    with pytest.raises(ArtifactError, match="small_label.*label is"):
        refine_here("memory://bad2", "memory://o2", NoRefine(), seed=0, shard_max_samples=4)
