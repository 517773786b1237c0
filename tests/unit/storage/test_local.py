"""The local folder store: keys, atomic writes, and symlinks that leave the root.

A link resolving outside the root (to /etc/passwd, another folder) is refused
on read, write and list, with a message that never holds the target's content.
A link resolving inside the root is an alias and is followed: it can only reach
files the store serves anyway, and volume tools (Kubernetes ConfigMap and
Secret mounts, git-sync) publish through such links to swap content atomically.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from skserve.errors import ObjectTooLarge, PreconditionFailed, StoreError
from skserve.storage.local import LocalStore
from tests.support import REPO

MiB = 1024 * 1024
SECRET = b"TOP-SECRET-CONTENT: the store must never show this\n"
PASSWD = Path("/etc/passwd")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store root holding model `m` with LATEST -> v1; beside it, outside the
    root, a folder whose files hold SECRET."""
    root = tmp_path / "store"
    version = root / "m" / "versions" / "v1"
    version.mkdir(parents=True)
    (version / "model.pkl").write_bytes(b"pickle")
    (root / "m" / "LATEST").write_bytes(b"v1\n")
    outside = tmp_path / "outside"
    (outside / "v1").mkdir(parents=True)
    (outside / "secret").write_bytes(SECRET)
    (outside / "v1" / "model.pkl").write_bytes(SECRET)
    return root


def _relink(link: Path, target: Path) -> None:
    """Replace `link` (a file or a folder) by a symlink to `target`."""
    if link.is_dir() and not link.is_symlink():
        for path in sorted(link.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        link.rmdir()
    else:
        link.unlink()
    link.symlink_to(target)


def _assert_refused(error: StoreError, *secrets: bytes) -> None:
    message = str(error)
    assert "refusing" in message
    for secret in secrets:
        for line in secret.decode().splitlines():
            assert line not in message
    assert error.__cause__ is None


# --- keys and atomic writes -------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["../escape", "iris/../../escape", "iris/./LATEST", "", "/"]
)
@pytest.mark.parametrize("method", ["read", "read_token", "write"])
def test_local_rejects_keys_that_leave_or_alias_the_root(
    tmp_path: Path, key: str, method: str
) -> None:
    store = LocalStore(tmp_path / "models")
    args: tuple[Any, ...] = (key, b"x") if method == "write" else (key,)

    with pytest.raises(StoreError, match="invalid key"):
        getattr(store, method)(*args)

    assert not (tmp_path / "escape").exists()


def test_local_list_ignores_leftover_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write("iris/LATEST", b"v1\n")
    (tmp_path / "iris" / ".tmp-crashed").write_bytes(b"partial")

    assert store.list("iris") == ["iris/LATEST"]


def test_local_write_leaves_no_temporary_file_after_a_refused_write(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    store.write("iris/LATEST", b"v1\n")

    with pytest.raises(PreconditionFailed):
        store.write("iris/LATEST", b"v2\n", if_absent=True)

    assert not [p for p in (tmp_path / "iris").iterdir() if p.name.startswith(".tmp-")]
    assert store.list("iris") == ["iris/LATEST"]


def _waiting_for_flock(pid: int, lock: int) -> bool:
    """Whether process `pid` is blocked waiting for an flock on the open file
    `lock`: the kernel lists each waiter in /proc/locks as `N: -> FLOCK ...
    PID MAJOR:MINOR:INODE ...` under the lock it waits for."""
    inode = str(os.fstat(lock).st_ino)
    waiters = [
        fields
        for fields in map(str.split, Path("/proc/locks").read_text().splitlines())
        if fields[1:3] == ["->", "FLOCK"]
    ]
    return any(f[5] == str(pid) and f[6].rsplit(":", 1)[1] == inode for f in waiters)


def test_local_conditional_write_waits_for_a_writer_in_another_process(
    tmp_path: Path,
) -> None:
    """Two CLI publishers are two processes: the check-and-replace must be locked
    across them, not only across threads. The other process is seen blocked on
    our lock by the kernel, however slowly it starts, before we let it go."""
    store = LocalStore(tmp_path)
    store.write("m/LATEST", b"v1\n")
    _, token = store.read_token("m/LATEST")
    script = (
        "import sys; from skserve.storage.local import LocalStore; "
        f"LocalStore({str(tmp_path)!r}).write('m/LATEST', b'v2\\n', if_token={token!r})"
    )
    with open(tmp_path / "m" / ".LATEST.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        writer = subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONPATH": "function"},
            cwd=REPO,
        )
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            if _waiting_for_flock(writer.pid, lock.fileno()):
                break
            time.sleep(0.01)
        waited = writer.poll() is None and _waiting_for_flock(writer.pid, lock.fileno())
        unchanged = store.read("m/LATEST") == b"v1\n"
        fcntl.flock(lock, fcntl.LOCK_UN)
    writer.wait(timeout=60)

    assert waited, "the other process never waited for the lock we held"
    assert unchanged, "the other process wrote while we held the lock"
    assert writer.returncode == 0
    assert store.read("m/LATEST") == b"v2\n"


