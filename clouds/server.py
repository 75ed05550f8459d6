"""A local Prefect server and process worker on 127.0.0.1, started and stopped together."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from clouds.prefect_env import apply_prefect_defaults
from clouds.processes import die_with_parent

POOL = "local"


class LocalPrefect:
    """Runs `prefect server start` (loopback only) and `prefect worker start --pool local`.

    Everything lives under `home` (PREFECT_HOME), so it never touches a user's own Prefect profile.
    """

    def __init__(self, port: int = 4200, home: Path = Path(".prefect"), cwd: Path | None = None, log_dir: Path | None = None):
        self.port, self.home = port, Path(home).resolve()
        self.cwd = Path(cwd or Path.cwd()).resolve()
        self.log_dir = Path(log_dir or self.home / "logs")
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(apply_prefect_defaults(dict(os.environ)))  # the worker's flow runs log to the API too
        env.update(
            PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url, PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED=env.get("PREFECT_UI_ENABLED", "true"),
            PWD=str(self.cwd),  # prefect.yaml's pull step runs the flows from here
        )
        return env

    def _prefect(self) -> str:
        exe = Path(sys.executable).with_name("prefect")
        return str(exe) if exe.exists() else (shutil.which("prefect") or "prefect")

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        """A child in its own session (`stop` signals its whole group; a terminal's Ctrl-C reaches only us),
        which also gets SIGTERM from the kernel if this process dies without stopping it (Linux)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen([self._prefect(), *args], cwd=self.cwd, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent())

    def call(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([self._prefect(), *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=die_with_parent())
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 90) -> LocalPrefect:
        """Start both; whatever stops the start-up (an error, Ctrl-C, SIGTERM) stops what was started, since
        a `with` block's exit does not run when its entry fails."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self._healthy():
            raise RuntimeError(f"something already answers on {self.api_url}; choose another --port")
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> LocalPrefect:
        self.server = self._spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.server.poll() is not None:
                raise RuntimeError(f"prefect server exited ({self.server.returncode}); see {self.log_dir / 'server.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout:.0f}s; see {self.log_dir / 'server.log'}")
            time.sleep(0.5)
        pools = self.call("work-pool", "ls").stdout
        if f" {POOL} " not in pools:
            self.call("work-pool", "create", POOL, "--type", "process")
        self.worker = self._spawn("worker", "worker", "start", "--pool", POOL)
        return self

    def deploy(self) -> str:
        return self.call("--no-prompt", "deploy", "--all").stdout

    def wait(self) -> None:
        try:
            while self.server and self.server.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        for proc in (self.worker, self.server):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.worker = self.server = None

    def __enter__(self) -> LocalPrefect:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
