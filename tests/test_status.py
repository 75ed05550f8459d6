"""`clouds status` on a real run: one full round of the micro profile, built once through the flows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifacts import COMMIT_MARKER

MICRO = str(Path(__file__).parent / "micro.yaml")
pytestmark = pytest.mark.slow

ONCE = ["data/source", "data/target-fog", "prompts", "synthesize"]
ROUND_0 = ["round-000/train", "round-000/evaluate"]
ROUND_1 = [f"round-001/{s}" for s in ("pseudo-label", "refine", "train", "evaluate")]


@pytest.fixture(scope="module")
def built(harness, tmp_path_factory) -> str:
    """The root of a run built by `clouds run full-round --round 1` (the same flows, in-process)."""
    from pipelines.clouds_flow import clouds

    root = str(tmp_path_factory.mktemp("status") / "runs")
    result = clouds(mode="full-round", config=MICRO, root=root, round=1)
    assert not any(s["reused"] for s in result["steps"]) and result["report"]
    # The flows decide reuse on the values status reads (the stage table, stages/table.py): all reused on a rerun.
    again = clouds(mode="full-round", config=MICRO, root=root, round=1)
    assert all(s["reused"] for s in again["steps"]), [s for s in again["steps"] if not s["reused"]]
    return root


def _status(root: str, overrides: list[str] | None = None, rounds: int = 1):
    from clouds.config import load_config
    from clouds.layout import RunLayout
    from pipelines.status import run_status

    cfg = load_config(MICRO, overrides)
    return run_status(cfg, RunLayout(root, cfg.run.name), rounds)


def _by_name(status) -> dict:
    return {a.name: a for a in status.artifacts}


def test_everything_is_built_right_after_the_run_in_build_order(built):
    from pipelines.status import rebuild_args

    status = _status(built)
    assert [a.name for a in status.artifacts] == [*ONCE[:2], *ROUND_0, *ONCE[2:], *ROUND_1, "report"]
    assert [(a.name, a.state, a.reasons) for a in status.artifacts if a.state != "built"] == []
    assert status.counts() == {"built": 11, "stale": 0, "missing": 0}
    assert rebuild_args(status) is None
    # Asking about two rounds: round 2 is missing, waiting on what comes before it; the report names too few.
    two = _by_name(_status(built, rounds=2))
    assert two["round-002/pseudo-label"].state == "missing" and two["round-002/pseudo-label"].reasons == ["not built yet"]
    assert two["round-002/refine"].reasons == ["waiting on round-002/pseudo-label"]
    assert two["report"].state == "stale" and "now reads round-002/pseudo-label" in two["report"].reasons[0]


def test_a_changed_train_key_is_named_and_everything_downstream_is_stale(built):
    from pipelines.status import rebuild_args

    status = _status(built, ["train.lr=0.0005"])
    by = _by_name(status)
    assert all(by[n].state == "built" for n in ONCE)
    for name in ("round-000/train", "round-001/train"):
        assert by[name].state == "stale"
        assert [(c.key, c.recorded, c.current) for c in by[name].changes] == [("train.lr", 0.001, 0.0005)]
        assert "config changed: train.lr: 0.001 -> 0.0005" in by[name].reasons
    assert by["round-000/evaluate"].reasons == ["input round-000/train is stale"]
    assert by["round-001/pseudo-label"].reasons == ["input round-000/train is stale"]
    assert by["round-001/refine"].reasons == ["input round-001/pseudo-label is stale"]
    assert by["round-001/train"].reasons[-1] == "inputs round-001/refine, round-000/train are stale"
    assert by["round-001/evaluate"].reasons == ["input round-001/train is stale"]
    assert by["report"].reasons == ["inputs round-000/train, round-000/evaluate, round-001/pseudo-label, "
                                    "round-001/refine, round-001/train, round-001/evaluate are stale"]
    assert rebuild_args(status) == ["run", "full-round", "--round", "0"]
    # A key of another stage names that stage only (and what reads it).
    refine = _by_name(_status(built, ["refine.segments=40"]))
    assert refine["round-001/refine"].reasons == ["config changed: refine.segments: 60 -> 40"]
    assert refine["round-001/pseudo-label"].state == "built" and refine["round-001/train"].state == "stale"


def test_a_lineage_without_recorded_settings_names_what_the_hash_covers(built):
    from clouds.layout import RunLayout

    marker = Path(RunLayout(built, "micro").round(0, "train")) / COMMIT_MARKER
    original = marker.read_bytes()
    try:
        lineage = json.loads(original)
        lineage["params"] = {k: v for k, v in lineage["params"].items() if k not in ("model", "train")}
        marker.write_text(json.dumps(lineage))
        train = _by_name(_status(built, ["train.lr=0.0005"]))["round-000/train"]
        assert train.state == "stale" and train.changes == []
        assert train.reasons == ["config changed (the lineage does not record the settings; the hash covers "
                                 "model, train, run.seed, the round's iterations and its input URLs)"]
    finally:
        marker.write_bytes(original)


def test_an_uncommitted_refine_is_missing_partial_and_downstream_waits_or_is_stale(built):
    from clouds.layout import RunLayout
    from pipelines.status import rebuild_args

    marker = Path(RunLayout(built, "micro").round(1, "refine")) / COMMIT_MARKER
    original = marker.read_bytes()
    marker.unlink()
    try:
        status = _status(built)
        by = _by_name(status)
        refine = by["round-001/refine"]
        assert refine.state == "missing" and refine.partial and refine.label == "missing (partial)"
        # The writer's progress record went with the commit: its shards are not resumed.
        assert refine.reasons == ["partial: 2 shard(s) but no commit marker nor progress record, a rerun starts over"]
        assert by["round-001/pseudo-label"].state == "built"
        assert by["round-001/train"].state == "stale"
        assert "input round-001/refine is missing" in by["round-001/train"].reasons
        assert by["round-001/evaluate"].reasons == ["input round-001/train is stale"]
        assert by["report"].state == "stale"
        assert rebuild_args(status) == ["run", "full-round", "--round", "1"]
    finally:
        marker.write_bytes(original)
    assert _status(built).counts()["built"] == 11


def test_partial_work_is_resumable_only_for_the_same_settings_and_inputs(built, tmp_path):
    """A stage's writer keeps complete shards of a run with its stage, config hash and input contents."""
    import numpy as np

    from artifacts import ArtifactWriter
    from clouds.layout import RunLayout
    from pipelines.status import _partial
    from stages.expected import Expected

    inputs = [RunLayout(built, "micro").round(1, "pseudo-label")]
    out = str(tmp_path / "refine")
    writer = ArtifactWriter(out, stage="refine", config_hash="h1", inputs=inputs, shard_max_samples=1)
    writer.write_shard(0, [{"__key__": "a", "png": np.zeros((4, 4, 3), np.uint8)}])
    assert _partial(Expected("refine", "refine", out, "h1", inputs)) == \
        "partial: 1 complete shard(s) kept, a rerun resumes"
    assert _partial(Expected("refine", "refine", out, "h2", inputs)) == \
        "partial: 1 shard(s) from other settings or inputs, a rerun starts over"
    assert _partial(Expected("refine", "refine", str(tmp_path / "none"), "h1", inputs)) is None