# --- symlinks out of the root: refused ------------------------------------------


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_local_refuses_latest_linked_to_etc_passwd(root: Path, method: str) -> None:
    _relink(root / "m" / "LATEST", PASSWD)

    with pytest.raises(StoreError) as exc_info:
        getattr(LocalStore(root / "m"), method)("LATEST")

    _assert_refused(exc_info.value, PASSWD.read_bytes())
    assert str(root / "m" / "LATEST") in str(exc_info.value)


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_local_refuses_latest_linked_to_a_file_outside_the_root(
    root: Path, method: str
) -> None:
    _relink(root / "m" / "LATEST", root.parent / "outside" / "secret")

    with pytest.raises(StoreError) as exc_info:
        getattr(LocalStore(root / "m"), method)("LATEST", max_bytes=1000)

    _assert_refused(exc_info.value, SECRET)


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("m/versions", "outside"),
        ("m/versions/v1", "outside/v1"),
        ("m/versions/v1/model.pkl", "outside/v1/model.pkl"),
    ],
    ids=["versions-folder", "version-folder", "model-file"],
)
def test_local_refuses_a_model_reached_through_a_link_out_of_the_root(
    root: Path, link: str, target: str
) -> None:
    _relink(root / link, root.parent / target)
    store = LocalStore(root / "m")

    with pytest.raises(StoreError) as exc_info:
        store.read("versions/v1/model.pkl")

    _assert_refused(exc_info.value, SECRET)
    assert store.list("") == ["LATEST"]  # the link is not walked either


def test_local_refuses_a_root_relative_link_that_climbs_out(root: Path) -> None:
    (root / "m" / "LATEST").unlink()
    (root / "m" / "LATEST").symlink_to("../../outside/secret")

    with pytest.raises(StoreError) as exc_info:
        LocalStore(root / "m").read("LATEST")

    _assert_refused(exc_info.value, SECRET)


def test_local_list_of_a_folder_linked_out_of_the_root_is_refused(
    root: Path,
) -> None:
    _relink(root / "m" / "versions", root.parent / "outside")

    with pytest.raises(StoreError) as exc_info:
        LocalStore(root / "m").list("versions")

    _assert_refused(exc_info.value)


def test_local_write_through_a_folder_linked_out_of_the_root_is_refused(
    root: Path,
) -> None:
    _relink(root / "m" / "versions", root.parent / "outside")

    with pytest.raises(StoreError) as exc_info:
        LocalStore(root / "m").write("versions/v2/model.pkl", b"pickle")

    _assert_refused(exc_info.value)
    assert not (root.parent / "outside" / "v2").exists()


@pytest.mark.parametrize("if_absent", [False, True])
def test_local_write_to_a_file_linked_out_of_the_root_is_refused(
    root: Path, if_absent: bool
) -> None:
    _relink(root / "m" / "LATEST", root.parent / "outside" / "secret")

    with pytest.raises(StoreError) as exc_info:
        LocalStore(root / "m").write("LATEST", b"v2\n", if_absent=if_absent)

    _assert_refused(exc_info.value, SECRET)
    assert (root.parent / "outside" / "secret").read_bytes() == SECRET
    assert (root / "m" / "LATEST").is_symlink()


def test_local_write_refuses_a_lock_file_linked_out_of_the_root(root: Path) -> None:
    planted = root.parent / "outside" / "created-by-the-store"
    (root / "m" / ".LATEST.lock").symlink_to(planted)

    with pytest.raises(StoreError) as exc_info:
        LocalStore(root / "m").write("LATEST", b"v2\n")

    assert "cannot write" in str(exc_info.value)
    assert not planted.exists()
    assert (root / "m" / "LATEST").read_bytes() == b"v1\n"


