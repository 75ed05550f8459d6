"""A `clouds run` in a child process, stopped by a test once its training is under way."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
CLOUDS = str(Path(sys.executable).with_name("clouds"))
MICRO = HERE / "micro.yaml"


def start_training(root: Path) -> tuple[subprocess.Popen, list[str]]:
    """`clouds run full-round --round 0` on the micro profile with warm-up long enough never to end, returned
    once its first training snapshot exists; its output (stdout and stderr) collects in the list."""
    cmd = [CLOUDS, "run", "full-round", "--round", "0", "--config", str(MICRO), "--root", str(root),
           "--set", "train.warmup_iters=100000"]
    proc = subprocess.Popen(cmd, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    progress = root / "micro" / "round-000" / "train" / "_progress"
    deadline = time.monotonic() + 240
    while not progress.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "".join(lines)[-3000:]
    return proc, lines


RESUME = f"resume with: clouds run full-round --config {MICRO} --round 0"
