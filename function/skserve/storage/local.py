"""A folder on the local disk: the embedded default store."""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skserve.errors import ObjectNotFound, PreconditionFailed, StoreError
from skserve.storage.base import Store

# A conditional write's check-then-replace holds this lock within the process and
# an flock on a lock file beside the key across processes (two CLI publishers).
# if_absent needs neither: os.link refuses an existing target atomically.
_swap_lock = threading.Lock()


class LocalStore(Store):
    """Objects are files under `root`; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"invalid key {key!r}")
        return self.root.joinpath(*parts)

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{path} does not exist") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None

    def read_token(self, key: str) -> tuple[bytes, str]:
        data = self.read(key)
        return data, _token(self._path(key))

    def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_token: str | None = None,
    ) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                self._commit(Path(tmp), path, if_absent, if_token)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    @staticmethod
    def _commit(tmp: Path, path: Path, if_absent: bool, if_token: str | None) -> None:
        if if_absent:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise PreconditionFailed(f"{path} already exists") from None
            return
        with _swap_lock, _file_lock(path.with_name(f".{path.name}.lock")):
            if if_token is not None:
                try:
                    current = _token(path)
                except FileNotFoundError:
                    current = None
                if current != if_token:
                    raise PreconditionFailed(f"{path} changed while we wrote it")
            os.replace(tmp, path)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return [
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        ]


def _token(path: Path) -> str:
    """Changes on every write: each write renames a new file (a new inode) in."""
    stat = path.stat()
    return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held by this process while the block runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
