"""Every process the CLI starts ends with it: on Ctrl-C, SIGTERM, SIGHUP, and (on Linux) even on SIGKILL.

Python's default for SIGTERM and SIGHUP is to die on the spot: no `finally`, no atexit hook. Prefect stops
its temporary API server (a uvicorn child) from an atexit hook, and `clouds server` stops its server and
worker from a `with` block, so a plain `kill` left one orphaned server per run. Here SIGTERM and SIGHUP
unwind like Ctrl-C does (`Shutdown` is a KeyboardInterrupt), and the children we spawn get
PR_SET_PDEATHSIG so that the kernel stops them when the CLI dies in a way no handler sees.

Prefect starts its temporary server itself, from whichever thread first needs an API client, in the
terminal's process group (so Ctrl-C killed it while the run still had states to report, and Prefect
retried for minutes). We start it first, from the main thread (Prefect then reuses that instance: it keeps
one per port), in its own session and tied to this process; it stops at exit, after Prefect's last reports.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Any, NoReturn

log = logging.getLogger(__name__)
SERVER_STOP_S = 1.0
"""How long the temporary server gets to stop gracefully at exit before it is killed."""

PR_SET_PDEATHSIG = 1  # linux/prctl.h
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Shutdown(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, raised in the main thread so the CLI stops as cleanly as on Ctrl-C."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")


@contextmanager
def shutdown_on_signals(
    interrupt: bool = False,
    grace_s: float | None = None,
    on_expire: Callable[[int], None] | None = None,
) -> Iterator[None]:
    """Turn SIGTERM and SIGHUP (and SIGINT with `interrupt`) into `Shutdown` while the block runs (main
    thread only), then restore.

    Only the first signal raises: a second one while `finally` blocks stop the children would cut that
    cleanup short and orphan them, so it is logged and ignored (SIGKILL still kills).

    `grace_s` bounds the unwinding: Prefect reports the crash to its server and flushes logs, and running
    shard threads finish their shard, which took minutes when the server was gone. If the process is still
    alive `grace_s` seconds after the signal, `on_expire(signum)` runs and the process exits at once with
    128 + signum. Nothing is lost by that: shards, manifests, markers and checkpoints are written under
    temporary names and renamed into place, so an exit at any instant leaves complete files or none, and
    the children die with us (PR_SET_PDEATHSIG).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def expire(signum: int) -> None:
        try:
            if on_expire is not None:
                on_expire(signum)
        finally:
            os._exit(128 + signum)

    def handler(signum: int, frame: FrameType | None) -> None:
        if stopping:
            log.warning("%s received while shutting down; still stopping child processes", signal.Signals(signum).name)
            return
        stopping.append(signum)
        if grace_s is not None:
            timer = threading.Timer(grace_s, expire, args=(signum,))
            timer.daemon = True
            timer.start()
        raise Shutdown(signum)

    signals = (*SHUTDOWN_SIGNALS, signal.SIGINT) if interrupt else SHUTDOWN_SIGNALS
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_now(code: int, hooks: bool = True, last: Callable[[], None] | None = None) -> NoReturn:
    """Run the exit hooks (unless not `hooks`), flush, and leave without interpreter finalisation.

    After Ctrl-C the exit hooks (stopping Prefect's temporary server, removing a private Prefect home) take
    a fraction of a second, but tearing down torch, pyarrow and Prefect's modules afterwards took ~6 s
    more, with nothing left to save: every file that matters is already complete or was never renamed.
    Works from any thread: the others stop where they are. `last` runs right before the exit.
    """
    if hooks:
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe must not turn a clean stop into a traceback
            pass
    if last is not None:  # e.g. removing a folder other threads may still write to: as late as possible
        last()
    os._exit(code)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive SIGTERM when the thread that spawns it exits.

    Linux only (prctl); elsewhere None, and the signal handlers above are all there is. The kernel ties the
    signal to the spawning *thread*: spawn from the main thread, or from one that outlives the child.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect: the signal will never come
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@contextmanager
def _popen_owned_by_us(output: IO[bytes] | None = None) -> Iterator[None]:
    """Within the block, new `subprocess.Popen` children start in their own session and (Linux) get
    PR_SET_PDEATHSIG; with `output`, their stdout and stderr go there.

    For a child whose Popen call we cannot pass arguments to (Prefect's temporary server). Its own session
    keeps a terminal's Ctrl-C, sent to the whole foreground group, from killing the server while the run
    still reports its final states to it (Prefect then retried against a dead server for minutes); this
    process stops it instead, last. Popen is swapped module-wide for one call, made from the main thread
    before any flow runs.
    """
    preexec, original = die_with_parent(), subprocess.Popen

    class OwnedPopen(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("start_new_session", True)
            if output is not None:
                kwargs.setdefault("stdout", output)
                kwargs.setdefault("stderr", subprocess.STDOUT)
            if kwargs.get("preexec_fn") is None:
                kwargs["preexec_fn"] = preexec
            super().__init__(*args, **kwargs)

    subprocess.Popen = OwnedPopen  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]


def server_log_path() -> Path:
    """Where this process's temporary Prefect server writes its output (in PREFECT_HOME, one per process)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home) / f"temporary-server-{os.getpid()}.log"


def server_log_tail(lines: int = 15) -> str:
    """The last lines the temporary server wrote, for an error about it; empty when it wrote nothing."""
    try:
        text = server_log_path().read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _tied_prefect_server() -> Any:
    """Prefect's temporary API server, to be started in this thread as a child that dies with this process.

    Its output goes to `server_log_path()`, not to our terminal: stopped while still starting (a run that
    is refused its lock within a second), uvicorn printed a 25-line shutdown traceback above our one
    `error:` line. The CLI shows the log's tail when the server is the problem (it failed or died).
    """
    from prefect.server.api.server import SubprocessASGIServer

    class TiedServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            path = server_log_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as output, _popen_owned_by_us(output):  # the child keeps its own copy
                return super()._run_uvicorn_command()

        def stop(self) -> None:
            # Prefect waits up to 5 s for uvicorn's graceful shutdown; on a loaded machine that alone broke the
            # 5 s exit after Ctrl-C. By now the run has reported its last states: 1 s, then SIGKILL (SQLite
            # keeps every committed transaction).
            process = self.server_process
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=SERVER_STOP_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            super().stop()
            server_log_path().unlink(missing_ok=True)

    # Prefect keeps one instance per port in a class-level dict that subclasses share: its own
    # `SubprocessASGIServer()` calls get this instance back instead of starting a second server.
    return TiedServer()


def start_prefect_server() -> tuple[str, subprocess.Popen[Any] | None]:
    """Start Prefect's temporary API server now, owned by this process, unless PREFECT_API_URL names one.

    It stops at interpreter exit, after Prefect's own exit hooks have sent their last logs and events to it;
    `shutdown_on_signals` makes sure SIGTERM and SIGHUP reach that exit, and PR_SET_PDEATHSIG covers a kill.
    Returns the API URL flows report to, and the server's process when it is ours (for `ApiWatchdog`).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return str(PREFECT_API_URL.value()), None  # flows report to that server; Prefect starts none
    server = _tied_prefect_server()
    atexit.register(server.stop)  # runs after Prefect's own hooks (LIFO); a no-op if Prefect's stop ran first
    server.start()
    return server.api_url, server.server_process
