"""One error type for everything wrong with an artifact, so callers and the CLI can report it plainly."""

from clouds.errors import CloudsError


class ArtifactError(CloudsError, RuntimeError):
    """An artifact is missing, uncommitted, corrupt or inconsistent; the message names the place."""
