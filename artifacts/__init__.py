"""Artifacts: sharded WebDataset folders on any fsspec filesystem, with parquet manifests and lineage.

An artifact is a folder holding `shard-NNNNNN.tar` files, `manifest.parquet` and `_COMMITTED.json`.
The marker is written last; a folder without it is work in progress and every reader refuses it.
"""

from artifacts.codecs import IMAGE_MEMBERS, decode_member, encode_member, image_member, image_member_name
from artifacts.errors import ArtifactError
from artifacts.folder import commit_folder, verify_folder
from artifacts.lineage import COMMIT_MARKER, MANIFEST, code_version, is_committed, read_lineage
from artifacts.reader import Artifact, open_artifact
from artifacts.storage import Folder
from artifacts.writer import ArtifactWriter

__all__ = [
    "COMMIT_MARKER", "IMAGE_MEMBERS", "MANIFEST", "Artifact", "ArtifactError", "ArtifactWriter", "Folder", "code_version",
    "commit_folder", "decode_member", "encode_member", "image_member", "image_member_name", "is_committed", "open_artifact",
    "read_lineage", "verify_folder",
]
