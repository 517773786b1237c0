"""The deploy tests' view of the settings: every field and its variables."""

from __future__ import annotations

import dataclasses

from tests.support import settings_fields


def test_parser_sees_every_settings_field_and_its_variables() -> None:
    from skserve.settings import Settings

    fields = settings_fields()

    assert set(fields) == {field.name for field in dataclasses.fields(Settings)}
    assert all(fields.values()), "a field whose variable the parser missed"
    assert fields["model_uri"] == {"MODEL_URI"}
    assert fields["signing_keys"] == {"MODEL_SIGNING_KEY"}
    assert fields["api_keys"] == {"API_KEYS"}
