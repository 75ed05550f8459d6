"""The whole loop in-process through Prefect (temporary local server, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifacts import is_committed, open_artifact, read_lineage

MICRO = str(Path(__file__).parent / "micro.yaml")
pytestmark = pytest.mark.slow


def test_loop_commits_everything_and_reuses_on_rerun(harness, tmp_path):
    from clouds.layout import RunLayout
    from pipelines.clouds_flow import clouds

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
    changed = clouds(mode="loop", config=MICRO, root=root, overrides=["refine.segments=40"])
    rebuilt = {s["url"] for s in changed["steps"] if not s["reused"]}
    upstream = set(expected[:6]) | {layout.round(1, "pseudo-label")}
    assert {layout.round(1, "refine"), layout.round(1, "train"), layout.round(2, "refine"), layout.round(2, "train")} <= rebuilt
    assert not rebuilt & upstream
    weights_changed = read_lineage(layout.round(1, "train"))["content_hash"] != weights_before
    assert (layout.round(2, "pseudo-label") in rebuilt) == weights_changed
    assert (layout.round(1, "evaluate") in rebuilt) == weights_changed
    summary = json.loads((Path(root) / "micro" / "round-002" / "evaluate" / "_COMMITTED.json").read_text())
    assert summary["stage"] == "evaluate"


def _counting_job(num_shards: int, bad: int | None = None):
    """A job whose shards record how many of them run at once, and which ones started."""
    import threading
    import time

    from stages.sharded import ShardedJob

    lock, seen = threading.Lock(), {"now": 0, "peak": 0, "started": []}

    def shard(i: int) -> int:
        with lock:
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
            seen["started"].append(i)
        time.sleep(0.2)
        with lock:
            seen["now"] -= 1
        if i == bad:
            raise ValueError(f"shard {i} is bad")
        return 10 * i

    return ShardedJob(num_shards=num_shards, run_shard=shard, finish=lambda results: results), seen


def test_local_shards_run_at_most_local_workers_at_once_and_stop_after_a_failure(harness):
    """Prefect's thread pool alone would start all 8 shards at once (8 batches of one model in memory)."""
    from prefect import flow

    from pipelines.tasks import run_local

    @flow
    def shards(job, pending: list[int], workers: int) -> dict[int, int]:
        return run_local(job, pending, workers)

    job, seen = _counting_job(8)
    assert shards(job, list(range(8)), 2) == {i: 10 * i for i in range(8)}
    assert seen["peak"] == 2

    job, seen = _counting_job(10, bad=3)
    with pytest.raises(ValueError, match="shard 3 is bad"):
        shards(job, list(range(10)), 2)
    assert seen["now"] == 0  # every started shard finished before the error was raised
    assert len(seen["started"]) <= 5 and 9 not in seen["started"], seen["started"]
