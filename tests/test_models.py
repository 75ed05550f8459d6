"""The segmenter models: tiny random-weight CLIP towers built through open_clip + transformers' Mask2Former."""

from __future__ import annotations

import math
import uuid

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from clouds.config.model import BackboneConfig, ModelConfig
from clouds.labels import CLASS_NAMES, IGNORE, NUM_CLASSES
from models.backbone import create_clip, register_model_configs
from models.build import build_segmenter, tiny_model_config
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.ema import EmaTeacher, make_teacher
from models.heads import geometric_ensemble
from models.loss import IgnoreAwareMask2FormerLoss, StandardMask2FormerLoss, build_criterion, semantic_targets
from models.mask2former import mask2former_config
from models.text_classifier import CLASS_SYNONYMS, PROMPT_TEMPLATES

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _build(seed: int = 0, **kwargs: object):
    torch.manual_seed(seed)
    return build_segmenter(tiny_model_config(**kwargs))


def _batch(seed: int = 0, h: int = 128, w: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose colour encodes the label, so a decoder can actually learn them."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(2, h, w, dtype=torch.long)
    labels[:, : h // 2] = 10  # sky on top
    labels[:, h // 2 :, : w // 2] = 0  # road bottom-left
    labels[:, h // 2 :, w // 2 :] = 13  # car bottom-right
    labels[1, :8] = IGNORE
    colours = torch.zeros(NUM_CLASSES + 1, 3)
    colours[10], colours[0], colours[13] = torch.tensor([70.0, 130, 180]), torch.tensor([128.0, 64, 128]), torch.tensor([0.0, 0, 142])
    images = colours[labels.clamp(max=NUM_CLASSES)].permute(0, 3, 1, 2) + 10 * torch.rand(2, 3, h, w, generator=g)
    return images, labels


def _mem_url() -> str:
    return f"memory://ckpt-{uuid.uuid4().hex}"


# ---------------------------------------------------------------- backbone


@pytest.mark.parametrize(
    ("name", "channels"),
    [("clouds-tiny-convnext", [40, 80, 160, 320]), ("clouds-tiny-rn", [64, 128, 256, 512])],
)
def test_tiny_backbone_gives_strides_4_to_32(name: str, channels: list[int]) -> None:
    model = _build(backbone=name)
    bb = model.backbone
    assert bb.channels == channels and bb.strides == [4, 8, 16, 32]
    feats = bb(bb.normalize(torch.rand(2, 3, 128, 256) * 255))
    assert [tuple(f.shape) for f in feats] == [(2, c, 128 // s, 256 // s) for c, s in zip(channels, bb.strides, strict=True)]


def test_tiny_config_is_registered_with_open_clip() -> None:
    register_model_configs()
    assert {"clouds-tiny-convnext", "clouds-tiny-rn"} <= set(open_clip.list_models())
    clip = open_clip.create_model("clouds-tiny-convnext", pretrained=None)
    assert clip.visual.trunk.stem is not None and len(clip.visual.trunk.stages) == 4


def test_pretrained_local_file_is_loaded(tmp_path) -> None:
    torch.manual_seed(1)
    source = open_clip.create_model("clouds-tiny-convnext", pretrained=None)
    path = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_segmenter(ModelConfig(backbone=BackboneConfig(name="clouds-tiny-convnext", pretrained=str(path)),
                                        decoder=tiny_model_config().decoder))
    for k, v in source.visual.state_dict().items():
        assert torch.equal(model.backbone.visual.state_dict()[k], v), k


def test_missing_pretrained_file_names_it() -> None:
    missing = "/nonexistent/dir/clip_weights.safetensors"
    with pytest.raises(FileNotFoundError, match="clip_weights.safetensors"):
        create_clip(BackboneConfig(name="clouds-tiny-convnext", pretrained=missing))
    with pytest.raises(ValueError, match="no-such-tag"):
        create_clip(BackboneConfig(name="convnext_large_d_320", pretrained="no-such-tag"))
    with pytest.raises(ValueError, match="not an open_clip model"):
        create_clip(BackboneConfig(name="no-such-model", pretrained=None))


def test_frozen_backbone_stays_frozen_under_train() -> None:
    model = _build()
    model.train()
    assert model.training and model.decoder.training
    assert not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    assert not any(p.requires_grad for p in model.backbone.parameters())
    feats = model.backbone(model.backbone.normalize(torch.rand(1, 3, 64, 64) * 255))
    assert not any(f.requires_grad for f in feats)


# ---------------------------------------------------------------- training


def test_forward_loss_is_finite_and_grads_reach_only_the_decoder() -> None:
    model = _build()
    model.train()
    images, labels = _batch()
    out = model(images, labels)
    assert set(out) == {"loss", "loss_ce", "loss_mask", "loss_dice"}
    assert all(torch.isfinite(v) for v in out.values())
    assert torch.allclose(out["loss"].detach(), out["loss_ce"] + out["loss_mask"] + out["loss_dice"])
    out["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    decoder_params = [p for p in model.decoder.parameters() if p.requires_grad]
    with_grad = [p for p in decoder_params if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) > 0.9 * len(decoder_params)


def test_unfrozen_backbone_is_trained() -> None:
    cfg = tiny_model_config()
    cfg.backbone.freeze = False
    torch.manual_seed(0)
    model = build_segmenter(cfg)
    model.train()
    assert model.backbone.training
    images, labels = _batch()
    model(images, labels)["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_overfits_one_batch() -> None:
    model = _build(seed=3)
    model.train()
    images, labels = _batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model(images, labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    pred = model.predict(images)
    valid = labels != IGNORE
    assert (pred[valid] == labels[valid]).float().mean() > 0.9


def test_all_ignore_labels_do_not_crash() -> None:
    model = _build()
    model.train()
    images, _ = _batch()
    labels = torch.full((2, 128, 256), IGNORE, dtype=torch.long)
    out = model(images, labels)
    assert torch.isfinite(out["loss"])
    assert out["loss_mask"] == 0 and out["loss_dice"] == 0
    out["loss"].backward()


def test_bad_labels_fail_loudly() -> None:
    model = _build()
    images, labels = _batch()
    labels[0, 0, 0] = 42
    with pytest.raises(ValueError, match="42"):
        model(images, labels)
    with pytest.raises(ValueError, match="do not match"):
        model(images, labels[:, :64])
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        model.predict(images[:, :1])


def test_semantic_targets_one_mask_per_present_class() -> None:
    labels = torch.tensor([[[0, 0, 5], [255, 5, 5]], [[255, 255, 255], [255, 255, 255]]])
    masks, classes, valid = semantic_targets(labels, NUM_CLASSES)
    assert classes[0].tolist() == [0, 5] and classes[1].numel() == 0
    assert masks[0].tolist() == [[[1, 1, 0], [0, 0, 0]], [[0, 0, 1], [0, 1, 1]]]
    assert masks[1].shape == (0, 2, 3)
    assert valid.tolist() == [[[True, True, True], [False, True, True]], [[False] * 3] * 2]


def _ignore_half_case(right: float) -> tuple[torch.Tensor, torch.Tensor, list, list, torch.Tensor]:
    """Left half labelled car (7), right half 255; query 0 predicts the left half, and `right` on the right.

    Stride-4 logits: column 8 is bilinearly blended into the last labelled pixels, so the prediction varies
    only from column 9 on, i.e. strictly inside the ignored half."""
    labels = torch.full((1, 64, 64), IGNORE, dtype=torch.long)
    labels[:, :, :32] = 7
    masks, classes, valid = semantic_targets(labels, NUM_CLASSES)
    class_logits = torch.full((1, 16, NUM_CLASSES + 1), -5.0)
    class_logits[..., NUM_CLASSES] = 5.0
    class_logits[0, 0, 7], class_logits[0, 0, NUM_CLASSES] = 5.0, -5.0
    m = torch.full((1, 16, 16, 16), -8.0)
    m[0, 0, :, :8] = 8.0
    m[0, 0, :, 9:] = right
    return m, class_logits, masks, classes, valid


def _losses(ignore_pixels: str, right: float) -> dict[str, torch.Tensor]:
    config = mask2former_config(tiny_model_config().decoder, NUM_CLASSES, [4, 8, 16, 32])
    weights = {"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    torch.manual_seed(0)
    return build_criterion(config, weights, ignore_pixels)(*_ignore_half_case(right))


def test_excluded_loss_ignores_255_pixels() -> None:
    """'excluded': a mask that is wrong only on ignored pixels costs nothing extra."""
    good, bad = _losses("excluded", -8.0), _losses("excluded", 8.0)
    assert torch.allclose(good["loss_mask"], bad["loss_mask"], atol=1e-3)
    assert torch.allclose(good["loss_dice"], bad["loss_dice"], atol=1e-3)
    assert good["loss_mask"] < 0.2


def test_negative_loss_treats_255_pixels_as_negatives_like_the_reference() -> None:
    """'negative' (reference): predicting the mask positive on 255 pixels costs more than under 'excluded',
    and the default is exactly transformers' stock Mask2FormerLoss."""
    neg_good, neg_bad = _losses("negative", -8.0), _losses("negative", 8.0)
    exc_bad = _losses("excluded", 8.0)
    assert neg_bad["loss_mask"] > neg_good["loss_mask"] + 1.0
    assert neg_bad["loss_dice"] > neg_good["loss_dice"] + 0.1
    assert neg_bad["loss_mask"] > exc_bad["loss_mask"] + 1.0
    assert neg_bad["loss_dice"] > exc_bad["loss_dice"] + 0.1
    config = mask2former_config(tiny_model_config().decoder, NUM_CLASSES, [4, 8, 16, 32])
    weights = {"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    m, c, masks, classes, _ = _ignore_half_case(8.0)
    torch.manual_seed(0)
    stock = Mask2FormerLoss(config, weights)(m, c, masks, classes)
    for key in ("loss_mask", "loss_dice", "loss_cross_entropy"):
        assert torch.equal(stock[key], neg_bad[key]), key


def test_segmenter_builds_the_configured_loss() -> None:
    assert ModelConfig().loss.ignore_pixels == "negative"
    assert isinstance(_build().criterion, StandardMask2FormerLoss)
    cfg = tiny_model_config()
    cfg.loss.ignore_pixels = "excluded"
    torch.manual_seed(0)
    assert isinstance(build_segmenter(cfg).criterion, IgnoreAwareMask2FormerLoss)
    with pytest.raises(ValueError, match="ignore_pixels"):
        ModelConfig.model_validate({"loss": {"ignore_pixels": "skip"}})


# ---------------------------------------------------------------- inference


def test_predict_shapes_and_inference_mode() -> None:
    model = _build()
    images = torch.rand(2, 3, 100, 200) * 255  # not a multiple of 32: padded inside, cropped back
    scores = model.predict_scores(images)
    assert scores.shape == (2, NUM_CLASSES, 100, 200) and scores.is_inference()
    assert torch.all(scores >= 0)
    pred = model.predict(images)
    assert pred.shape == (2, 100, 200) and pred.dtype == torch.long
    assert int(pred.max()) < NUM_CLASSES


def test_text_head_builds_with_tiny_text_tower() -> None:
    model = _build(kind="text")
    text = model.decoder.text_classifier
    assert text.embeddings.shape == (sum(len(s) for s in CLASS_SYNONYMS), 64)
    assert torch.allclose(text.embeddings.norm(dim=-1), torch.ones(len(text.embeddings)), atol=1e-5)
    images, labels = _batch()
    model.train()
    out = model(images, labels)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.decoder.class_head.logit_scale.grad is not None
    assert model.predict_scores(images).shape == (2, NUM_CLASSES, 128, 256)


def test_class_prompts_follow_the_reference() -> None:
    assert len(PROMPT_TEMPLATES) == 14
    assert tuple(s[0] for s in CLASS_SYNONYMS) == CLASS_NAMES


@pytest.mark.parametrize("backbone", ["clouds-tiny-convnext", "clouds-tiny-rn"])
def test_ensemble_switch_changes_scores(backbone: str) -> None:
    plain = _build(backbone=backbone)
    ens = _build(backbone=backbone, ensemble=True)
    ens.decoder.load_state_dict(plain.decoder.state_dict(), strict=False)
    ens.backbone.load_state_dict(plain.backbone.state_dict())
    images = torch.rand(1, 3, 128, 128) * 255
    a, b = plain.predict_scores(images), ens.predict_scores(images)
    assert a.shape == b.shape and torch.isfinite(b).all()
    assert not torch.allclose(a, b)


def test_geometric_ensemble_math() -> None:
    torch.manual_seed(0)
    dec, clip = torch.randn(2, 5, NUM_CLASSES + 1), torch.randn(2, 5, NUM_CLASSES)
    void = dec.softmax(-1)[..., -1:]
    only_decoder = geometric_ensemble(dec, clip, alpha=0.0).exp()
    assert torch.allclose(only_decoder[..., :-1], dec[..., :-1].softmax(-1) * (1 - void), atol=1e-6)
    only_clip = geometric_ensemble(dec, clip, alpha=1.0).exp()
    assert torch.allclose(only_clip[..., :-1], clip.softmax(-1) * (1 - void), atol=1e-6)
    mixed = geometric_ensemble(dec, clip, alpha=0.4).exp()[..., :-1] / (1 - void)
    expected = dec[..., :-1].softmax(-1) ** 0.6 * clip.softmax(-1) ** 0.4
    assert torch.allclose(mixed, expected / expected.sum(-1, keepdim=True), atol=1e-6)
    off = geometric_ensemble(dec, clip, alpha=1.0, valid=torch.zeros(2, 5, dtype=torch.bool)).exp()
    assert torch.allclose(off, only_decoder, atol=1e-6)


# ---------------------------------------------------------------- EMA


def test_ema_math_alpha_and_period() -> None:
    student = _build()
    ema = EmaTeacher(student, alpha=0.9, period=3)
    name, t0 = next(iter(ema.teacher.decoder.named_parameters()))
    t0 = t0.detach().clone()
    with torch.no_grad():
        for p in student.decoder.parameters():
            p.add_(1.0)
    s = dict(student.decoder.named_parameters())[name].detach().clone()
    assert ema.update(4) is False
    assert torch.equal(dict(ema.teacher.decoder.named_parameters())[name], t0)
    assert ema.update(6) is True
    t1 = dict(ema.teacher.decoder.named_parameters())[name]
    assert torch.allclose(t1, 0.9 * t0 + 0.1 * s, atol=1e-6)
    ema.update(9)
    assert torch.allclose(dict(ema.teacher.decoder.named_parameters())[name], 0.9 * (0.9 * t0 + 0.1 * s) + 0.1 * s,
                          atol=1e-6)


def test_ema_teacher_shares_the_backbone_and_is_frozen() -> None:
    student = _build()
    ema = EmaTeacher(student, alpha=0.999, period=100)
    assert ema.teacher.backbone is student.backbone
    assert ema.teacher.decoder is not student.decoder
    assert not any(p.requires_grad for p in ema.teacher.decoder.parameters())
    assert not ema.teacher.training
    shared = {id(p) for p in student.decoder.parameters()} & {id(p) for p in ema.teacher.decoder.parameters()}
    assert not shared
    state = ema.state_dict()
    other = EmaTeacher(student, alpha=0.999, period=100)
    with torch.no_grad():
        for p in other.teacher.decoder.parameters():
            p.zero_()
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), state.values(), strict=True))
    with pytest.raises(ValueError, match="alpha"):
        EmaTeacher(student, alpha=1.5, period=1)
    with pytest.raises(ValueError, match="period"):
        EmaTeacher(student, alpha=0.9, period=0)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_roundtrip_gives_identical_predictions() -> None:
    student = _build()
    ema = EmaTeacher(student, alpha=0.5, period=1)
    with torch.no_grad():
        for p in student.decoder.parameters():
            p.mul_(1.01)
    ema.update(1)
    url = _mem_url()
    save_checkpoint(url, student, ema.teacher, student.cfg, {"iteration": 7, "round": 1})
    torch.manual_seed(123)  # a different seed: nothing may depend on rebuilding the same random init
    s2, t2, cfg2, extra = load_checkpoint(url)
    assert cfg2 == student.cfg and extra == {"iteration": 7, "round": 1}
    assert t2 is not None and t2.backbone is s2.backbone
    images = torch.rand(2, 3, 128, 160) * 255
    assert torch.equal(student.predict_scores(images), s2.predict_scores(images))
    assert torch.equal(ema.teacher.predict_scores(images), t2.predict_scores(images))
    assert not torch.equal(s2.predict_scores(images), t2.predict_scores(images))
    resumed = EmaTeacher(s2, alpha=0.5, period=1, teacher=t2)
    assert resumed.teacher is t2


def test_checkpoint_of_another_architecture_lists_keys() -> None:
    student = _build()
    url = _mem_url()
    save_checkpoint(url, student, None, student.cfg, {})
    other = tiny_model_config()
    other.decoder.num_queries = 8
    other.decoder.decoder_layers = 3
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(url, cfg=other)
    message = str(err.value)
    assert "student_decoder.safetensors" in message
    assert "transformer_module.queries_features.weight" in message  # shape mismatch 16 vs 8 queries
    assert "transformer_module.decoder.layers.2." in message  # a layer the smaller decoder lacks


def test_checkpoint_missing_files_are_named() -> None:
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_checkpoint(_mem_url())
    student = _build()
    url = _mem_url()
    save_checkpoint(url, student, None, student.cfg, {})
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.rm(f"{root}/student_decoder.safetensors")
    with pytest.raises(FileNotFoundError, match="student_decoder.safetensors"):
        load_checkpoint(url)
    with pytest.raises(ValueError, match="json-able"):
        save_checkpoint(_mem_url(), student, None, student.cfg, {"bad": object()})


def test_frozen_pretrained_backbone_is_not_saved(tmp_path) -> None:
    torch.manual_seed(1)
    source = open_clip.create_model("clouds-tiny-convnext", pretrained=None)
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    cfg = tiny_model_config()
    cfg.backbone.pretrained = str(weights)
    student = build_segmenter(cfg)
    save_checkpoint(str(tmp_path / "ckpt"), student, make_teacher(student), cfg, {"iteration": 1})
    save_checkpoint(str(tmp_path / "ckpt"), student, None, cfg, {"iteration": 2})  # overwrite in place
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "backbone.json", "extra.json", "model.json", "student_decoder.safetensors"]
    s2, t2, _, extra = load_checkpoint(str(tmp_path / "ckpt"))
    assert t2 is None and extra == {"iteration": 2}
    images = torch.rand(1, 3, 64, 96) * 255
    assert torch.equal(student.predict_scores(images), s2.predict_scores(images))
    assert math.isfinite(float(s2.predict_scores(images).sum()))


def test_linear_checkpoint_can_be_evaluated_with_the_clip_ensemble() -> None:
    student = _build()
    url = _mem_url()
    save_checkpoint(url, student, None, student.cfg, {})
    cfg = tiny_model_config(ensemble=True)
    s2, _, cfg2, _ = load_checkpoint(url, cfg=cfg)
    assert cfg2.head.ensemble and s2.decoder.text_classifier is not None
    assert s2.predict_scores(torch.rand(1, 3, 64, 64) * 255).shape == (1, NUM_CLASSES, 64, 64)
