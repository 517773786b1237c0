"""A folder on the local disk: only regular files whose real path is inside it."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skserve.errors import ObjectNotFound, PreconditionFailed, StoreError
from skserve.storage.base import Precondition, Store, check_size, read_bounded

# A conditional write's check-then-replace holds this lock within the process and
# an flock on a lock file beside the key across processes (two CLI publishers).
# if_absent needs neither: os.link refuses an existing target atomically.
_swap_lock = threading.Lock()

# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
# O_NOFOLLOW: the path opened is already resolved; a link there now is a race.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalStore(Store):
    """Objects are files under `root`; writes are atomic (temp file + rename).

    Symlinks are followed only while they stay inside the root: a link that
    resolves out of it (to /etc/passwd, to another folder) is refused on read,
    write and list, so a planted link cannot make the store serve, overwrite or
    reveal anything the root does not hold. Links inside the root are aliases
    (volume tools such as Kubernetes' ConfigMap mounts publish through them).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.uri = str(self.root)
        # Resolved once, so a link swapped in for the root later cannot move it.
        self._real_root = Path(os.path.realpath(self.root))

    def _inside(self, real: str | Path) -> bool:
        return Path(real).is_relative_to(self._real_root)

    def _resolve(self, key: str) -> tuple[Path, Path]:
        """The key's path (for messages) and its real path, which must be inside
        the root; the message never says where an escaping link leads."""
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"invalid key {key!r}")
        path = self.root.joinpath(*parts)
        real = Path(os.path.realpath(self._real_root.joinpath(*parts)))
        if not self._inside(real):
            raise StoreError(
                f"refusing {path}: it resolves outside the store root {self.root}"
            )
        return path, real

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self._read(key, max_bytes)[0]

    def read_token(
        self, key: str, *, max_bytes: int | None = None
    ) -> tuple[bytes, str]:
        data, status = self._read(key, max_bytes)
        return data, _token(status)

    def _read(self, key: str, max_bytes: int | None) -> tuple[bytes, os.stat_result]:
        path, real = self._resolve(key)
        try:
            # Checked before opening: opening a device can itself have effects.
            if not stat.S_ISREG(os.stat(real).st_mode):
                raise StoreError(f"refusing {path}: it is not a regular file")
            fd = os.open(real, _OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{path} does not exist") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        with open(fd, "rb") as handle:
            # The file may have been swapped since the checks above: judge the
            # one actually opened.
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode) or not self._opened_inside(fd):
                raise StoreError(f"refusing {path}: it changed while being opened")
            check_size(str(path), status.st_size, max_bytes)
            try:
                return read_bounded(str(path), handle.read, max_bytes), status
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror}") from None

    def _opened_inside(self, fd: int) -> bool:
        """Where the kernel says `fd` leads, when it says (Linux's /proc)."""
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return True  # no /proc (macOS): the realpath check is all there is
        return self._inside(target)

    def _put(self, key: str, data: bytes, when: Precondition) -> None:
        path, real = self._resolve(key)
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                self._commit(Path(tmp), real, path, when)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    @staticmethod
    def _commit(tmp: Path, real: Path, path: Path, when: Precondition) -> None:
        if when.absent:
            try:
                os.link(tmp, real)
            except FileExistsError:
                raise PreconditionFailed(f"{path} already exists") from None
            return
        with _swap_lock, _file_lock(real.with_name(f".{real.name}.lock")):
            if when.token is not None:
                try:
                    current = _token(os.stat(real))
                except FileNotFoundError:
                    current = None
                if current != when.token:
                    raise PreconditionFailed(f"{path} changed while we wrote it")
            os.replace(tmp, real)

    def list(self, prefix: str) -> list[str]:
        if not prefix.strip("/"):
            return list(self._walk(self._real_root, "", (self._real_root,)))
        _, real = self._resolve(prefix)
        folder = "/".join(p for p in prefix.split("/") if p)
        return list(self._walk(real, folder, (self._real_root, real)))

    def _walk(self, real: Path, key: str, above: tuple[Path, ...]) -> Iterator[str]:
        """Keys of the regular files below the folder `real` (named `key`).

        Links are followed only to places inside the root, and never to a folder
        being walked already (`above`), so a link cannot make the walk loop.
        Hidden names are the store's own temporary and lock files.
        """
        try:
            entries = sorted(os.scandir(real), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StoreError(f"cannot list {self.root / key}: {exc.strerror}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = f"{key}/{entry.name}" if key else entry.name
            target = Path(os.path.realpath(entry.path))
            if not self._inside(target):
                continue
            if entry.is_dir():
                if target not in above:
                    yield from self._walk(target, child, (*above, target))
            elif entry.is_file():
                yield child


def _token(status: os.stat_result) -> str:
    """Changes on every write: each write renames a new file (a new inode) in."""
    return f"{status.st_ino}-{status.st_mtime_ns}-{status.st_size}"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held by this process while the block runs."""
    # O_NOFOLLOW: a lock file planted as a link must not create a file elsewhere.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
