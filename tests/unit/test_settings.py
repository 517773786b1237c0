"""skserve.settings: every variable parsed once, and every error names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from skserve.errors import ConfigError
from skserve.runtimes import RUNTIME_CHOICES
from skserve.settings import DEFAULT_MAX_MODEL_BYTES, ModelURI, Settings
from tests.support import imported_after

KEY = "k" * 32
OLD_KEY = "o" * 32
VERSION = "20261127T073000Z-3f9a1c2b"


# --- MODEL_URI ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "root", "name", "pinned"),
    [
        ("gs://bucket/models/churn", "gs://bucket/models/churn", "churn", None),
        ("s3://bucket/churn/", "s3://bucket/churn", "churn", None),
        ("file:///srv/store/seed", "file:///srv/store/seed", "seed", None),
        ("model-store/default", "model-store/default", "default", None),
        (
            f"gs://bucket/models/churn/versions/{VERSION}",
            "gs://bucket/models/churn",
            "churn",
            VERSION,
        ),
        (f"/srv/store/seed/versions/{VERSION}/", "/srv/store/seed", "seed", VERSION),
    ],
)
def test_model_uri_parse_splits_root_name_and_pinned_version(
    uri: str, root: str, name: str, pinned: str | None
) -> None:
    parsed = ModelURI.parse(uri)

    assert (parsed.uri, parsed.root, parsed.name, parsed.pinned) == (
        uri,
        root,
        name,
        pinned,
    )


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://bucket/models/m", "http"),
        ("/srv/store/seed/versions/..", "invalid model version id"),
        ("/srv/store/seed/versions/-rm", "invalid model version id"),
    ],
)
def test_model_uri_parse_refuses_an_unusable_uri_naming_it(
    uri: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        ModelURI.parse(uri)

    assert raised.value.message.startswith(f"MODEL_URI={uri!r}: ")
    assert problem in raised.value.message


def test_model_uri_defaults_to_the_local_default_store() -> None:
    settings = Settings.from_env({})

    assert settings.model_uri == ModelURI.parse("model-store/default")
    assert settings.model_uri.name == "default"
    assert settings.model_uri.pinned is None


def test_model_uri_of_a_cloud_store_is_parsed_without_importing_its_sdk() -> None:
    """Parsing happens at cold start: no SDK import, no client, no network."""
    code = (
        "from skserve.settings import Settings\n"
        "for uri in ('s3://bucket/models/m', 'gs://bucket/models/m'):\n"
        "    assert Settings.from_env({'MODEL_URI': uri}).model_uri.root == uri"
    )

    assert imported_after(code, ("boto3", "botocore", "google.cloud.storage")) == []


# --- MODEL_RUNTIME --------------------------------------------------------------


def test_model_runtime_choices_are_the_documented_ones() -> None:
    assert set(RUNTIME_CHOICES) == {"auto", "sklearn", "onnx"}


@pytest.mark.parametrize(
    ("raw", "runtime"),
    [
        (None, "auto"),
        ("", "auto"),
        ("auto", "auto"),
        ("sklearn", "sklearn"),
        ("onnx", "onnx"),
        (" ONNX ", "onnx"),
        ("SkLearn", "sklearn"),
    ],
)
def test_model_runtime_accepts_each_choice_in_any_case(
    raw: str | None, runtime: str
) -> None:
    env = {} if raw is None else {"MODEL_RUNTIME": raw}

    assert Settings.from_env(env).runtime == runtime


@pytest.mark.parametrize("raw", ["tensorflow", "sk-learn", "auto,onnx"])
def test_model_runtime_refuses_an_unknown_value_listing_the_valid_ones(
    raw: str,
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"MODEL_RUNTIME": raw})

    message = raised.value.message
    assert message.startswith("MODEL_RUNTIME must be one of ")
    assert all(choice in message for choice in ("auto", "sklearn", "onnx"))
    assert repr(raw) in message


# --- MAX_MODEL_BYTES ------------------------------------------------------------


def test_max_model_bytes_has_a_documented_default() -> None:
    assert Settings.from_env({}).max_model_bytes == DEFAULT_MAX_MODEL_BYTES
    assert DEFAULT_MAX_MODEL_BYTES == 256 * 1024 * 1024


@pytest.mark.parametrize(("raw", "value"), [("1024", 1024), (" 5000000 ", 5000000)])
def test_max_model_bytes_is_read_as_bytes(raw: str, value: int) -> None:
    assert Settings.from_env({"MAX_MODEL_BYTES": raw}).max_model_bytes == value


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("1023", "must be >= 1024"), ("0", "must be >= 1024"), ("1GB", "integer")],
)
def test_max_model_bytes_refuses_a_bad_value_naming_it(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"MAX_MODEL_BYTES": raw})

    assert raised.value.message.startswith("MAX_MODEL_BYTES ")
    assert problem in raised.value.message


# --- secrets: API_KEYS, MODEL_SIGNING_KEY ------------------------------------------


@pytest.mark.parametrize("name", ["MODEL_SIGNING_KEY", "API_KEYS"])
def test_short_keys_are_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "short"})


def test_keys_can_come_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "api-keys"
    secret.write_text(f"{KEY}\n{OLD_KEY}\n")

    settings = Settings.from_env({"API_KEYS_FILE": str(secret)})

    assert settings.api_keys == (KEY, OLD_KEY)


def test_unreadable_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        Settings.from_env({"API_KEYS_FILE": str(tmp_path / "missing")})


def test_secret_file_that_is_not_utf8_names_the_variable(tmp_path: Path) -> None:
    secret = tmp_path / "keys"
    secret.write_bytes(b"\xff\xfe" * 20)

    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        Settings.from_env({"API_KEYS_FILE": str(secret)})
