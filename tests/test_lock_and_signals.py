"""The run lock fences its writers, and every process the CLI starts ends with it.

- A live holder on this host is never taken over, even when its heartbeat looks stale (SIGSTOP).
- A holder whose lock was taken stops before its next shard and before its commit, naming the new holder.
- `clouds run` and `clouds server` sent SIGTERM leave no child process behind (Prefect's temporary
  uvicorn server; the server and worker of `clouds server`).
- Shards, manifest and commit marker are fsynced before their rename, and their folder after it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from artifacts import ArtifactWriter

HERE = Path(__file__).parent
REPO = HERE.parent
MICRO = str(HERE / "micro.yaml")
CLOUDS = str(Path(sys.executable).with_name("clouds"))

HOLD = """
import sys, time
from pipelines.lock import RunLock
lock = RunLock(sys.argv[1], stale_after=float(sys.argv[2]), note="holder").acquire()
print("held", flush=True)
time.sleep(120)
"""


def _sample(key: str) -> dict:
    return {"__key__": key, "png": np.full((4, 4, 3), 7, np.uint8), "json": {"domain": "sim"}}


def _steal(lock_file: Path) -> None:
    """Another run takes the lock (as a takeover from another host would): a different owner and token."""
    now = time.time()
    lock_file.write_text(json.dumps({"pid": 4242, "host": "other-host.example", "started": now, "heartbeat": now,
                                     "token": "someone-else", "note": "clouds full-round"}))


def _lock_lost(err: BaseException) -> bool:
    return type(err).__name__ == "RunLockLostError"


# -- point 4: the lock does not give up a live holder, and a holder that lost it stops writing ------------------

def test_a_stopped_holder_on_this_host_is_not_taken_over_while_its_process_lives(tmp_path):
    from pipelines.lock import LOCK_NAME, RunLock, RunLockedError

    base = str(tmp_path / "runs" / "micro")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, base, "0.5"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)  # its heartbeat thread stops too
        time.sleep(1.5)  # three times its stale_after: by its heartbeat alone the lock looks abandoned
        before = json.loads((Path(base) / LOCK_NAME).read_text())
        assert time.time() - before["heartbeat"] > 1.0
        with pytest.raises(RunLockedError) as refused:
            RunLock(base, stale_after=0.5).acquire()
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and "is alive" in message and f"kill -CONT {holder.pid}" in message
        assert json.loads((Path(base) / LOCK_NAME).read_text())["token"] == before["token"]  # still the holder's
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.send_signal(signal.SIGCONT)
        holder.wait()
    # Its pid gone, the lock is free at once; and a live pid whose start time differs is a recycled pid.
    with RunLock(base, stale_after=0.5) as lock:
        assert lock.read().pid == os.getpid()
    recycled = {"pid": os.getpid(), "host": socket.gethostname(), "started": 0.0, "heartbeat": time.time(),
                "token": "old", "proc_start": "1"}
    (Path(base) / LOCK_NAME).write_text(json.dumps(recycled))
    with RunLock(base) as lock:
        assert lock.read().token != "old"


def test_an_exiting_process_drops_only_its_own_lock(tmp_path):
    """The CLI's last resort when it exits without unwinding: its own lock goes, a recycled pid's stays."""
    from pipelines.lock import LOCK_NAME, RunLock, drop_own_lock

    base = str(tmp_path / "runs" / "micro")
    lock = RunLock(base).acquire()
    lock._stop.set()  # as if the process were about to os._exit: no release will run
    assert drop_own_lock(base) and not (Path(base) / LOCK_NAME).exists()
    assert not drop_own_lock(base)  # nothing left to drop
    recycled = {"pid": os.getpid(), "host": socket.gethostname(), "started": 0.0, "heartbeat": time.time(),
                "token": "old", "proc_start": "1"}
    (Path(base) / LOCK_NAME).write_text(json.dumps(recycled))
    assert not drop_own_lock(base) and (Path(base) / LOCK_NAME).exists()


def test_a_holder_that_lost_its_lock_stops_before_its_next_shard_and_before_its_commit(tmp_path):
    from pipelines.lock import LOCK_NAME, RunLock, RunLockedError

    base = tmp_path / "runs" / "micro"
    out = base / "data" / "source"
    with RunLock(str(base)) as lock:
        writer = ArtifactWriter(str(out), stage="test", config_hash="h", shard_max_samples=2)
        writer.write_shard(0, [_sample("a"), _sample("b")])

        def taken_mid_shard():  # the takeover happens while shard 1 is being written
            yield _sample("c")
            _steal(base / LOCK_NAME)
            yield _sample("d")

        with pytest.raises(RunLockedError) as mid:
            writer.write_shard(1, taken_mid_shard())
        assert _lock_lost(mid.value)
        message = str(mid.value)
        assert str(base / LOCK_NAME) in message and "pid 4242 on host other-host.example" in message
        assert "shard-000001.tar" in message and "Restart this run" in message
        assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tar") or p.name.endswith(".tmp")) == [
            "shard-000000.tar"]  # neither the shard nor its temporary file

        with pytest.raises(RunLockedError) as next_shard:  # the next shard does not even start
            writer.write_shard(2, [_sample("e")])
        assert _lock_lost(next_shard.value) and not (out / ".shard-000002.tar.tmp").exists()
        with pytest.raises(RunLockedError) as stream:
            writer.write_stream([("f", lambda: _sample("f"))])
        assert _lock_lost(stream.value)
        with pytest.raises(RunLockedError) as commit:
            writer.commit()
        assert _lock_lost(commit.value) and "the commit of" in str(commit.value)
        assert not (out / "_COMMITTED.json").exists() and not (out / "manifest.parquet").exists()
        with pytest.raises(RunLockedError):  # a new stage does not clear its folder either
            ArtifactWriter(str(base / "round-001" / "refine"), stage="test", config_hash="h")
        assert lock.read().token == "someone-else"
    # The lock was not ours at release: the new holder's file stays. Outside the run nothing is fenced.
    assert json.loads((base / LOCK_NAME).read_text())["token"] == "someone-else"
    writer.write_shard(1, [_sample("c"), _sample("d")])
    assert writer.commit().num_samples == 4


# -- point 5: signals and crashes --------------------------------------------------------------------------------

def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[str]:
    """Those still running (is_running also checks the start time, so a reused pid does not count)."""
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline()[:6])}")
        except psutil.NoSuchProcess:
            pass
    return alive


def _terminate_and_check(proc: subprocess.Popen, children: list[psutil.Process], timeout: float = 90) -> int:
    """SIGTERM the CLI, wait for it, and assert none of `children` outlived it (killing any that did)."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        deadline = time.monotonic() + 5  # a child the kernel signalled as its parent died may need a moment
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = _alive(children)
        for p in children:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
    assert not orphans, f"left running after SIGTERM: {orphans}"
    return rc


