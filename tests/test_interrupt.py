"""Ctrl-C during `clouds run`: the CLI is gone within 5 s and says where it stopped and how to resume."""

from __future__ import annotations

import signal
import time

import psutil
import pytest
from training_run import RESUME, start_training

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_exits_within_5_s_with_the_resume_command(tmp_path, signum):
    proc, lines = start_training(tmp_path)
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
    assert stopped[0].endswith(f"{RESUME} --root {tmp_path} --set train.warmup_iters=100000")
    assert "Traceback" not in text
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
