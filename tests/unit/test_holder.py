"""skserve.holder: one lazy load, no cached failure, backoff, atomic hot refresh."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from skserve.errors import ObjectNotFound, StoreError, Unavailable
from skserve.holder import ModelHolder
from skserve.loader import LoadedModel, fetch_model
from skserve.manifest import LATEST, Manifest
from skserve.storage import open_store


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _failing_holder(
    fetch: Callable[[str], LoadedModel], clock: _Clock, **kwargs: object
) -> ModelHolder:
    return ModelHolder(fetch, lambda: "v1", clock=clock, **kwargs)  # type: ignore[arg-type]


# --- first load: failures are retried after a backoff, never cached ----------------


def test_failed_load_is_retried_after_backoff_not_cached(model_dir: Path) -> None:
    store = open_store(str(model_dir))
    version = (model_dir / "LATEST").read_text().strip()
    attempts: list[str] = []
    down = True

    def fetch(_: str) -> LoadedModel:
        attempts.append("try")
        if down:
            raise ObjectNotFound("store is down")
        return fetch_model(store, version)

    clock = _Clock(1000.0)
    holder = _failing_holder(fetch, clock, backoff=(2.0, 30.0))

    with pytest.raises(Unavailable) as first:
        holder.get()
    with pytest.raises(Unavailable) as during_backoff:
        holder.get()
    down = False
    clock.now += 2.0
    model = holder.get()

    assert first.value.headers()["Retry-After"] == "2"
    assert during_backoff.value.code == "not_found_in_store"
    assert attempts == ["try", "try"]  # the backoff window did not hit the store
    assert model.version == version


def test_backoff_doubles_and_is_capped() -> None:
    clock = _Clock(1000.0)

    def fetch(_: str) -> LoadedModel:
        raise Unavailable("down")

    holder = _failing_holder(fetch, clock, backoff=(1.0, 4.0))
    waits = []
    for _ in range(4):
        with pytest.raises(Unavailable) as error:
            holder.get()
        waits.append(error.value.retry_after)
        clock.now += error.value.retry_after

    assert waits == [1, 2, 4, 4]


def test_backoff_stays_capped_after_thousands_of_failures() -> None:
    """A store down for hours: the 1,025th failure still waits the cap (it
    once overflowed a float and answered 500 with no backoff)."""
    clock = _Clock(1000.0)

    def fetch(_: str) -> LoadedModel:
        raise Unavailable("down")

    holder = _failing_holder(fetch, clock, backoff=(1.0, 10.0))
    for _ in range(1100):
        with pytest.raises(Unavailable) as error:
            holder.get()
        clock.now += error.value.retry_after

    assert error.value.retry_after == 10


def test_unexpected_exception_while_loading_is_a_503_not_a_crash() -> None:
    def fetch(_: str) -> LoadedModel:
        raise ZeroDivisionError("bug")

    with pytest.raises(Unavailable) as error:
        _failing_holder(fetch, _Clock(1000.0)).get()

    assert "bug" not in error.value.message


# --- hot refresh -------------------------------------------------------------


class _Versions:
    """A fake store of versions: `latest` can be moved, loads can fail or block."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.latest = "v1"
        self.latest_reads = 0
        self.fail = False
        self.fetching = threading.Event()  # set once a fetch has begun
        self.gate = threading.Event()
        self.gate.set()

    def read_latest(self) -> str:
        self.latest_reads += 1
        if self.fail:
            raise StoreError("store down")
        return self.latest

    def fetch(self, version: str) -> LoadedModel:
        self.fetching.set()
        assert self.gate.wait(60), "the test never released the download"
        if self.fail:
            raise StoreError("store down")
        manifest = Manifest({**self.model.manifest.data, "version": version})
        return LoadedModel(manifest, self.model.runtime)


@pytest.fixture
def versions(model_dir: Path) -> _Versions:
    store = open_store(str(model_dir))
    return _Versions(fetch_model(store, (model_dir / LATEST).read_text().strip()))


def _holder(versions: _Versions, clock: _Clock, **kwargs: object) -> ModelHolder:
    return ModelHolder(versions.fetch, versions.read_latest, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_refresh_swaps_in_a_new_version_after_the_interval(versions: _Versions) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=60)
    assert holder.get().version == "v1"
    versions.latest = "v2"

    clock.now = 59
    before = holder.get().version
    clock.now = 60
    after = holder.get().version

    assert (before, after) == ("v1", "v2")
    assert versions.latest_reads == 2


def test_failed_refresh_keeps_serving_the_current_model(
    versions: _Versions, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=10)
    holder.get()
    versions.latest, versions.fail = "v2", True

    clock.now = 10
    served = holder.get().version

    assert served == "v1"
    assert "model refresh failed, still serving v1" in capsys.readouterr().out
    versions.fail = False
    clock.now = 20
    assert holder.get().version == "v2"


def test_refresh_zero_never_rereads_latest(versions: _Versions) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=0)
    holder.get()
    versions.latest = "v2"

    clock.now = 10**6

    assert holder.get().version == "v1"
    assert versions.latest_reads == 1


def test_pinned_version_never_reads_latest(versions: _Versions) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=1, pinned="v7")

    clock.now = 1000

    assert [holder.get().version for _ in range(3)] == ["v7"] * 3
    assert versions.latest_reads == 0


def test_only_the_triggering_request_waits_for_a_new_version(
    versions: _Versions,
) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=5)
    holder.get()
    versions.latest = "v2"
    versions.gate.clear()  # the new version's download hangs until released
    versions.fetching.clear()
    clock.now = 5
    trigger = threading.Thread(target=holder.get)
    trigger.start()
    # The trigger is inside the download (so it holds the refresh) before the
    # others ask, however slowly its thread was scheduled.
    assert versions.fetching.wait(60), "the refresh never started downloading"

    others = [holder.get().version for _ in range(20)]  # must not block
    versions.gate.set()
    trigger.join(60)

    assert not trigger.is_alive()
    assert others == ["v1"] * 20
    assert versions.latest_reads == 2  # the others did not read LATEST again
    assert holder.get().version == "v2"
