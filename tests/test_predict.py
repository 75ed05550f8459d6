"""`clouds predict` (stages/predict), RUN:best, the clouds/predict flow and `clouds export`, on the micro model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
import yaml
from PIL import Image
from typer.testing import CliRunner

from artifacts import ArtifactWriter, commit_folder, is_committed, open_artifact, read_lineage
from clouds.cli import app
from clouds.config import load_config
from models.build import build_segmenter
from models.checkpoint import save_checkpoint
from stages.evaluate.stage import resize_short_side
from stages.predict.checkpoints import best_round, resolve_checkpoint
from stages.predict.errors import PredictInputError
from stages.predict.inference import InferenceSettings, predict_images
from stages.predict.stage import predict, prepare_predict

runner = CliRunner()
MICRO = Path(__file__).parent / "micro.yaml"


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A committed checkpoint folder of the micro model (random weights), as the train stage leaves one."""
    torch.manual_seed(0)
    cfg = load_config(MICRO).model
    url = str(tmp_path_factory.mktemp("ckpt") / "round-000" / "train")
    save_checkpoint(url, build_segmenter(cfg), None, cfg, {"step": 0})
    commit_folder(url, stage="train", config_hash="micro")
    return url


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _folder(root: Path) -> Path:
    """PNG and JPEG files of mixed sizes, one in a subfolder, and a non-image file that is ignored."""
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_image(64, 96, 1)).save(root / "a.png")
    Image.fromarray(_image(48, 40, 2)).save(root / "b c.jpg", quality=95)
    Image.fromarray(_image(70, 50, 3)).save(root / "sub" / "d.jpeg", quality=95)
    (root / "notes.txt").write_text("not an image")
    return root


def _error_lines(output: str) -> list[str]:
    assert "Traceback" not in output
    return [line for line in output.splitlines() if line.startswith("error:")]


def _native_label(checkpoint: str, image: np.ndarray, short_side: int | None) -> np.ndarray:
    """The evaluation rule by hand: resize the short side, score, upsample the scores, argmax."""
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint)[0].eval()
    tensor, _ = resize_short_side(torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous(), None, short_side)
    scores = model.predict_scores(tensor[None].float())
    return TF.interpolate(scores, size=image.shape[:2], mode="bilinear", align_corners=False)[0].argmax(0).numpy()


def test_predict_folder_of_png_and_jpeg_of_mixed_sizes(checkpoint, tmp_path):
    folder = _folder(tmp_path / "images")
    out, overlays = str(tmp_path / "pred"), tmp_path / "overlays"
    result = runner.invoke(app, ["predict", checkpoint, str(folder), "--out", out, "--short-side", "32",
                                 "--confidence", "--overlays", str(overlays), "--device", "cpu", "-b", "2"])
    assert result.exit_code == 0, result.output
    art = open_artifact(out)
    assert sorted(art.keys) == ["a", "b_c", "sub_d"]
    samples = {s["__key__"]: s for s in art.iter_samples()}
    for key, path in [("a", "a.png"), ("b_c", "b c.jpg"), ("sub_d", "sub/d.jpeg")]:
        image = np.asarray(Image.open(folder / path).convert("RGB"))
        s = samples[key]
        assert s["seg.png"].shape == s["conf.png"].shape == image.shape[:2]
        assert s["overlay.jpg"].shape == image.shape
        assert s["seg.png"].max() < 19 and s["json"]["source"].endswith(path)
        np.testing.assert_array_equal(s["seg.png"], _native_label(checkpoint, image, 32))
    assert sorted(p.name for p in overlays.iterdir()) == ["a.jpg", "b_c.jpg", "sub_d.jpg"]
    lineage = read_lineage(out)
    assert lineage["stage"] == "predict" and lineage["inputs"][0]["url"] == checkpoint
    # The same command again reuses the committed artifact; other settings need --overwrite.
    again = runner.invoke(app, ["predict", checkpoint, str(folder), "--out", out, "--short-side", "32",
                                "--confidence", "--device", "cpu", "-b", "2"])
    assert again.exit_code == 0 and "reused" in again.output
    other = runner.invoke(app, ["predict", checkpoint, str(folder), "--out", out, "--device", "cpu"])
    assert other.exit_code == 2 and len(_error_lines(other.output)) == 1 and "--overwrite" in other.output


