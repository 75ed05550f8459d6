"""The Prefect API going away mid-run: noticed within seconds, one sentence, and the CLI exits."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from training_run import RESUME, start_training

from clouds.api_watch import ApiWatchdog


def _server(status: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _watch(url: str, seconds: float, **kwargs) -> list[str]:
    lost: list[str] = []
    with ApiWatchdog(url, lost.append, interval_s=0.05, **kwargs):
        deadline = time.monotonic() + seconds
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
    return lost


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("status", [200, 401, 503])
def test_any_answer_means_the_api_is_there(status):
    server = _server(status)
    try:
        assert _watch(f"http://127.0.0.1:{server.server_port}/api", 1.0, refused_for_s=0.2, silent_for_s=0.2) == []
    finally:
        server.shutdown()


def test_the_temporary_server_exiting_is_noticed_at_the_next_probe():
    server = _server(200)
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    process.wait()
    try:
        lost = _watch(f"http://127.0.0.1:{server.server_port}/api", 5.0, process=process)
    finally:
        server.shutdown()
    assert lost == [f"Prefect's temporary API server (pid {process.pid}) exited with code 7"]


def test_refused_connections_count_after_refused_for_s():
    port = _closed_port()
    started = time.monotonic()
    lost = _watch(f"http://127.0.0.1:{port}/api", 5.0, refused_for_s=0.5)
    assert time.monotonic() - started >= 0.5
    assert len(lost) == 1 and lost[0].startswith(f"the Prefect API at http://127.0.0.1:{port}/api refuses connections")


def test_a_server_that_stops_answering_counts_only_after_silent_for_s():
    with socket.socket() as sock:  # listens (connects succeed) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        assert _watch(url, 0.6, probe_timeout_s=0.1, silent_for_s=30.0) == []
        lost = _watch(url, 5.0, probe_timeout_s=0.1, silent_for_s=0.5)
    assert len(lost) == 1 and "has not answered for" in lost[0], lost


def test_a_failed_run_is_explained_by_a_dead_api_but_not_by_a_live_one():
    lost: list[str] = []
    with pytest.raises(ConnectionError):
        with ApiWatchdog(f"http://127.0.0.1:{_closed_port()}/api", lost.append, interval_s=60):
            raise ConnectionError("what Prefect raises when its state report fails")
    assert len(lost) == 1 and "refuses connections" in lost[0]
    server = _server(200)
    try:
        lost.clear()
        with pytest.raises(ValueError):
            with ApiWatchdog(f"http://127.0.0.1:{server.server_port}/api", lost.append, interval_s=60):
                raise ValueError("bad input, nothing to do with the API")
        assert lost == []
    finally:
        server.shutdown()


@pytest.mark.slow
def test_killing_the_temporary_server_mid_training_ends_the_run_within_seconds(tmp_path):
    proc, lines = start_training(tmp_path)
    servers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "uvicorn" in " ".join(c.cmdline())]
    assert len(servers) == 1, servers
    home = servers[0].environ()["PREFECT_HOME"]
    killed = time.monotonic()
    servers[0].kill()
    rc = proc.wait(timeout=120)
    elapsed = time.monotonic() - killed
    time.sleep(0.5)
    text = "".join(lines)
    assert elapsed <= 10.0, f"exit took {elapsed:.1f} s\n{text[-3000:]}"
    assert rc == 3, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-3000:]
    assert errors[0].startswith(f"error: full-round stopped while building {tmp_path}/micro/round-000/train")
    assert "Prefect's temporary API server" in errors[0] and "exited with code -9" in errors[0]
    assert RESUME in text
    assert "Traceback" not in text
    # Prefect's exit hooks, had they run, would have started a second temporary server that outlived the CLI.
    left = [p for p in psutil.process_iter() if _prefect_home(p) == home]
    assert left == [], left
    assert not Path(home).exists()


def _prefect_home(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("PREFECT_HOME")
    except (psutil.Error, OSError):
        return None


def test_the_temporary_server_writes_to_its_log_not_to_our_terminal(tmp_path, monkeypatch):
    """Stopped while still starting (a run refused its lock at once), uvicorn printed a shutdown traceback
    above the CLI's one error line; its output now goes to a log the CLI quotes when the server fails."""
    from clouds import processes

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    log = processes.server_log_path()
    assert log.parent == tmp_path
    log.write_bytes(b"")
    child = "import sys; print('to stdout'); sys.stderr.write('to stderr\\n')"
    with open(log, "ab") as output, processes._popen_owned_by_us(output):
        proc = subprocess.Popen([sys.executable, "-c", child])
    assert proc.wait(timeout=30) == 0
    assert processes.server_log_tail().splitlines() == ["to stdout", "to stderr"]
