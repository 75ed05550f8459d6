"""A real Prefect server on 127.0.0.1, a process worker, `prefect deploy --all`, and a deployment run."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import psutil
import pytest

from artifacts import is_committed
from clouds.server import LocalPrefect

REPO = Path(__file__).resolve().parent.parent
MICRO = str(Path(__file__).parent / "micro.yaml")
pytestmark = [pytest.mark.server, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deployment_run_full_round(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    # The worker (started with this environment) asks for scheduled runs every second instead of every 10 s.
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")
    local = LocalPrefect(port=free_port(), home=tmp_path / "prefect", cwd=REPO)
    with local:
        out = local.deploy()
        assert "full-round" in out
        names = local.call("deployment", "ls").stdout
        for name in ("full-round", "loop", "ingest", "prompts", "synthesize", "pseudo-label", "refine", "train", "evaluate"):
            assert name in names
        params = json.dumps({"config": MICRO, "root": str(root), "round": 1})
        done = subprocess.run(
            [local._prefect(), "deployment", "run", "clouds/full-round", "--params", params, "--watch",
             "--watch-timeout", "900"],
            cwd=REPO, env=local.env, capture_output=True, text=True, timeout=960,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Completed" in done.stdout
        # The project's loggers reach the run's logs in Prefect (the UI, `prefect flow-run logs`).
        logs: list[str] = []
        while True:
            body = json.dumps({"limit": 200, "offset": len(logs)}).encode()
            request = urllib.request.Request(f"{local.api_url}/logs/filter", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                page = [entry["message"] for entry in json.load(reply)]
            if not page:
                break
            logs += page
        assert any(m.startswith("train warmup: step ") and " it/s, ETA " in m for m in logs), logs[-20:]
        assert any("evaluate target-fog: mIoU" in m for m in logs), logs[-20:]
        assert any(m.startswith("synthesize: shard 0 done, ") and ", ETA " in m for m in logs), logs[-20:]
        # The server only ever listens on loopback.
        hosts = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == local.port}
        assert hosts == {"127.0.0.1"}, hosts
    assert local.server is None and local.worker is None
    for stage in ("pseudo-label", "refine", "train", "evaluate"):
        assert is_committed(str(root / "micro" / "round-001" / stage)), stage
    assert (root / "micro" / "report" / "index.html").exists()
