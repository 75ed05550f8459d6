"""The one error type of the predict stage, so the CLI can print it as a single `error:` line."""

from clouds.errors import CloudsError


class PredictInputError(CloudsError, ValueError):
    """Inputs or a checkpoint the user can fix: an empty folder, a non-image, a corrupt file, a bad RUN:best."""
