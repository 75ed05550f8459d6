"""One run at a time per `{root}/{run}`: a lock file that names its holder and never stays stuck.

Two runs writing the same artifacts would each discard the other's partial shards (the writer keeps only
work that matches its own identity) and race on the commit markers, so the second run is refused rather
than serialized: a refusal is immediate and names the holder, while queueing behind a run that may take
hours would look like a hang.

The lock is `{root}/{run}/_RUN_LOCK.json`: holder pid, host, process start time, start time, and a
heartbeat that a daemon thread refreshes while the run lives. A lock is stale, and is taken over with a
warning, when its holder is on this host and its process is gone (or is another process that reused the
pid), or when its holder is on another host and its heartbeat is older than `stale_after` seconds (a
crashed or hung run there). So a crashed run never leaves the lock stuck: on the same host it is free at
once, elsewhere after `stale_after`. On the same host a live holder is never taken over, whatever its
heartbeat says: a run stopped with SIGSTOP or in a debugger, or one started with a shorter
CLOUDS_LOCK_STALE_AFTER, still owns its artifacts and would resume writing them.

A holder can still lose its lock (the file deleted by hand, or taken over from another host), so the lock
fences its writers: while held it registers a check (artifacts/fence.py) that every shard, every commit
and every writer's preparation of a folder under the run calls first, and that raises RunLockLostError
once the lock file names someone else. The run stops before its next write instead of racing the new
holder.

Local paths are exclusive: the file is created with O_CREAT|O_EXCL, and a stale lock is renamed away (only
one contender's rename succeeds) before the new one is created. Other fsspec URLs (s3://, gs://, memory://)
have no exclusive create: there the lock is written and read back, so two runs starting within the same
instant on different machines may both believe they hold it. Object stores are best effort; give each
concurrent run its own run name there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from artifacts import ArtifactError, Folder
from artifacts.fence import add_fence
from clouds.errors import CloudsError

log = logging.getLogger(__name__)

LOCK_NAME = "_RUN_LOCK.json"
DEFAULT_STALE_AFTER = 600.0
STALE_ENV = "CLOUDS_LOCK_STALE_AFTER"


class RunLockedError(CloudsError, RuntimeError):
    """Another live run holds the lock of this run folder; the message names it."""


class RunLockLostError(RunLockedError):
    """This run's lock was taken over or removed while it ran; it stopped before its next write."""


