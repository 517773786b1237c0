"""The environment variables the function reads, taken from its own code.

tests/test_deploy_*.py hold every deploy path (gcloud, Terraform,
serverless.yml) to these names, so a setting added to or renamed in
function/skserve/settings.py fails them until each path can set it.
"""

from __future__ import annotations

import ast
import dataclasses
import re

from tests.support import REPO

FUNCTION = REPO / "function"
SETTINGS = FUNCTION / "skserve" / "settings.py"
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{2,}")


def settings_fields() -> dict[str, set[str]]:
    """{Settings field: the environment variables Settings.from_env reads for it},
    following calls into settings.py's own helpers (e.g. _model_uri)."""
    tree = ast.parse(SETTINGS.read_text())
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def names(node: ast.AST, seen: frozenset[str]) -> set[str]:
        found: set[str] = set()
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Constant)
                and isinstance(sub.value, str)
                and ENV_NAME.fullmatch(sub.value)
            ):
                found.add(sub.value)
            elif (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Name)
                and sub.func.id in helpers
                and sub.func.id not in seen
            ):
                found |= names(helpers[sub.func.id], seen | {sub.func.id})
        return found

    from_env = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.name == "from_env"
    )
    call = next(
        n
        for n in ast.walk(from_env)
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "cls"
    )
    return {kw.arg: names(kw.value, frozenset()) for kw in call.keywords if kw.arg}


def settings_env_names() -> set[str]:
    """Every environment variable Settings reads."""
    return set().union(*settings_fields().values())


def function_env_names() -> set[str]:
    """Settings' names, and any read with os.environ elsewhere in function/."""
    found = settings_env_names()
    for path in FUNCTION.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("os.environ.get", "os.getenv")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
    return found


def unexposed(fields: dict[str, set[str]], exposed: set[str]) -> list[str]:
    """Settings fields none of whose variables a deploy path can set."""
    return sorted(field for field, names in fields.items() if not names & exposed)


def test_parser_sees_every_settings_field_and_its_variables() -> None:
    from skserve.settings import Settings

    fields = settings_fields()

    assert set(fields) == {field.name for field in dataclasses.fields(Settings)}
    assert all(fields.values()), "a field whose variable the parser missed"
    assert fields["model_uri"] == {"MODEL_URI"}
    assert fields["signing_keys"] == {"MODEL_SIGNING_KEY"}
    assert fields["api_keys"] == {"API_KEYS"}
