"""One error type for everything wrong with an artifact, so callers and the CLI can report it plainly."""


class ArtifactError(RuntimeError):
    """An artifact is missing, uncommitted, corrupt or inconsistent; the message names the place."""