def process_start(pid: int) -> str | None:
    """Start time of `pid`, to tell a reused pid from the holder: clock ticks since boot from Linux /proc,
    else psutil's creation time where it is installed. Only compared with values taken on the same host."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # The command name (field 2) may hold spaces and parentheses: split after its closing ')'.
            return f.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # Linux: the process is gone
    except (OSError, IndexError):
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        return f"{psutil.Process(pid).create_time():.3f}"
    except psutil.Error:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: float
    heartbeat: float
    token: str
    proc_start: str | None = None
    note: str = ""

    @classmethod
    def me(cls, note: str = "") -> LockHolder:
        now, pid = _now(), os.getpid()
        return cls(pid, socket.gethostname(), now, now, uuid.uuid4().hex, process_start(pid), note)

    @classmethod
    def parse(cls, data: bytes, where: str) -> LockHolder | None:
        """None for an unreadable lock (a writer killed mid-write): it cannot name a live holder."""
        try:
            raw = json.loads(data)
            return cls(int(raw["pid"]), str(raw["host"]), float(raw["started"]), float(raw["heartbeat"]),
                       str(raw["token"]), raw.get("proc_start"), str(raw.get("note", "")))
        except (ValueError, KeyError, TypeError):
            log.warning("run lock %s is unreadable; treating it as stale", where)
            return None

    def to_bytes(self) -> bytes:
        return json.dumps({**asdict(self), "started_at": _iso(self.started), "heartbeat_at": _iso(self.heartbeat)},
                          sort_keys=True, indent=2).encode()

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {_iso(self.started)}" + (
            f" ({self.note})" if self.note else "")

    @property
    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def heartbeat_age(self) -> float:
        return _now() - self.heartbeat

    def stale_reason(self, stale_after: float) -> str | None:
        """Why this holder is certainly gone, or None while it may still be running.

        On this host the process table is the truth: a live holder keeps its lock however old its heartbeat
        (stopped, in a debugger, or judged by a shorter stale_after than its own). Elsewhere only the
        heartbeat can tell.
        """
        if self.is_local:
            if not pid_alive(self.pid):
                return f"its process {self.pid} is no longer running"
            if self.proc_start is not None and process_start(self.pid) not in (None, self.proc_start):
                return f"pid {self.pid} now belongs to another process"
            return None
        age = self.heartbeat_age()
        if age > stale_after:
            return f"its last heartbeat is {age:.0f} s old (stale after {stale_after:.0f} s)"
        return None


class RunLock:
    """Exclusive lock on a run folder; use as a context manager around the whole run."""

    def __init__(self, base_url: str, *, stale_after: float | None = None, note: str = ""):
        self.folder = Folder.at(base_url)
        env = os.environ.get(STALE_ENV)
        self.stale_after = float(stale_after if stale_after is not None else env or DEFAULT_STALE_AFTER)
        if self.stale_after <= 0:
            raise ValueError(f"stale_after must be positive, got {self.stale_after}")
        self.note = note
        self.holder: LockHolder | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._unfence: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return self.folder.url_of(LOCK_NAME)

    def read(self) -> LockHolder | None:
        """The current holder, or None when there is no lock file."""
        try:
            data = self.folder.read_bytes(LOCK_NAME)
        except ArtifactError:
            return None
        return LockHolder.parse(data, self.url)

    # -- acquire ------------------------------------------------------------------------------------
    def acquire(self) -> RunLock:
        if self.holder is not None:
            raise RuntimeError(f"{self.url} is already held by this RunLock")
        self.folder.makedirs()
        me = LockHolder.me(self.note)
        for _ in range(5):  # a contender may take over or release between our steps: look again
            if self._create(me):
                self.holder = me
                self._start_heartbeat()
                self._unfence = add_fence(self.folder.url, self.check)
                log.info("run lock %s acquired (%s)", self.url, me.describe())
                return self
            current = self.read()
            if current is None and self.folder.exists(LOCK_NAME):
                time.sleep(0.5)  # a contender may be between creating the file and writing it
                current = self.read()
            if current is None and self.folder.exists(LOCK_NAME):
                reason = "it is unreadable (its writer died mid-write)"
            elif current is None:
                continue
            else:
                reason = current.stale_reason(self.stale_after)
                if reason is None:
                    raise RunLockedError(self._refusal(current))
            log.warning("taking over run lock %s: %s%s", self.url, reason,
                        f" (was held by {current.describe()})" if current else "")
            self._discard_stale()
        raise RunLockedError(f"could not acquire {self.url}: other runs keep taking it")

    def _refusal(self, current: LockHolder) -> str:
        message = (f"another run is using {self.folder.url}: {current.describe()}, last heartbeat "
                   f"{_iso(current.heartbeat)} (lock file {self.url}). Wait for it to finish, give this run "
                   f"another --run name, or, if that run is dead, delete the lock file.")
        if current.is_local and current.heartbeat_age() > self.stale_after:
            message += (f" Its process is alive but its heartbeat is {current.heartbeat_age():.0f} s old: it may "
                        f"be stopped (SIGSTOP, a debugger) or hung; resume it (kill -CONT {current.pid}) or end it "
                        "(kill it). A live run on this host is never taken over.")
        return message

    def _create(self, me: LockHolder) -> bool:
        data = me.to_bytes()
        if self.folder.is_local:
            try:
                fd = os.open(self.folder.join(LOCK_NAME), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            except OSError as err:
                raise ArtifactError(f"cannot create run lock {self.url}: {err}") from err
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.folder.exists(LOCK_NAME):
            return False
        self.folder.write_atomic(LOCK_NAME, data)
        current = self.read()  # best effort: whoever wrote last owns it
        return current is not None and current.token == me.token

    def _discard_stale(self) -> None:
        if self.folder.is_local:
            aside = self.folder.join(f".{LOCK_NAME}.{uuid.uuid4().hex}.stale")
            try:
                os.rename(self.folder.join(LOCK_NAME), aside)  # atomic: one contender wins the takeover
            except FileNotFoundError:
                return
            os.unlink(aside)
        else:
            self.folder.remove(LOCK_NAME)

    # -- heartbeat and release ----------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        interval = max(self.stale_after / 4, 0.05)
        while not self._stop.wait(interval):
            current, mine = self.read(), self.holder
            if mine is None or current is None or current.token != mine.token:
                log.error("run lock %s was taken by another run; this run no longer holds it and stops before its "
                          "next shard or commit", self.url)
                return
            beat = LockHolder(**{**asdict(mine), "heartbeat": _now()})
            try:
                self.folder.write_atomic(LOCK_NAME, beat.to_bytes())
            except ArtifactError as err:
                log.warning("cannot refresh run lock %s: %s", self.url, err)

    # -- fencing ------------------------------------------------------------------------------------
    def check(self, what: str = "its next write") -> None:
        """Raise RunLockLostError unless the lock file still names this holder.

        Writers under the run folder call this before every shard, commit and folder preparation (see
        artifacts/fence.py): one small read, against a shard's worth of work it protects.
        """
        mine = self.holder
        if mine is None:
            raise RunLockLostError(f"run lock {self.url} is not held by this process (released or never "
                                   f"acquired); refusing {what}")
        current = self.read()
        if current is not None and current.token == mine.token:
            return
        now = f"it is now held by {current.describe()}" if current else "the lock file was removed or is unreadable"
        raise RunLockLostError(
            f"this run ({mine.describe()}) lost its run lock {self.url}: {now}. Stopped before {what} so that "
            f"two runs do not overwrite each other's artifacts. Restart this run once the other one has "
            f"finished (complete shards are kept), or give it another --run name."
        )

    def release(self) -> None:
        """Remove the lock if it is still ours (a takeover after a stall must not be undone)."""
        if self._unfence is not None:
            self._unfence()
            self._unfence = None
        mine, self.holder = self.holder, None
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if mine is None:
            return
        current = self.read()
        if current is not None and current.token == mine.token:
            self.folder.remove(LOCK_NAME)
            log.info("run lock %s released", self.url)
        else:
            log.warning("run lock %s is no longer ours at release; leaving it", self.url)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def drop_own_lock(base_url: str) -> bool:
    """Remove the run lock at `base_url` if this very process holds it; for a process about to exit without
    unwinding (the CLI's last resort after Ctrl-C / SIGTERM, or a lost Prefect API), whose `RunLock.release`
    will never run. Any other holder's lock is left alone. True if a lock was removed."""
    lock = RunLock(base_url)
    try:
        current = lock.read()
        me = LockHolder.me()
        if current is None or (current.pid, current.host, current.proc_start) != (me.pid, me.host, me.proc_start):
            return False
        lock.folder.remove(LOCK_NAME)
    except Exception:  # noqa: BLE001 - an exit path must never fail on its own cleanup
        return False
    return True

