"""fsspec access to an artifact folder: any URL (path, file://, memory://, s3://) works the same way."""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from artifacts.errors import ArtifactError


@dataclass(frozen=True)
class Folder:
    """A folder on some filesystem, addressed by the URL the user gave."""

    url: str
    fs: fsspec.AbstractFileSystem
    path: str

    @classmethod
    def at(cls, url: str) -> Folder:
        try:
            fs, path = fsspec.core.url_to_fs(str(url))
        except (ImportError, ValueError) as err:
            raise ArtifactError(f"cannot open storage URL {url!r}: {err}") from err
        return cls(str(url).rstrip("/"), fs, path.rstrip("/") or "/")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def join(self, *names: str) -> str:
        return posixpath.join(self.path, *names)

    def url_of(self, *names: str) -> str:
        return posixpath.join(self.url, *names)

    def exists(self, *names: str) -> bool:
        """False only when the path is absent: unreachable storage is an error, not a missing artifact."""
        try:
            self.fs.info(self.join(*names))
            return True
        except FileNotFoundError as err:
            # fsspec's HTTP store reports a refused connection as FileNotFoundError raised from the cause.
            cause = err.__cause__
            if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
                raise ArtifactError(f"cannot reach {self.url_of(*names)}: {cause}") from err
            return False
        except OSError as err:
            raise ArtifactError(f"cannot reach {self.url_of(*names)}: {err}") from err

    def makedirs(self, *names: str) -> None:
        try:
            self.fs.makedirs(self.join(*names), exist_ok=True)
        except OSError as err:
            raise ArtifactError(f"cannot create folder {self.url_of(*names)}: {err}") from err

    def read_bytes(self, name: str) -> bytes:
        try:
            with self.fs.open(self.join(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ArtifactError(f"{self.url_of(name)} does not exist") from None

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write under a temporary name, then move into place: readers never see half a file."""
        head, _, base = name.rpartition("/")
        tmp_name = f"{head}/.{base}.tmp" if head else f".{base}.tmp"
        tmp = self.join(tmp_name)
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
                self.sync(f)
            self.move_into_place(tmp, self.join(name))
        except OSError as err:
            self.remove(tmp_name)
            raise ArtifactError(f"cannot write {self.url_of(name)}: {err}") from err

    def sync(self, f: Any) -> None:
        """Force a file being written here to disk before it is renamed into place.

        A local filesystem may journal the rename before the data it names: after a machine crash a
        committed file (shard, manifest, marker) could then exist yet be empty. Other fsspec backends
        (object stores) only make an object visible once its upload is complete, so there is nothing to do.
        """
        if self.is_local:
            f.flush()
            os.fsync(f.fileno())

    def move_into_place(self, tmp: str, final: str) -> None:
        """Rename a written and synced temporary file (full paths on this filesystem) onto `final`, then, on
        local disk, sync the directory too: until then the rename itself may not survive a crash."""
        self.fs.mv(tmp, final)
        if self.is_local:
            _sync_dir(posixpath.dirname(final))

    def remove(self, *names: str, within: str | None = None) -> None:
        """Delete `names` under this folder (none: the folder itself), recursively; an absent path is fine.

        Refused with ArtifactError unless the target lies strictly inside `within` (default: this folder when
        names are given, else this folder's parent), after folding `..` and, on local disk, following
        symlinks. Writers discard unrelated partial work and evaluate/report clear their folder before
        writing: a name that escaped the run root (`../../../victim`) once made that delete someone else's
        folder. Callers that know the run folder pass it as `within`.
        """
        path = self.join(*names)
        self._check_removable(path, self.url_of(*names), names, within)
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except OSError:
            pass

    def _check_removable(self, path: str, url: str, names: tuple[str, ...], within: str | None) -> None:
        if within is None:
            root_fs, root_path = self.fs, self.path if names else posixpath.dirname(self.path)
            root_url = self.url if names else f"the parent of {self.url}"
        else:
            root = Folder.at(within)
            root_fs, root_path, root_url = root.fs, root.path, root.url
            if _climbs_out(within):
                raise ArtifactError(f"refusing to delete {url}: the allowed folder {within} climbs out with '..'")
        if _climbs_out(url):
            raise ArtifactError(f"refusing to delete {url}: its path climbs out of a folder with '..'")
        if type(root_fs) is not type(self.fs):
            raise ArtifactError(f"refusing to delete {url}: it is not on the filesystem of {root_url}")
        target, allowed = _resolved(self.fs, path), _resolved(root_fs, root_path)
        if not _is_inside(target, allowed):
            shown = "" if target == path else f" (it resolves to {target})"
            raise ArtifactError(f"refusing to delete {url}{shown}: it is not inside {root_url}")

    def listdir(self) -> list[str]:
        if not self.fs.exists(self.path):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.path, detail=False))


def safe_remove(url: str, within: str) -> None:
    """Delete `url` (file or folder, recursively) only if it lies strictly inside `within` (see
    `Folder.remove`); the one helper for deletes outside a Folder object, e.g. checkpoint files."""
    Folder.at(url).remove(within=within)


def _sync_dir(path: str) -> None:
    """fsync a directory so the entries renamed into it are durable. Some filesystems cannot sync a
    directory (EINVAL, ENOTSUP); they give no stronger guarantee to ask for, so that is not an error."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def _climbs_out(url: str) -> bool:
    """True if a `..` segment follows a normal one: the path enters a folder and leaves it again, which is
    how a name joined under a run escapes it. Leading `..` (a root given relative to a parent) is fine."""
    entered = False
    for segment in url.split("://", 1)[-1].split("/"):
        if segment == "..":
            if entered:
                return True
        elif segment not in ("", "."):
            entered = True
    return False


def _resolved(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The path the filesystem will act on: on local disk with symlinks followed (a link inside the run that
    points outside it must not make the outside deletable), elsewhere with `.`/`..` folded."""
    if isinstance(fs, LocalFileSystem):
        return os.path.realpath(path)
    return posixpath.normpath(path)


def _is_inside(path: str, root: str) -> bool:
    """Strictly inside: the root itself is not deletable through this check."""
    if not root:
        return False
    prefix = root if root.endswith("/") else root + "/"
    return path != root and path.startswith(prefix)
