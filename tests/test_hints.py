"""The one-line fix printed under an `error:` line."""

from __future__ import annotations

from clouds.config import load_config
from clouds.hints import Invocation, builder_of, hint_for

HOW = Invocation(config="configs/tiny.yaml", root="/tmp/r", overrides=("train.lr=0.01",))


def test_a_missing_input_artifact_names_the_command_that_builds_it():
    assert builder_of("/tmp/r/tiny/round-002/refine", HOW) == (
        "clouds run full-round --config configs/tiny.yaml --round 2 --root /tmp/r --set train.lr=0.01")
    assert builder_of("/tmp/r/tiny/round-000/train/", HOW).startswith("clouds run full-round --config configs/tiny.yaml --round 0")
    assert builder_of("s3://b/r/tiny/data/target-fog", HOW).startswith("clouds run ingest ")
    assert builder_of("/tmp/r/tiny/synthesize", HOW).startswith("clouds run synthesize ")
    assert builder_of("/elsewhere/thing", HOW) is None
    message = "refine failed: /tmp/r/tiny/round-001/pseudo-label is not a committed artifact (no _COMMITTED.json)"
    assert hint_for(message, None, HOW) == f"build it first: {builder_of('/tmp/r/tiny/round-001/pseudo-label', HOW)}"


def test_a_missing_dataset_folder_names_its_config_key():
    cfg = load_config("configs/gta5.yaml")
    message = "ingest failed: bdd10k target-bdd images: folder /data/bdd10k/images/10k/val does not exist"
    assert hint_for(message, cfg, HOW) == ("point data.targets.1.root at the dataset (docs/DATASETS.md has the "
                                           "layout): --set data.targets.1.root=/path/to/it")
    assert "data.source.root" in hint_for("x: folder /data/gta5/images does not exist", cfg, HOW)


def test_device_and_prefect_startup_and_unknown_errors():
    assert "run.device=cpu" in hint_for("run.device is 'cuda' but no CUDA device is available", None, HOW)
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in hint_for(
        "RuntimeError: Timed out while attempting to connect to ephemeral Prefect API server.", None, HOW)
    assert hint_for("something nobody planned for", None, HOW) is None
