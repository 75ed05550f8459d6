"""Write fences: a writer that may have lost the right to write a folder stops before its next write.

A run lock (pipelines/lock.py) can be lost while its holder still runs: the lock file was deleted by
hand, or a run on another host took it over after this one's heartbeat went stale (a stopped or
partitioned machine). From then on two runs write the same artifacts, each discarding the other's
partial shards and racing on the commit markers. So every shard and every commit first asks the fences
that cover its folder; a lock registers one for its run folder and raises when it is no longer held.

The artifacts package knows nothing about locks: a fence is any callable that raises to refuse. With no
fence registered (a library user, a Ray worker process, a test writing directly) nothing is checked.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass

from artifacts.storage import Folder

# Called with a description of the write about to happen ("shard 3 of URL"); raises to refuse it.
FenceCheck = Callable[[str], None]


@dataclass(frozen=True)
class _Fence:
    folder: Folder
    check: FenceCheck

    def covers(self, folder: Folder) -> bool:
        """Same filesystem type, and `folder` is the fenced folder or lies below it."""
        if type(folder.fs) is not type(self.folder.fs):
            return False
        root, path = posixpath.normpath(self.folder.path), posixpath.normpath(folder.path)
        return path == root or path.startswith(root.rstrip("/") + "/")


_fences: dict[int, _Fence] = {}
_guard = threading.Lock()


def add_fence(url: str, check: FenceCheck) -> Callable[[], None]:
    """Make every shard and commit under `url` call `check` first; returns the function that removes it."""
    fence = _Fence(Folder.at(url), check)
    with _guard:
        _fences[id(fence)] = fence

    def remove() -> None:
        with _guard:
            _fences.pop(id(fence), None)

    return remove


def check_fences(folder: Folder, what: str) -> None:
    """Raise (whatever the fence raises) if a fence covering `folder` refuses the write `what`."""
    with _guard:
        fences = [f for f in _fences.values() if f.covers(folder)]
    for fence in fences:
        fence.check(what)
