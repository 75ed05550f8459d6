"""Checks before anything is sent to a Ray cluster, shared by the shard runner and Ray Train.

No Prefect here: Ray Train workers import the module that calls these, and a worker that imported
Prefect would run with Prefect's logging configuration.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from clouds.errors import InputError

CONNECT_TIMEOUT_S = 5.0


def check_shared_storage(root: str) -> None:
    if root.startswith("memory://"):
        raise InputError(f"executor.kind 'ray' runs shards and training in other processes, which cannot see this process's "
                         f"{root!r}; put run.root on a local path the workers share, or on object storage")


def check_reachable(address: str | None) -> None:
    """Ray retries an unreachable address for minutes; a dead head node should fail in seconds, by name."""
    if address is None or address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    if not parts.hostname or not parts.port:
        raise InputError(f"executor.address {address!r} is not 'auto', 'host:port' or 'ray://host:port'")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at executor.address {address!r}: {err}; "
                              "is `ray start --head` running there, and is the port open?") from None
