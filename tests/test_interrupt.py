"""Ctrl-C during `clouds run`: the CLI is gone within 5 s and says where it stopped and how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

HERE = Path(__file__).parent
CLOUDS = str(Path(sys.executable).with_name("clouds"))
pytestmark = pytest.mark.slow


def _start(tmp_path: Path) -> tuple[subprocess.Popen, list[str]]:
    cmd = [CLOUDS, "run", "full-round", "--round", "0", "--config", str(HERE / "micro.yaml"), "--root",
           str(tmp_path), "--set", "train.warmup_iters=100000"]
    proc = subprocess.Popen(cmd, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_exits_within_5_s_with_the_resume_command(tmp_path, signum):
    proc, lines = _start(tmp_path)
    progress = tmp_path / "micro" / "round-000" / "train" / "_progress"
    deadline = time.monotonic() + 240
    while not progress.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the first snapshot exists: training is under way
    assert proc.poll() is None, "".join(lines)[-3000:]
    children = psutil.Process(proc.pid).children(recursive=True)
    sent = time.monotonic()
    proc.send_signal(signum)
    rc = proc.wait(timeout=60)
    elapsed = time.monotonic() - sent
    time.sleep(0.5)
    text = "".join(lines)
    assert elapsed <= 5.0, f"exit took {elapsed:.1f} s\n{text[-3000:]}"
    assert rc == 128 + signum, text[-3000:]
    stopped = [line for line in text.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1, text[-3000:]
    assert f"{signal.Signals(signum).name} received while building {tmp_path}/micro/round-000/train" in stopped[0]
    assert stopped[0].endswith(f"resume with: clouds run full-round --config {HERE / 'micro.yaml'} --round 0 "
                               f"--root {tmp_path} --set train.warmup_iters=100000")
    assert "Traceback" not in text
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
