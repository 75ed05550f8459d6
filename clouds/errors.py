"""The one base of every error the project raises for something a user can fix.

Each layer keeps its own error type (ArtifactError, ConfigError, DatasetError, ...), named for what went
wrong, and each also derives from the builtin it always derived from, so existing `except ValueError`
callers keep working. The CLI catches `CloudsError` and prints one `error:` line instead of a traceback.
"""

from __future__ import annotations


class CloudsError(Exception):
    """A problem the message explains (a file, a key, a sample): reported without a traceback."""
