"""Fault injection: SIGKILL a stage at chosen points, rerun it, and get the artifact of an uninterrupted run.

Each stage runs in a subprocess (tests/faults/run_stage.py) that kills itself with SIGKILL at a precise
point (mid-shard, between shards, tar in place without its part file, during the commit) or is killed from
here while it writes a shard. After every kill no reader may see an artifact; after the final rerun the
commit marker (content hash, manifest sha256, counts, statistics) equals the one of an uninterrupted run and
every sample is there exactly once. A watcher thread polls the output folder the whole time: any artifact
it manages to open must already be the final one. The run lock tests live here too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from artifacts import ArtifactError, is_committed, open_artifact, read_lineage, verify_folder

HERE = Path(__file__).parent
MICRO = str(HERE / "micro.yaml")
RUNNER = str(HERE / "faults" / "run_stage.py")
REPO = HERE.parent

# Kill points per stage, in order; each run resumes what the killed ones left. "poll:NAME" kills from
# outside once NAME appears in the output folder (the runner sleeps after each sample to let us see it).
SEQUENCES = {
    "ingest": ["sample:2", "tar-moved:1", "shard:1", "poll:.shard-000001.tar.tmp", "marker-tmp"],
    "synthesize": ["sample:3", "shard:1", "marker"],
    "pseudo-label": ["sample:5", "marker"],
    "refine": ["tar-moved:1", "shard:2"],
    # train: killed mid-snapshot (folder written, pointer not), then at the commit after a snapshot was
    # saved, so the final run resumes from that snapshot.
    "train": ["pointer", "marker"],
}


def _load_runner() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fault_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """Uninterrupted runs of every stage (each the next one's input), through the runner's own code path."""
    from clouds.config import load_config
    from clouds.layout import RunLayout
    from stages.prompts.stage import write_prompts

    root = str(tmp_path_factory.mktemp("faults") / "runs")
    cfg = load_config(MICRO)
    layout = RunLayout(root, cfg.run.name)
    runner = _load_runner()
    urls = {
        "ingest": layout.data(cfg.data.source.name), "train": layout.round(0, "train"),
        "synthesize": layout.once("synthesize"), "pseudo-label": layout.round(1, "pseudo-label"),
        "refine": layout.round(1, "refine"),
    }
    runner.run_stage("ingest", MICRO, root, urls["ingest"])
    runner.run_stage("train", MICRO, root, urls["train"])
    write_prompts(layout.once("prompts"), cfg.prompts, cfg.run.seed, shard_max_samples=cfg.artifacts.shard_max_samples)
    for stage in ("synthesize", "pseudo-label", "refine"):
        runner.run_stage(stage, MICRO, root, urls[stage])
    return {"root": root, **urls}


class Watcher:
    """Polls a folder as a reader would, recording what it saw; a partial artifact must never open."""

    def __init__(self, url: str, folder_artifact: bool):
        self.url, self.folder_artifact = url, folder_artifact
        self.seen: list[tuple[int, dict[str, Any]]] = []
        self.errors: list[str] = []
        self.run_index = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            try:
                if self.folder_artifact:
                    seen = verify_folder(self.url)
                else:
                    art = open_artifact(self.url)
                    keys = [s["__key__"] for s in art.iter_samples(decode=False, verify=True)]
                    seen = {**art.lineage, "read_keys": keys}
            except ArtifactError as err:
                if "not a committed artifact" not in str(err) and "does not exist" not in str(err):
                    self.errors.append(str(err))
                continue
            self.seen.append((self.run_index, seen))
            return

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _run(stage: str, root: str, out: str, fault: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDS_FAULT")}
    args = [sys.executable, RUNNER, stage, MICRO, root, out]
    if fault is None or not fault.startswith("poll:"):
        if fault:
            env["CLOUDS_FAULT"] = fault
        return subprocess.run(args, env=env, cwd=REPO, capture_output=True, timeout=300).returncode
    target = Path(out) / fault.split(":", 1)[1]
    proc = subprocess.Popen(args, env={**env, "CLOUDS_FAULT_DELAY": "0.3"}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def _assert_same_checkpoint(out: str, ref: str) -> None:
    """Weights bit-identical; train state equal value by value (torch.save stamps each file with a random
    serialization id, so its bytes differ); the metrics log equal except its wall-clock columns."""
    import torch

    from stages.train.checkpoints import read_metrics, read_train_state

    mine, theirs = read_lineage(out)["files"], read_lineage(ref)["files"]
    assert sorted(mine) == sorted(theirs)
    assert any(f.endswith(".safetensors") for f in mine)
    differing = [f for f in mine if mine[f] != theirs[f] and f not in ("train_state.pt", "metrics.parquet")]
    assert not differing, f"train resumed after SIGKILLs differs from an uninterrupted run in {differing}"

    def same(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for k in a:
                same(a[k], b[k], f"{where}/{k}")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{where}[{i}]")
        elif isinstance(a, torch.Tensor):
            assert torch.equal(a, b), where
        else:
            assert a == b, where

    same(read_train_state(out), read_train_state(ref), "train_state")
    clock = ("time_s", "it_per_s")
    strip = [[{k: v for k, v in r.items() if k not in clock} for r in read_metrics(u)] for u in (out, ref)]
    assert strip[0] == strip[1] and strip[0]
    assert not (Path(out) / "_progress").exists()


def _marker(url: str) -> dict[str, Any]:
    return {k: v for k, v in read_lineage(url).items() if k != "committed_at"}


@pytest.mark.parametrize("stage", list(SEQUENCES))
def test_sigkill_at_every_point_then_rerun_equals_uninterrupted_run(reference, stage, tmp_path):
    out, ref = str(tmp_path / stage), reference[stage]
    folder_artifact = stage == "train"
    with Watcher(out, folder_artifact) as watcher:
        for i, fault in enumerate(SEQUENCES[stage]):
            watcher.run_index = i
            rc = _run(stage, reference["root"], out, fault)
            assert rc == -signal.SIGKILL, f"{stage}: run with fault {fault} was not killed (rc {rc})"
            assert not is_committed(out), f"{stage}: committed after being killed at {fault}"
            with pytest.raises(ArtifactError, match="not a committed artifact|does not exist"):
                (verify_folder if folder_artifact else open_artifact)(out)
        watcher.run_index = len(SEQUENCES[stage])
        assert _run(stage, reference["root"], out, None) == 0
        deadline = time.monotonic() + 10
        while not watcher.seen and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not watcher.errors, watcher.errors
    assert [i for i, _ in watcher.seen] == [len(SEQUENCES[stage])], "a reader opened the artifact before the final run"

    if folder_artifact:
        _assert_same_checkpoint(out, ref)
        return
    assert _marker(out) == _marker(ref)
    art = open_artifact(out)
    keys = art.keys
    assert len(keys) == len(set(keys)) == art.num_samples == open_artifact(ref).num_samples
    assert keys == open_artifact(ref).keys
    assert watcher.seen[0][1]["read_keys"] == keys  # every sample, once, in manifest order, hashes verified
    leftovers = [p.name for p in Path(out).iterdir() if p.name.startswith((".", "_IN_PROGRESS", "_parts"))]
    assert not leftovers, leftovers


# -- the run lock ---------------------------------------------------------------------------------------

HOLD = """
import sys, time
from pipelines.lock import RunLock
lock = RunLock(sys.argv[1], note="holder").acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(base: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, base], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path, caplog):
    from pipelines.lock import LOCK_NAME, RunLock, RunLockedError

    base = str(tmp_path / "runs" / "micro")
    proc = _holder(base)
    try:
        with pytest.raises(RunLockedError) as refused:
            RunLock(base).acquire()
        message = str(refused.value)
        assert f"pid {proc.pid}" in message and socket.gethostname() in message and "started 20" in message
        assert "delete the lock file" in message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The holder crashed without releasing: its pid is gone, so the lock is taken over at once, with a warning.
    assert (Path(base) / LOCK_NAME).exists()
    with caplog.at_level(logging.WARNING, logger="pipelines.lock"):
        with RunLock(base) as lock:
            assert lock.read().pid == os.getpid()
    assert f"process {proc.pid} is no longer running" in caplog.text
    assert not (Path(base) / LOCK_NAME).exists()  # released on exit


