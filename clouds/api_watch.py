"""Notice within seconds that the Prefect API a run reports to has gone, instead of training on for hours.

When Prefect's temporary server died mid-run (killed, out of memory), nothing noticed: training went on
(it makes no API call between steps), and at the end of the stage Prefect retried its state reports
against a dead server for minutes, then hung at exit draining its event queue. The watchdog probes the
API from a daemon thread and calls `on_lost` with one sentence saying what happened; the CLI prints it and
exits. Nothing is lost by exiting: every artifact is written under a temporary name and renamed when
complete, and the rerun resumes from the last committed shard or snapshot.

"Gone" has to survive a busy machine, where a healthy server can take seconds to answer:
- the temporary server is our child process: its exit is certain, and noticed within a probe interval;
- connection refused means nothing listens on the port any more: gone after `refused_for_s`;
- any other failure (timeouts, resets) only after `silent_for_s` without a single answer.
Any HTTP answer counts as alive, whatever its status: a server that says 401 or 503 is still there.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

REFUSED_FOR_S = 10.0
SILENT_FOR_S = 60.0


class ApiWatchdog:
    """Probe `api_url` (and the temporary server's process, if given) every `interval_s` seconds."""

    def __init__(
        self,
        api_url: str,
        on_lost: Callable[[str], None],
        process: subprocess.Popen[Any] | None = None,
        interval_s: float = 1.0,
        probe_timeout_s: float = 5.0,
        refused_for_s: float = REFUSED_FOR_S,
        silent_for_s: float = SILENT_FOR_S,
    ):
        self.api_url = api_url.rstrip("/")
        self.on_lost = on_lost
        self.process = process
        self.interval_s = interval_s
        self.probe_timeout_s = probe_timeout_s
        self.refused_for_s = refused_for_s
        self.silent_for_s = silent_for_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="clouds-api-watchdog", daemon=True)

    def __enter__(self) -> ApiWatchdog:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Stop; and if the run failed, first ask whether the API's absence is why.

        Prefect raises its own connection errors in the main thread when a state report fails, sometimes
        before the watchdog's next probe: that traceback would hide the one sentence that explains it.
        """
        self.stop()
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            return  # a clean end, or Ctrl-C / SIGTERM, which the CLI reports itself
        with httpx.Client(timeout=self.probe_timeout_s) as client:
            reason, refused = self._probe(client)
        if reason is not None and refused:  # a slow answer proves nothing: the run's own error stands
            self.on_lost(self._lost(reason, 0.0, self.refused_for_s) or reason)

    def stop(self) -> None:
        """Stop watching: the run is over, and the server is about to be stopped on purpose."""
        self._stop.set()

    def _watch(self) -> None:
        answered = time.monotonic()
        refused_since: float | None = None
        with httpx.Client(timeout=self.probe_timeout_s) as client:
            while not self._stop.wait(self.interval_s):
                reason, refused = self._probe(client)
                now = time.monotonic()
                if reason is None:
                    answered, refused_since = now, None
                    continue
                refused_since = (refused_since or now) if refused else None
                lost = self._lost(reason, now - answered, None if refused_since is None else now - refused_since)
                if lost is not None and not self._stop.is_set():
                    self.on_lost(lost)
                    return

    def _probe(self, client: httpx.Client) -> tuple[str | None, bool]:
        """(why it failed or None, whether the connection was refused)."""
        if self.process is not None and self.process.poll() is not None:
            return f"Prefect's temporary API server (pid {self.process.pid}) exited with code {self.process.returncode}", True
        try:
            client.get(f"{self.api_url}/health")
        except httpx.ConnectError as err:
            return str(err) or "connection refused", True
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__, False
        return None, False

    def _lost(self, reason: str, silent_s: float, refused_s: float | None) -> str | None:
        """The sentence for `on_lost`, once the failure has lasted long enough to be believed."""
        if reason.startswith("Prefect's temporary API server"):
            return reason
        if refused_s is not None and refused_s >= self.refused_for_s:
            return f"the Prefect API at {self.api_url} refuses connections ({reason})"
        if silent_s >= self.silent_for_s:
            return f"the Prefect API at {self.api_url} has not answered for {silent_s:.0f} s ({reason})"
        log.debug("Prefect API probe failed (%s); silent for %.0f s", reason, silent_s)
        return None