@pytest.mark.parametrize("recorded", [32, None])
def test_without_short_side_predict_uses_the_checkpoints_own(checkpoint, tmp_path, recorded):
    """The train stage records its profile's evaluate.short_side; predict and evaluate default to it."""
    own = str(tmp_path / "own")
    shutil.copytree(checkpoint, own)
    lineage = read_lineage(own)
    commit_folder(own, stage="train", config_hash=lineage["config_hash"],
                  stats={"inference": {"short_side": recorded}})
    image = _image(64, 96, 1)
    Image.fromarray(image).save(tmp_path / "a.png")
    result = runner.invoke(app, ["predict", own, str(tmp_path / "a.png"), "--out", str(tmp_path / "pred"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"short side: {recorded or 'native'}, the checkpoint's own" in result.output
    (sample,) = open_artifact(str(tmp_path / "pred")).iter_samples()
    np.testing.assert_array_equal(sample["seg.png"], _native_label(checkpoint, image, recorded))
    assert read_lineage(str(tmp_path / "pred"))["params"]["short_side"] == recorded
    native = runner.invoke(app, ["predict", own, str(tmp_path / "a.png"), "--out", str(tmp_path / "native"),
                                 "--short-side", "0", "--device", "cpu"])
    assert native.exit_code == 0 and "the checkpoint's own" not in native.output


def test_a_checkpoint_from_before_the_record_gets_the_reference_short_side(checkpoint):
    from stages.predict.checkpoints import recorded_short_side

    assert "inference" not in read_lineage(checkpoint).get("stats", {})
    assert recorded_short_side(checkpoint) == 1024


def test_a_bad_recorded_short_side_is_refused_naming_the_checkpoint(checkpoint, tmp_path):
    from stages.predict.checkpoints import recorded_short_side

    own = str(tmp_path / "own")
    shutil.copytree(checkpoint, own)
    commit_folder(own, stage="train", config_hash="micro", stats={"inference": {"short_side": "big"}})
    with pytest.raises(PredictInputError, match=f"checkpoint {own}.*--short-side"):
        recorded_short_side(own)


def test_predict_an_artifact_and_a_glob(checkpoint, tmp_path):
    url = str(tmp_path / "images-artifact")
    writer = ArtifactWriter(url, stage="ingest", config_hash="t", shard_max_samples=2)
    writer.write_stream([(f"k{i}", lambda i=i: {"__key__": f"k{i}", "png": _image(40 + 8 * i, 56, i)})
                         for i in range(3)])
    writer.commit()
    out = str(tmp_path / "pred")
    result = predict(checkpoint, url, out, InferenceSettings(short_side=None), device="cpu", progress=False)
    assert result["images"] == 3 and result["shards"] == 2  # one output shard per input shard
    art = open_artifact(out)
    assert art.keys == ["k0", "k1", "k2"]
    assert [s["seg.png"].shape for s in art.iter_samples()] == [(40, 56), (48, 56), (56, 56)]
    assert [i["url"] for i in read_lineage(out)["inputs"]] == [checkpoint, url]

    folder = _folder(tmp_path / "images")
    glob_out = str(tmp_path / "glob")
    predict(checkpoint, f"{folder}/**/*.jp*g", glob_out, InferenceSettings(short_side=32), device="cpu",
            progress=False)
    assert sorted(open_artifact(glob_out).keys) == ["b_c", "sub_d"]


def test_sliding_window_covering_the_image_equals_native_resize(checkpoint, tmp_path):
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint)[0].eval()
    image = _image(64, 96, 5)
    whole = predict_images(model, [image], InferenceSettings(short_side=None), 1, torch.device("cpu"))[0]
    one_window = predict_images(model, [image], InferenceSettings(mode="slide", window=96), 1, torch.device("cpu"))[0]
    np.testing.assert_array_equal(whole[0], one_window[0])
    label, conf = predict_images(model, [image], InferenceSettings(mode="slide", window=32, stride=16), 3,
                                 torch.device("cpu"))[0]
    assert label.shape == conf.shape == (64, 96) and label.max() < 19


def test_resume_keeps_complete_shards(checkpoint, tmp_path):
    folder = _folder(tmp_path / "images")
    out = str(tmp_path / "pred")
    settings = InferenceSettings(short_side=32)
    first = prepare_predict(checkpoint, str(folder), out, settings, shard_size=1, device="cpu", progress=False)
    first.run_shard(0)
    first.run_shard(1)  # ... then the run is interrupted before shard 2 and the commit
    kept = {n: (tmp_path / "pred" / n).stat().st_mtime_ns for n in ("shard-000000.tar", "shard-000001.tar")}
    assert not is_committed(out)
    second = prepare_predict(checkpoint, str(folder), out, settings, shard_size=1, device="cpu", progress=False)
    assert second.pending() == [2]
    assert second.run_all()["images"] == 3
    assert {n: (tmp_path / "pred" / n).stat().st_mtime_ns for n in kept} == kept
    assert sorted(open_artifact(out).keys) == ["a", "b_c", "sub_d"]
    # Other settings are another artifact: the partial work of a different run is not mixed in.
    third_out = str(tmp_path / "pred2")
    prepare_predict(checkpoint, str(folder), third_out, settings, shard_size=1, device="cpu", progress=False).run_shard(0)
    fourth = prepare_predict(checkpoint, str(folder), third_out, InferenceSettings(short_side=48), shard_size=1,
                             device="cpu", progress=False)
    assert fourth.pending() == [0, 1, 2]


def _truncated_png(path: Path) -> None:
    Image.fromarray(_image(64, 64, 9)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_bad_input_gets_one_error_line(checkpoint, tmp_path):
    def fails(args: list[str], *expected: str) -> None:
        result = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "out"), "--device", "cpu"])
        assert result.exit_code == 2, result.output
        lines = _error_lines(result.output)
        assert len(lines) == 1, result.output
        for text in expected:
            assert text in result.output, result.output

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    Image.fromarray(_image(32, 32, 1)).save(corrupt / "good.png")
    _truncated_png(corrupt / "broken.png")
    fails([checkpoint, str(corrupt), "--short-side", "32"], "broken.png", "corrupt or truncated")
    (tmp_path / "empty").mkdir()
    fails([checkpoint, str(tmp_path / "empty")], "holds no image files")
    (tmp_path / "labels.csv").write_text("a,b\n")
    fails([checkpoint, str(tmp_path / "labels.csv")], "labels.csv is not an image file")
    (tmp_path / "fake.png").write_text("hello")
    fails([checkpoint, str(tmp_path / "fake.png")], "fake.png: not a readable image")
    fails([checkpoint, str(tmp_path / "nowhere")], "does not exist")
    half = ArtifactWriter(str(tmp_path / "half"), stage="ingest", config_hash="t")
    half.write_shard(0, [{"__key__": "k", "png": _image(8, 8, 0)}])  # an artifact that was never committed
    fails([checkpoint, str(tmp_path / "half")], "is not a committed artifact")
    images = _folder(tmp_path / "images")
    fails([str(tmp_path / "images"), str(images)], "is not a committed artifact", "hint:")
    predict(checkpoint, str(images / "a.png"), str(tmp_path / "a-pred"), InferenceSettings(short_side=32),
            device="cpu", progress=False)
    fails([str(tmp_path / "a-pred"), str(images)], "is not a checkpoint folder")
    other = tmp_path / "other-arch"
    shutil.copytree(checkpoint, other)
    config = json.loads((other / "model.json").read_text())
    config["decoder"]["hidden_dim"] = 64  # model.json of another architecture than the weights
    (other / "model.json").write_text(json.dumps(config))
    commit_folder(str(other), stage="train", config_hash="other")
    fails([str(other), str(images)], "another architecture")
    fails(["nosuchrun:best", "--root", str(tmp_path), str(images)], "does not exist")


