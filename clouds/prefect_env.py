"""Prefect settings every process of the project starts with (the CLI, `clouds server`'s worker and the
flow runs it spawns), as environment defaults so a user's own setting still wins.

- No telemetry from an offline machine (and no failed DNS lookups in the log).
- Prefect's temporary API server gets 300 s to start instead of 20: on a busy 2-core machine the default
  failed two demos out of two.
- The project's loggers reach Prefect's run logs, so the UI and `prefect flow-run logs` show stage progress
  (training steps, shards, mIoU), not only Prefect's own state changes; records logged outside a run (CLI
  set-up) are not sent rather than warned about.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

PROJECT_LOGGERS = ("clouds", "artifacts", "stages", "models", "pipelines")

PREFECT_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    "PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(PROJECT_LOGGERS),
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def apply_prefect_defaults(env: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Set each default that `env` does not set already (must run before `prefect` is imported)."""
    for name, value in PREFECT_DEFAULTS.items():
        env.setdefault(name, value)
    return env


def project_loggers_at_info() -> None:
    """Let the project's INFO records through in processes the CLI did not set up (a worker's flow runs):
    there the loggers inherit the root's WARNING, and Prefect copies its API handler to them, not a level.
    A level set explicitly (`clouds -v`, a user's logging config) is kept."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
