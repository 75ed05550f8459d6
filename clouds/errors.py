"""The one base of every error the project raises for something a user can fix.

Each layer keeps its own error type (ArtifactError, ConfigError, DatasetError, ...), named for what went
wrong, and each also derives from the builtin it always derived from, so existing `except ValueError`
callers keep working. The CLI catches `CloudsError` and prints one `error:` line instead of a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CloudsError(Exception):
    """A problem the message explains (a file, a key, a sample): reported without a traceback."""


class InputError(CloudsError, ValueError):
    """A value, file or option the user gave that cannot be used: a weight file that does not fit its model,
    a model name no library knows, a label value that is not a train id, an out-of-range CLI option.

    Lower layers raise it for what a user can fix and a plain ValueError for broken invariants (a bug), so
    the CLI prints the first as one `error:` line and lets the second show its traceback."""
