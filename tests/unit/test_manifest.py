"""skserve.manifest: nothing downloaded is trusted until it matches the manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from skserve.errors import IntegrityError
from skserve.manifest import (
    Manifest,
    check_version,
    new_version,
    sha256_hex,
    version_key,
)

DATA = b"pickled bytes"
FACTS: dict[str, Any] = {
    "name": "m",
    "version": "20261127T073000Z-3f9a1c2b",
    "task": "classification",
    "n_features": 2,
    "files": {"model.pkl": {"sha256": sha256_hex(DATA), "bytes": len(DATA)}},
}


def _raw(**changes: Any) -> bytes:
    return json.dumps({**FACTS, **changes}).encode()


def test_a_manifest_round_trips_through_its_bytes() -> None:
    manifest = Manifest.from_bytes(_raw())

    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    assert (manifest.version, manifest.task, manifest.n_features) == (
        FACTS["version"],
        "classification",
        2,
    )
    assert manifest.runtime == "sklearn"  # older manifests name no runtime
    assert manifest.twin is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"name": "m"}).encode(), "lacks version, task, n_features"),
        (_raw(task="ranking"), "invalid task"),
        (_raw(version="../x"), "invalid version id"),
        (_raw(files={"../model.pkl": {}}), "unsafe name"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_an_unusable_manifest_is_an_integrity_error(raw: bytes, problem: str) -> None:
    with pytest.raises(IntegrityError) as raised:
        Manifest.from_bytes(raw)

    assert problem in raised.value.message


def test_verify_accepts_exactly_the_listed_bytes() -> None:
    Manifest.from_bytes(_raw()).verify("model.pkl", DATA)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (DATA + b"!", f"is {len(DATA) + 1} bytes, manifest says {len(DATA)}"),
        (DATA[:-1] + b"?", "does not match its SHA-256"),
    ],
)
def test_verify_refuses_other_bytes_before_unpickling(
    data: bytes, problem: str
) -> None:
    with pytest.raises(IntegrityError) as raised:
        Manifest.from_bytes(_raw()).verify("model.pkl", data)

    assert problem in raised.value.message
    assert raised.value.message.endswith("refusing to unpickle it")


def test_verify_refuses_a_file_the_manifest_does_not_list() -> None:
    with pytest.raises(IntegrityError, match=r"does not list model\.onnx"):
        Manifest.from_bytes(_raw()).verify("model.onnx", DATA)


def test_version_ids_sort_by_time_and_do_not_collide() -> None:
    first = new_version(datetime(2026, 11, 27, 7, 30, 0, 1000, tzinfo=UTC))
    second = new_version(datetime(2026, 11, 27, 7, 30, 0, 2000, tzinfo=UTC))

    assert first.startswith("20261127T073000.001Z-")
    assert first < second
    assert check_version(first) == first
    assert len({new_version() for _ in range(50)}) == 50


@pytest.mark.parametrize("version", ["..", "../../etc", "a/b", "", "-x", "v" * 129])
def test_unsafe_version_ids_never_become_keys(version: str) -> None:
    with pytest.raises(IntegrityError):
        version_key(version, "model.pkl")
