"""fsspec access to an artifact folder: any URL (path, file://, memory://, s3://) works the same way."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

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
            self.fs.mv(tmp, self.join(name))
        except OSError as err:
            self.remove(tmp_name)
            raise ArtifactError(f"cannot write {self.url_of(name)}: {err}") from err

    def remove(self, *names: str) -> None:
        path = self.join(*names)
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except OSError:
            pass

    def listdir(self) -> list[str]:
        if not self.fs.exists(self.path):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.path, detail=False))