@pytest.mark.slow
def test_clouds_run_sent_sigterm_leaves_no_child_process(tmp_path):
    root = tmp_path / "runs"
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([CLOUDS, "run", "full-round", "--config", MICRO, "--root", str(root)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cli, lock = psutil.Process(proc.pid), root / "micro" / "_RUN_LOCK.json"
    deadline = time.monotonic() + 240
    while not (lock.exists() and _descendants(cli)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the flow holds the run lock: Prefect's temporary server is up and a stage is running
    children = _descendants(cli)
    assert proc.poll() is None and children, "the run ended or never started its flow"
    assert any("uvicorn" in " ".join(c.cmdline()) for c in children)
    rc = _terminate_and_check(proc, children)
    err = proc.stderr.read()
    assert rc == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped: SIGTERM received" in err
    assert not lock.exists()  # released on the way out


@pytest.mark.slow
@pytest.mark.server
def test_clouds_server_sent_sigterm_stops_its_server_and_worker(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen([CLOUDS, "server", "--port", str(port), "--home", str(tmp_path / "prefect"), "--no-deploy"],
                            cwd=REPO, env={**env, "PREFECT_UI_ENABLED": "false"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cli = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:  # the worker is started after the server is healthy
        if any("worker" in c.cmdline() for c in _descendants(cli)):
            break
        time.sleep(0.2)
    children = _descendants(cli)
    assert proc.poll() is None and any("worker" in c.cmdline() for c in children), "server or worker never started"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
        assert r.status == 200
    _terminate_and_check(proc, children)


def test_marker_manifest_and_shards_are_fsynced_before_their_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename
    out = tmp_path / "art"

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(out)):
            events.append(("fsync", path))
        real_fsync(fd)

    def rename(src, dst, *args, **kwargs) -> None:
        real_rename(src, dst, *args, **kwargs)
        if str(src).startswith(str(out)):
            events.append(("rename", f"{src} -> {dst}"))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    writer = ArtifactWriter(str(out), stage="test", config_hash="h")
    writer.write_shard(0, [_sample("a")])
    writer.commit()
    for name in ("shard-000000.tar", "manifest.parquet", "_COMMITTED.json"):
        tmp, final = str(out / f".{name}.tmp"), str(out / name)
        moved = events.index(("rename", f"{tmp} -> {final}"))
        assert ("fsync", tmp) in events[:moved], f"{name} renamed into place before it was fsynced: {events}"
        assert ("fsync", str(out)) in events[moved + 1:], f"{out} not fsynced after {name} was renamed into it"
