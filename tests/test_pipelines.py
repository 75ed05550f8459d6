"""The whole loop in-process through Prefect (temporary local server, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifacts import is_committed, open_artifact, read_lineage

MICRO = str(Path(__file__).parent / "micro.yaml")
pytestmark = pytest.mark.slow


def test_loop_commits_everything_and_reuses_on_rerun(harness, tmp_path):
    from pipelines.clouds_flow import clouds
    from pipelines.layout import RunLayout

    root = str(tmp_path / "runs")
    first = clouds(mode="loop", config=MICRO, root=root)
    layout = RunLayout(root, "micro")
    assert first["rounds"] == 2
    assert not any(s["reused"] for s in first["steps"])
    expected = [layout.data("source"), layout.data("target-fog"), layout.once("prompts"), layout.once("synthesize")]
    expected += [layout.round(0, s) for s in ("train", "evaluate")]
    expected += [layout.round(k, s) for k in (1, 2) for s in ("pseudo-label", "refine", "train", "evaluate")]
    for url in expected:
        assert is_committed(url), url

    # Lineage links: each stage names the artifacts it read, with their content hashes.
    def inputs(url: str) -> set[str]:
        return {i["url"] for i in read_lineage(url)["inputs"]}

    assert inputs(layout.once("synthesize")) == {layout.once("prompts")}
    assert inputs(layout.round(1, "pseudo-label")) == {layout.once("synthesize"), layout.round(0, "train")}
    assert inputs(layout.round(2, "pseudo-label")) == {layout.once("synthesize"), layout.round(1, "train")}
    assert inputs(layout.round(1, "refine")) == {layout.round(1, "pseudo-label")}
    assert layout.round(1, "refine") in inputs(layout.round(1, "train"))
    assert layout.round(0, "train") in inputs(layout.round(1, "train"))

    refined = open_artifact(layout.round(1, "refine"))
    sample = next(refined.iter_samples())
    assert {"seg.png", "teacher.seg.png", "true.seg.png", "json"} <= set(sample)
    report = Path(first["report"])
    assert report.exists() and "Target-domain mIoU" in report.read_text()

    again = clouds(mode="loop", config=MICRO, root=root)
    assert all(s["reused"] for s in again["steps"]), [s for s in again["steps"] if not s["reused"]]

    # Changing one stage's config reruns it and what reads its output; a stage whose inputs' contents
    # come out unchanged (e.g. a train span that drew no generated image) stops the cascade there.
    weights_before = read_lineage(layout.round(1, "train"))["content_hash"]
    changed = clouds(mode="loop", config=MICRO, root=root, overrides=["refine.superpixel_segments=40"])
    rebuilt = {s["url"] for s in changed["steps"] if not s["reused"]}
    upstream = set(expected[:6]) | {layout.round(1, "pseudo-label")}
    assert {layout.round(1, "refine"), layout.round(1, "train"), layout.round(2, "refine"), layout.round(2, "train")} <= rebuilt
    assert not rebuilt & upstream
    weights_changed = read_lineage(layout.round(1, "train"))["content_hash"] != weights_before
    assert (layout.round(2, "pseudo-label") in rebuilt) == weights_changed
    assert (layout.round(1, "evaluate") in rebuilt) == weights_changed
    summary = json.loads((Path(root) / "micro" / "round-002" / "evaluate" / "_COMMITTED.json").read_text())
    assert summary["stage"] == "evaluate"