def _foreign_lock(path: Path, heartbeat_age: float) -> None:
    now = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 1, "host": "another-host.example", "started": now - 7200,
                                "heartbeat": now - heartbeat_age, "token": "x"}))


def test_lock_of_another_host_is_taken_over_only_when_its_heartbeat_is_stale(tmp_path, caplog):
    from pipelines.lock import LOCK_NAME, RunLock, RunLockedError

    base = tmp_path / "run"
    _foreign_lock(base / LOCK_NAME, heartbeat_age=5)
    with pytest.raises(RunLockedError, match="pid 1 on host another-host.example"):
        RunLock(str(base), stale_after=60).acquire()
    _foreign_lock(base / LOCK_NAME, heartbeat_age=120)
    with caplog.at_level(logging.WARNING, logger="pipelines.lock"):
        with RunLock(str(base), stale_after=60):
            pass
    assert "heartbeat is 120 s old" in caplog.text


def test_heartbeat_keeps_a_long_run_alive_and_unreadable_locks_do_not_stick(tmp_path):
    from pipelines.lock import LOCK_NAME, RunLock, RunLockedError

    base = str(tmp_path / "run")
    with RunLock(base, stale_after=0.4) as lock:
        first = lock.read().heartbeat
        time.sleep(0.6)  # longer than stale_after: only the heartbeat keeps the lock live
        assert lock.read().heartbeat > first
        with pytest.raises(RunLockedError):
            RunLock(base, stale_after=0.4).acquire()
    (tmp_path / "run" / LOCK_NAME).write_text('{"pid": ')  # a writer killed mid-write
    with RunLock(base):
        pass


def test_lock_on_a_non_local_filesystem(tmp_path):
    from pipelines.lock import RunLock, RunLockedError

    with RunLock("memory://runs/micro") as lock:
        assert lock.read().pid == os.getpid()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock("memory://runs/micro").acquire()
    with RunLock("memory://runs/micro"):
        pass


@pytest.mark.slow
def test_cli_refuses_a_second_run_of_the_same_root_and_name(harness, tmp_path):
    # `harness`: without it the flow started Prefect's temporary server inside CliRunner's captured
    # streams, and stopping it at exit logged a "--- Logging error ---" traceback under the test summary.
    from typer.testing import CliRunner

    from clouds.cli import app

    root = str(tmp_path / "runs")
    proc = _holder(f"{root}/micro")
    try:
        result = CliRunner().invoke(app, ["run", "ingest", "--config", MICRO, "--root", root])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert result.exit_code == 2, result.output
    assert "another run is using" in result.output and f"pid {proc.pid}" in result.output
    assert not (Path(root) / "micro" / "data").exists()  # refused before any stage ran
