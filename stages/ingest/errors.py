"""The one error ingest raises for bad dataset content, so the CLI can print it without a traceback."""

from clouds.errors import CloudsError


class DatasetError(CloudsError, ValueError):
    """A dataset file or folder that cannot be ingested; the message names the path."""
