"""The current model of an instance: loaded lazily and once, retried after a
failure, swapped atomically on refresh.

functions-framework serves many threads per instance; `ModelHolder` makes the
first request load the model while concurrent ones wait for that same load.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from skserve.errors import Code, Unavailable
from skserve.loader import LoadedModel, Pointer
from skserve.logs import log, log_exception, log_load


class ModelHolder:
    """Holds the current model: lazy first load, retry after failure, hot refresh.

    A failed load is never cached: requests inside the backoff window get the
    same 503 at once; the first request after it tries again. A refresh never
    moves to a promotion older than the one being served (a replayed signed
    LATEST); a rollback with `train promote` is a new promotion, and is taken.
    """

    def __init__(
        self,
        fetch: Callable[[str], LoadedModel],
        latest: Callable[[], Pointer | str],
        *,
        pinned: str | None = None,
        refresh_seconds: int = 0,
        backoff: tuple[float, float] = (1.0, 10.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._latest = latest
        self._pinned = pinned
        self._refresh = 0 if pinned else refresh_seconds
        self._backoff = backoff
        self._clock = clock
        self._model: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: Unavailable | None = None
        self._next_check = 0.0
        self._promoted_at: datetime | None = None  # of the version being served
        self.loads = 0  # successful loads, for logs and tests

    @property
    def current(self) -> LoadedModel | None:
        """The loaded model, or None; never triggers a load."""
        return self._model

    def get(self) -> LoadedModel:
        """The model to serve this request, loading it first if needed."""
        model = self._model
        if model is None:
            with self._load_lock:
                model = self._model  # another thread may have loaded it meanwhile
                if model is None:
                    model = self._first_load()
        elif self._refresh and self._clock() >= self._next_check:
            model = self._maybe_refresh(model)
        return model

    def _first_load(self) -> LoadedModel:
        now = self._clock()
        if self._last_error is not None and now < self._retry_at:
            raise self._unavailable(self._last_error, self._retry_at - now)
        version: str | None = self._pinned
        try:
            pointer = Pointer(self._pinned) if self._pinned else self._pointer()
            version = pointer.version
            model = self._load(pointer.version, started=now)
            self._promoted_at = pointer.promoted_at
        except Exception as exc:
            error = exc if isinstance(exc, Unavailable) else None
            if error is None:
                log_exception("unexpected error while loading the model", exc)
                error = Unavailable("the model could not be loaded; see the logs")
            self._failures += 1
            # Doubling stops at the cap: the exponent too, or a store down for
            # hours would make 2 ** failures a float overflow.
            doublings = min(self._failures - 1, 64)
            delay = min(self._backoff[0] * 2**doublings, self._backoff[1])
            self._retry_at = self._clock() + delay
            self._last_error = error
            # The load's line, reading LATEST included: a store that is down
            # is a failed load even before any version is known.
            log_load(
                "ERROR",
                f"model load failed: {error.message}",
                ok=False,
                seconds=self._clock() - now,
                model_version=version,
                code=str(error.code),
                retry_in_s=delay,
            )
            raise self._unavailable(error, delay) from None
        self._failures, self._last_error = 0, None
        self._model = model
        return model

    def _load(self, version: str, *, started: float) -> LoadedModel:
        """Fetch `version` and log the load that began at `started` (a failure
        is logged by the caller, which knows what it means for serving)."""
        model = self._fetch(version)
        self.loads += 1
        self._next_check = self._clock() + self._refresh
        log_load(
            "INFO",
            f"loaded model version {model.version} on {model.runtime.name}",
            ok=True,
            seconds=self._clock() - started,
            model_version=model.version,
            model=model.manifest.data.get("name"),
            runtime=model.runtime.name,
            bytes_read=model.bytes_read,
        )
        return model

    def _maybe_refresh(self, model: LoadedModel) -> LoadedModel:
        # Only the request that wins this lock checks; the others keep serving.
        if not self._refresh_lock.acquire(blocking=False):
            return model
        loading: str | None = None  # the version being loaded, once known
        started = self._clock()
        try:
            self._next_check = started + self._refresh
            pointer = self._pointer()
            if self._older(pointer):
                log(
                    "WARNING",
                    f"LATEST points at {pointer.version}, promoted before the "
                    f"promotion of {model.version} being served; keeping "
                    f"{model.version} (promote a version again to move to it)",
                    model_version=model.version,
                )
            elif pointer.version != model.version:
                loading = pointer.version
                self._model = model = self._load(pointer.version, started=started)
                self._promoted_at = pointer.promoted_at
            elif pointer.promoted_at is not None:
                self._promoted_at = pointer.promoted_at
        except Exception as exc:
            message = exc.message if isinstance(exc, Unavailable) else repr(exc)
            text = f"model refresh failed, still serving {model.version}: {message}"
            if loading is None:  # LATEST could not be read: no load was tried
                log("WARNING", text, model_version=model.version)
            else:
                log_load(
                    "WARNING",
                    text,
                    ok=False,
                    seconds=self._clock() - started,
                    model_version=loading,
                    code=str(getattr(exc, "code", Code.INTERNAL_ERROR)),
                    serving=model.version,
                )
        finally:
            self._refresh_lock.release()
        return model

    def _pointer(self) -> Pointer:
        latest = self._latest()
        return latest if isinstance(latest, Pointer) else Pointer(latest)

    def _older(self, pointer: Pointer) -> bool:
        """Whether `pointer` is a promotion older than the one being served."""
        if pointer.promoted_at is None or self._promoted_at is None:
            return False
        return pointer.promoted_at < self._promoted_at

    @staticmethod
    def _unavailable(error: Unavailable, wait: float) -> Unavailable:
        # What the client sees: the code and a message without store locations
        # or SDK text; the log line above has the full detail.
        fresh = Unavailable(error.public_message(), code=error.code)
        fresh.retry_after = max(1, math.ceil(wait))
        return fresh