def test_a_fresh_root_is_all_missing_and_status_writes_nothing(tmp_path):
    from pipelines.status import rebuild_args

    root = tmp_path / "runs"
    status = _status(str(root))
    by = _by_name(status)
    assert {a.state for a in status.artifacts} == {"missing"} and not any(a.partial for a in status.artifacts)
    assert by["data/source"].reasons == ["not built yet"]
    assert by["round-000/evaluate"].reasons == ["waiting on round-000/train, data/target-fog"]
    assert by["round-001/pseudo-label"].reasons == ["waiting on synthesize, round-000/train"]
    assert rebuild_args(status) == ["run", "ingest"]
    assert not root.exists()


def test_cli_prints_the_table_the_json_and_the_next_command(built, tmp_path):
    from clouds.cli import app

    runner = CliRunner()
    base = ["status", "--config", MICRO, "--root", built, "--rounds", "1"]
    table = runner.invoke(app, [*base, "--set", "train.lr=0.0005"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "round-001/refine" in table.stdout and "train.lr: 0.001 -> 0.0005" in table.stdout
    assert f"next: clouds run full-round --round 0 --config {MICRO} --root {built} --set train.lr=0.0005" in table.stdout
    as_json = runner.invoke(app, [*base, "--json"])
    assert as_json.exit_code == 0, as_json.output
    info = json.loads(as_json.stdout)
    assert info["counts"] == {"built": 11, "stale": 0, "missing": 0} and info["rebuild"] is None
    assert [a["state"] for a in info["artifacts"]] == ["built"] * 11
    fresh = json.loads(runner.invoke(app, ["status", "--config", MICRO, "--root", str(tmp_path), "--json"]).stdout)
    assert fresh["rounds"] == 2 and fresh["counts"]["missing"] == 15
    assert fresh["rebuild"] == f"clouds run ingest --config {MICRO} --root {tmp_path}"
    bad = runner.invoke(app, ["status", "--config", MICRO, "--set", "refine.methd=sam"])
    assert bad.exit_code == 2 and "error:" in bad.output and "refine.methd: unknown key" in bad.output