def test_local_refuses_a_file_swapped_for_a_link_out_after_the_check(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer with access to the root swaps the version folder for a link out
    between the path check and the open: the opened file is judged again."""
    store = LocalStore(root / "m")
    checked = store._resolve

    def check_then_swap(key: str) -> tuple[Path, Path]:
        result = checked(key)
        _relink(root / "m" / "versions" / "v1", root.parent / "outside" / "v1")
        return result

    monkeypatch.setattr(store, "_resolve", check_then_swap)

    with pytest.raises(StoreError) as exc_info:
        store.read("versions/v1/model.pkl")

    _assert_refused(exc_info.value, SECRET)


# --- things that are not regular files -------------------------------------------


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_local_refuses_a_fifo_without_blocking(root: Path, method: str) -> None:
    fifo = root / "m" / "versions" / "v1" / "model.pkl"
    fifo.unlink()
    os.mkfifo(fifo)
    store = LocalStore(root / "m")
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(getattr(store, method)("versions/v1/model.pkl"))
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)  # returns as soon as the read does: at once when it works
    blocked = reader.is_alive()
    if blocked:  # open a writer so the stuck reader can finish
        with open(fifo, "wb"):
            pass

    assert not blocked, "reading a FIFO blocked"
    assert isinstance(outcome[0], StoreError)
    assert "not a regular file" in str(outcome[0])
    assert store.list("versions") == []


def test_local_list_skips_a_fifo(root: Path) -> None:
    os.mkfifo(root / "m" / "versions" / "v1" / "pipe")

    assert sorted(LocalStore(root / "m").list("")) == [
        "LATEST",
        "versions/v1/model.pkl",
    ]


# --- symlinks inside the root: aliases -------------------------------------------


def test_local_follows_links_that_stay_inside_the_root(root: Path) -> None:
    """The Kubernetes volume layout: visible names link into a hidden folder."""
    model = root / "m"
    (model / "..data").mkdir()
    (model / "LATEST").rename(model / "..data" / "LATEST")
    (model / "versions").rename(model / "..data" / "versions")
    (model / "LATEST").symlink_to("..data/LATEST")
    (model / "versions").symlink_to(model / "..data" / "versions")
    store = LocalStore(model)

    store.write("versions/v2/model.pkl", b"pickle-2")

    assert store.read("LATEST") == b"v1\n"
    assert store.read("versions/v1/model.pkl", max_bytes=6) == b"pickle"
    assert sorted(store.list("")) == [
        "LATEST",
        "versions/v1/model.pkl",
        "versions/v2/model.pkl",
    ]
    assert (model / "..data" / "versions" / "v2" / "model.pkl").exists()


def test_local_store_whose_root_is_a_link_serves_its_target(root: Path) -> None:
    (root / "current").symlink_to(root / "m")

    store = LocalStore(root / "current")

    assert store.read("LATEST") == b"v1\n"
    assert store.list("versions") == ["versions/v1/model.pkl"]


def test_local_list_does_not_loop_on_a_link_to_an_enclosing_folder(
    root: Path,
) -> None:
    (root / "m" / "versions" / "v1" / "again").symlink_to("../..")

    keys = LocalStore(root / "m").list("")

    assert sorted(keys) == ["LATEST", "versions/v1/model.pkl"]


# --- bounded reads ----------------------------------------------------------------


def test_local_bounded_read_of_a_large_file_reads_none_of_it(tmp_path: Path) -> None:
    """A 50 MiB file against a 1000-byte limit: the limit is checked from fstat,
    so no buffer of the file is ever allocated; reading it whole does allocate
    one, which shows the measurement sees reads."""
    size = 50 * MiB
    with open(tmp_path / "big", "wb") as handle:
        handle.truncate(size)  # sparse: no disk or time spent writing zeros
    store = LocalStore(tmp_path)

    tracemalloc.start()
    try:
        with pytest.raises(ObjectTooLarge) as exc_info:
            store.read("big", max_bytes=1000)
        refused_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        whole = store.read("big", max_bytes=size)
        whole_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert exc_info.value.size == size
    assert refused_peak < MiB
    assert len(whole) == size and whole_peak >= size


def test_local_bounded_read_stops_one_byte_past_the_limit_if_the_file_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the stored size is out of date (someone appends after fstat), the
    read stops at max_bytes + 1 instead of trusting it."""
    (tmp_path / "LATEST").write_bytes(b"v1\n")
    store = LocalStore(tmp_path)
    check_opened = store._opened_inside

    def grow_after_fstat(fd: int) -> bool:
        with open(tmp_path / "LATEST", "ab") as handle:
            handle.write(b"x" * MiB)
        return check_opened(fd)

    monkeypatch.setattr(store, "_opened_inside", grow_after_fstat)

    with pytest.raises(ObjectTooLarge) as exc_info:
        store.read("LATEST", max_bytes=100)

    assert exc_info.value.size is None  # the stored size was not the truth
    assert "more than the 100 bytes allowed" in str(exc_info.value)