def _fake_run(root: Path, checkpoint: str, scores: dict[int, dict[str, float]]) -> None:
    """A run folder whose round k holds the checkpoint and an evaluation with mIoU `scores[k]`."""
    for k, miou in scores.items():
        base = root / "demo" / f"round-{k:03d}"
        shutil.copytree(checkpoint, base / "train")
        (base / "evaluate").mkdir(parents=True)
        (base / "evaluate" / "report.md").write_text(f"round {k}")
        commit_folder(str(base / "evaluate"), stage="evaluate", config_hash=f"e{k}", stats={"miou": miou})


def test_run_best_picks_the_round_with_the_best_mean_target_miou(checkpoint, tmp_path):
    _fake_run(tmp_path, checkpoint, {0: {"fog": 0.2, "night": 0.5}, 1: {"fog": 0.5, "night": 0.4},
                                     2: {"fog": 0.4, "night": 0.3}})
    best = best_round("demo", str(tmp_path))
    assert (best.round, best.score) == (1, pytest.approx(0.45))
    assert resolve_checkpoint("demo:best", str(tmp_path))[0] == str(tmp_path / "demo" / "round-001" / "train")
    assert best_round("demo", str(tmp_path), "night").round == 0
    assert best_round(str(tmp_path / "demo"), "elsewhere").round == 1  # a run folder spelled out
    with pytest.raises(PredictInputError, match="no target 'rain'"):
        best_round("demo", str(tmp_path), "rain")
    shutil.copytree(checkpoint, tmp_path / "unscored" / "round-000" / "train")
    with pytest.raises(PredictInputError, match="has no round with a committed evaluation"):
        best_round("unscored", str(tmp_path))
    images = _folder(tmp_path / "images")
    result = runner.invoke(app, ["predict", "demo:best", str(images / "a.png"), "--root", str(tmp_path),
                                 "--out", str(tmp_path / "pred"), "--short-side", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "round 1" in result.output
    assert read_lineage(str(tmp_path / "pred"))["inputs"][0]["url"].endswith("round-001/train")


def test_predict_deployment_wires_the_stage(checkpoint, tmp_path):
    deployments = {d["name"]: d for d in yaml.safe_load(Path("prefect.yaml").read_text())["deployments"]}
    entry = deployments["predict"]
    module, name = entry["entrypoint"].split(":")
    assert module == "pipelines/predict_flow.py" and {"checkpoint", "inputs", "out"} <= set(entry["parameters"])
    from pipelines import predict_flow

    flow = getattr(predict_flow, name)
    assert flow.name == "clouds"  # listed as clouds/predict
    images = _folder(tmp_path / "images")
    result = flow.fn(checkpoint=checkpoint, inputs=str(images), out=str(tmp_path / "pred"), short_side=32,
                     device="cpu")
    assert result["images"] == 3 and is_committed(str(tmp_path / "pred"))


def test_export_round_trips_with_identical_predictions(checkpoint, tmp_path):
    from models.checkpoint import load_checkpoint
    from stages.export.formats import load_safetensors_export, load_torchscript_export

    _fake_run(tmp_path, checkpoint, {0: {"fog": 0.2}, 1: {"fog": 0.6}})
    ckpt = str(tmp_path / "demo" / "round-001" / "train")
    images = torch.from_numpy(np.stack([_image(64, 96, s) for s in range(3)])).permute(0, 3, 1, 2).float()
    reference = load_checkpoint(ckpt)[0].eval().predict(images)

    out = tmp_path / "export" / "micro.safetensors"
    result = runner.invoke(app, ["export", "demo:best", "--root", str(tmp_path), "--format", "safetensors",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, meta = load_safetensors_export(out)
    assert meta["checkpoint"] == ckpt
    assert torch.equal(model.predict(images), reference)
    card = (tmp_path / "export" / "micro.md").read_text()
    assert "| 1 (this model) | 60.00 | 60.00 |" in card and "train config hash: `micro`" in card
    assert "- backbone: open_clip `clouds-tiny-convnext`" in card

    out = tmp_path / "export" / "micro.torchscript.pt"
    result = runner.invoke(app, ["export", ckpt, "--format", "torchscript", "--size", "64", "96", "--out", str(out)])
    assert result.exit_code == 0, result.output
    module, meta = load_torchscript_export(out)
    assert meta["input_size"] == [64, 96]
    with torch.no_grad():
        traced = torch.cat([module(image[None]).argmax(1) for image in images])
    assert torch.equal(traced, reference)

    bad = runner.invoke(app, ["export", ckpt, "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    assert bad.exit_code == 2 and len(_error_lines(bad.output)) == 1 and "safetensors, torchscript, onnx" in bad.output
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)  # as where the onnx extra is not installed
        bad = runner.invoke(app, ["export", ckpt, "--format", "onnx", "--size", "64", "96",
                                  "--out", str(tmp_path / "m.onnx")])
    assert bad.exit_code == 2 and len(_error_lines(bad.output)) == 1 and "pip install 'clouds[onnx]'" in bad.output


def test_onnx_export_matches_pytorch_within_tolerance(checkpoint, tmp_path):
    """ONNX scores within 1e-3 (max abs, checked on 3 images by the export itself), and the same labels."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from models.checkpoint import load_checkpoint
    from stages.export.onnx_format import TOLERANCE

    out = tmp_path / "micro.onnx"
    result = runner.invoke(app, ["export", checkpoint, "--format", "onnx", "--size", "64", "96", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max abs score difference" in result.output and "Checked against PyTorch" in (tmp_path / "micro.md").read_text()
    model = load_checkpoint(checkpoint)[0].eval()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for seed in range(3):
        image = torch.from_numpy(_image(64, 96, 10 + seed).copy()).permute(2, 0, 1)[None].float()
        expected = model.predict_scores(image)
        got = torch.from_numpy(session.run(None, {"images": image.numpy()})[0])
        assert (expected - got).abs().max().item() <= TOLERANCE
        assert torch.equal(got.argmax(1), expected.argmax(1))


def test_evaluate_a_checkpoint_on_a_profile_an_artifact_and_a_dataset_folder(checkpoint, tmp_path):
    from tests.fixtures_datasets import make_cityscapes

    profile = yaml.safe_load(MICRO.read_text())
    profile["data"]["targets"] = [{"name": "target-fog", "kind": "toycity", "domain": "fog", "count": 2, "seed": 3,
                                   "height": 64, "width": 96}]
    config = tmp_path / "profile.yaml"
    config.write_text(yaml.safe_dump(profile))
    out = str(tmp_path / "eval")
    result = runner.invoke(app, ["evaluate", checkpoint, "--data", str(config), "--out", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "target-fog: mIoU" in result.output
    lineage = read_lineage(out)
    assert lineage["stage"] == "evaluate" and set(lineage["files"]) >= {"per_class.parquet", "summary.parquet",
                                                                         "report.md", "iou.png"}
    assert lineage["stats"]["average"] == {"target-fog": "gt-present"}

    # The ingested target, given as an artifact: scored the same, its averaging rule read from its lineage.
    again = runner.invoke(app, ["evaluate", checkpoint, "--data", str(tmp_path / "eval-data" / "target-fog"),
                                "--out", str(tmp_path / "eval2"), "--short-side", "0", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert read_lineage(str(tmp_path / "eval2"))["stats"]["miou"] == lineage["stats"]["miou"]
    # Without --short-side and a profile: the side the checkpoint's own profile evaluates at.
    own = str(tmp_path / "own")
    shutil.copytree(checkpoint, own)
    commit_folder(own, stage="train", config_hash="micro", stats={"inference": {"short_side": 48}})
    scored = runner.invoke(app, ["evaluate", own, "--data", str(tmp_path / "eval-data" / "target-fog"),
                                 "--out", str(tmp_path / "eval-own"), "--device", "cpu"])
    assert scored.exit_code == 0, scored.output
    assert read_lineage(str(tmp_path / "eval-own"))["params"]["short_side"] == 48

    fx = make_cityscapes(tmp_path / "datasets", "val", 2)
    city = runner.invoke(app, ["evaluate", checkpoint, "--data", str(fx.root), "--kind", "cityscapes",
                               "--out", str(tmp_path / "eval3"), "--short-side", "32", "--device", "cpu"])
    assert city.exit_code == 0, city.output
    assert read_lineage(str(tmp_path / "eval3"))["stats"]["average"] == {"cityscapes": "union"}
    no_kind = runner.invoke(app, ["evaluate", checkpoint, "--data", str(fx.root), "--out", str(tmp_path / "e4")])
    assert no_kind.exit_code == 2 and len(_error_lines(no_kind.output)) == 1 and "--kind" in no_kind.output
