"""Three `clouds run` commands at once on a machine whose cores are busy: each finishes, or is refused by
the run lock with one `error:` line; none dies starting Prefect or fighting over its database."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artifacts import is_committed

HERE = Path(__file__).parent
CLOUDS = str(Path(sys.executable).with_name("clouds"))
pytestmark = pytest.mark.slow


def _burn() -> None:
    while True:
        pass


def test_three_runs_at_once_beside_cpu_burners(tmp_path):
    burners = [mp.get_context("spawn").Process(target=_burn, daemon=True) for _ in range(os.cpu_count() or 2)]
    for b in burners:
        b.start()
    try:
        cmd = [CLOUDS, "run", "ingest", "--config", str(HERE / "micro.yaml"), "--root", str(tmp_path)]
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
        procs = [subprocess.Popen(cmd, cwd=HERE.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(3)]
        outputs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for b in burners:
            b.terminate()
    finished = 0
    for proc, out in zip(procs, outputs, strict=True):
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        if proc.returncode == 0:
            finished += 1
            assert not errors, out[-2000:]
        else:
            assert proc.returncode == 2, out[-3000:]
            assert len(errors) == 1 and "another run is using" in errors[0], out[-3000:]
            assert "Traceback" not in out, out[-3000:]
    assert finished >= 1
    assert is_committed(str(tmp_path / "micro" / "data" / "source"))
