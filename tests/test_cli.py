"""The user-facing commands: inspect, show, run's argument checking, --help."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from artifacts import ArtifactWriter
from clouds.cli import app

runner = CliRunner()


def _artifact(path) -> str:
    w = ArtifactWriter(str(path), stage="test", config_hash="h", shard_max_samples=2)
    label = np.zeros((8, 16), np.uint8)
    label[:, 8:] = 13
    label[0, 0] = 255
    for i in range(3):
        w.write_shard(i, [{"__key__": f"k{i}", "png": np.full((8, 16, 3), 40 * i, np.uint8), "seg.png": label,
                           "teacher.seg.png": np.full((8, 16), 2, np.uint8), "json": {"domain": "sim"}}])
    w.commit({"note": "cli"})
    return str(path)


def test_inspect_json(tmp_path):
    url = _artifact(tmp_path / "a")
    result = runner.invoke(app, ["inspect", url, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["committed"] is True and info["shards"] == 3 and info["samples"] == 3
    assert info["keys"] == ["json", "png", "seg.png", "teacher.seg.png"]
    assert info["lineage"]["stats"] == {"note": "cli"}
    share = info["class_pixels"]["seg.png"]
    assert abs(share["share"]["car"] - 64 / 128) < 1e-9 and abs(share["ignore_share"] - 1 / 128) < 1e-9
    assert info["class_pixels"]["teacher.seg.png"]["share"]["building"] == 1.0


def test_inspect_table_and_uncommitted(tmp_path):
    url = _artifact(tmp_path / "a")
    result = runner.invoke(app, ["inspect", url])
    assert result.exit_code == 0 and "class pixel share" in result.stdout and "car" in result.stdout
    (tmp_path / "half").mkdir()
    bad = runner.invoke(app, ["inspect", str(tmp_path / "half")])
    assert bad.exit_code == 2 and "not a committed artifact" in bad.output
    as_json = runner.invoke(app, ["inspect", str(tmp_path / "half"), "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["committed"] is False


def test_show_writes_png(tmp_path):
    url = _artifact(tmp_path / "a")
    out = tmp_path / "s.png"
    result = runner.invoke(app, ["show", url, "--key", "k1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 200
    assert runner.invoke(app, ["show", url, "--index", "7", "--out", str(out)]).exit_code == 2
    assert runner.invoke(app, ["show", url, "--out", str(out)]).exit_code == 2
    missing = runner.invoke(app, ["show", url, "--key", "nope", "--out", str(out)])
    assert missing.exit_code == 2 and "no sample 'nope'" in missing.output


def test_run_rejects_unknown_stage_and_bad_config(tmp_path):
    bad = runner.invoke(app, ["run", "fly", "--config", "configs/tiny.yaml"])
    assert bad.exit_code == 2 and "unknown stage or mode 'fly'" in bad.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {source: {name: s, kind: toycity, domain: sim, count: 2}}\nrefine: {methd: sam}\n")
    res = runner.invoke(app, ["run", "refine", "--config", str(cfg)])
    assert res.exit_code == 2 and "refine.methd: unknown key" in res.output


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("inspect", "show", "run", "demo", "server"):
        assert command in result.stdout


def test_rounds_table_reads_committed_evaluations(tmp_path):
    from pathlib import Path

    from artifacts import commit_folder
    from clouds.cli import _rounds_table

    cfg = Path(__file__).parent / "micro.yaml"
    evaluation = tmp_path / "micro" / "round-000" / "evaluate"
    evaluation.mkdir(parents=True)
    (evaluation / "report.md").write_text("x")
    commit_folder(str(evaluation), stage="evaluate", config_hash="h", stats={"miou": {"target-fog": 0.123}})
    table = _rounds_table(cfg, str(tmp_path))
    assert [c.header for c in table.columns] == ["round", "fog", "pseudo (teacher)", "pseudo (refined)"]
    assert list(table.columns[1].cells) == ["12.3"]


def test_log_records_reach_the_stderr_of_the_moment_after_an_earlier_command(tmp_path, capsys):
    """Commands run one after another in one process (tests, notebooks): the first one's captured stderr
    is closed when it returns, and a handler bound to it printed a logging traceback instead of the record."""
    import logging

    runner.invoke(app, ["inspect", str(tmp_path / "nothing-here")])
    logging.getLogger("stages.predict").warning("after the command")
    err = capsys.readouterr().err
    assert "after the command" in err and "Logging error" not in err and "Traceback" not in err
