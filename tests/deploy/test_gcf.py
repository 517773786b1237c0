"""Cloud Functions (gen2, python312): function/ is the exact upload, and it serves.

The bundle is built the way `gcloud functions deploy --source=function` builds
it (honouring function/.gcloudignore), its requirements.txt is installed into a
fresh Python 3.12 venv, and that venv's functions-framework serves a published
model from inside the bundle folder, as the Cloud Functions runtime does. A
missing dependency or an import that escapes function/ fails here. The slim
profile's upload, staged by `infra/deploy-gcloud.sh --profile slim`, is served
the same way, from its ONNX twin, by a venv without scikit-learn.
"""

from __future__ import annotations

import ast
import fnmatch
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import hcl2
import joblib
import numpy as np
import pytest
import requests

from tests.deploy.frames import FRAME_COLUMNS, MIXED_ROWS, frame_of, publish_canonical
from tests.deploy.sizes import assert_documented, documented_mb, mentioned_mb
from tests.support import (
    REPO,
    SEED_FEATURES,
    FunctionServer,
    GCSEmulator,
    entry_points,
    function_env_names,
    function_pins,
    published_model,
    run_train,
    settings_env_names,
    settings_fields,
    unexposed,
)
from tests.venvs import clean_env, install_venv

pytestmark = pytest.mark.e2e

FUNCTION = REPO / "function"
DEPLOY_SCRIPT = REPO / "infra" / "deploy-gcloud.sh"


# --- .gcloudignore, as gcloud reads it ----------------------------------------------


def _glob_regex(pattern: str) -> str:
    """A gitignore glob as a regex: `**` spans folders; `*`, `?` and [..] do not."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class IgnoreRule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


class GcloudIgnore:
    """The rules of a .gcloudignore (`gcloud topic gcloudignore`: gitignore syntax).

    A pattern with a slash before its end is anchored to the file's folder, one
    without matches at any depth; a trailing slash matches folders only; `!`
    re-includes; the last matching rule wins.
    """

    def __init__(self, text: str) -> None:
        self.rules: list[IgnoreRule] = []
        for raw in text.splitlines():
            line = raw.rstrip()
            assert not line.startswith("#!"), f"directive not modelled here: {line}"
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line.removeprefix("!")
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            body = _glob_regex(line.lstrip("/"))
            regex = re.compile(("" if anchored else "(?:.*/)?") + body + "$")
            self.rules.append(IgnoreRule(regex, negate, dir_only))

    def ignores(self, path: str, is_dir: bool) -> bool:
        ignored = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(path):
                ignored = not rule.negate
        return ignored


def walk_included(root: Path, excluded: Callable[..., bool]) -> list[str]:
    """Relative paths of the files a tool uploads: excluded folders are pruned."""
    kept: list[str] = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(
            d for d in dirs if not excluded((rel / d).as_posix(), is_dir=True)
        )
        kept += [
            (rel / f).as_posix()
            for f in files
            if not excluded((rel / f).as_posix(), is_dir=False)
        ]
    return sorted(kept)


def gcloud_upload(source: Path) -> list[str]:
    """What `gcloud functions deploy --source=<source>` uploads."""
    rules = GcloudIgnore((source / ".gcloudignore").read_text())
    return walk_included(source, rules.ignores)


def doublestar_match(pattern: str, path: str) -> bool:
    """bmatcuk/doublestar PathMatch, as Terraform's archive_file applies excludes."""
    parts, segments = pattern.split("/"), path.split("/")

    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(segments)
        if parts[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(segments) + 1))
        return (
            j < len(segments)
            and fnmatch.fnmatchcase(segments[j], parts[i])
            and match(i + 1, j + 1)
        )

    return match(0, 0)


def terraform_archive(source: Path) -> list[str]:
    """What infra/main.tf's archive_file zips from `source`: the files
    `fileset(dir, "**")` finds (dotfiles too) minus those any of its
    `source_excludes` patterns finds."""
    locals_ = hcl2.load((REPO / "infra" / "main.tf").open())["locals"][0]
    excludes = [pattern.strip('"') for pattern in locals_["source_excludes"]]
    every = walk_included(source, lambda path, is_dir: False)
    return [f for f in every if not any(doublestar_match(p, f) for p in excludes)]


def build_bundle(source: Path, target: Path) -> Path:
    """Copy what gcloud would upload from `source` into `target`."""
    for rel in gcloud_upload(source):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target / rel)
    return target


def bundle_imports(bundle: Path) -> set[tuple[str, str]]:
    """Every (module, name) the bundle's code imports, lazy imports included;
    name is "" for `import module`."""
    names: set[tuple[str, str]] = set()
    for path in bundle.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update((alias.name, "") for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.update((node.module, alias.name) for alias in node.names)
    return names


# `from module import name` as Python resolves it: an attribute or a submodule.
RESOLVE_IMPORTS = """
import importlib, json, sys
failed = {}
for module, name in json.loads(sys.argv[1]):
    try:
        found = importlib.import_module(module)
        if name and not hasattr(found, name):
            importlib.import_module(f"{module}.{name}")
    except Exception as exc:
        failed[f"{module}:{name}"] = repr(exc)
print(json.dumps({"failed": failed, "version": sys.version_info[:2]}))
"""


class BundleServer(FunctionServer):
    """The bundle venv's functions-framework, started inside the bundle folder the
    way Cloud Functions starts it: `functions-framework --target=predict` (the
    source defaults to main.py in the working directory)."""

    def __init__(
        self, venv: Path, bundle: Path, env: Mapping[str, str], tmp: Path
    ) -> None:
        self.venv = venv
        super().__init__(env, tmp, cwd=bundle, wait=False)
        self.wait_ready(timeout=120)

    def command(self, cwd: Path) -> list[str]:
        return [
            str(self.venv / "bin" / "functions-framework"),
            "--target=predict",
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return clean_env(self.venv, env)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """function/ exactly as gcloud uploads it."""
    return build_bundle(FUNCTION, tmp_path_factory.mktemp("gcf") / "bundle")


@pytest.fixture(scope="module")
def bundle_venv(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Python 3.12 venv holding only the bundle's requirements.txt."""
    return install_venv(bundle / "requirements.txt", tmp_path_factory.mktemp("gcf"))


def dry_run(
    *args: str, env: Mapping[str, str] | None = None, script: Path = DEPLOY_SCRIPT
) -> list[list[str]]:
    """infra/deploy-gcloud.sh --dry-run ARGS, one argv per printed command."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    result = subprocess.run(
        ["bash", str(script), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def flag(argv: list[str], name: str) -> str:
    """The value of --name=VALUE in a gcloud command line."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} appears {len(values)} times in {argv}"
    return values[0]


def gcloud_dict(value: str) -> dict[str, str]:
    """Parse a gcloud KEY=VALUE list, with its ^DELIM^ alternate-delimiter syntax."""
    delimiter = ","
    if match := re.match(r"^\^(.)\^", value):
        delimiter, value = match.group(1), value[match.end() :]
    return dict(item.split("=", 1) for item in value.split(delimiter))


# --- The upload -------------------------------------------------------------------


def test_upload_is_main_py_pinned_requirements_and_the_serving_package(
    bundle: Path,
) -> None:
    files = set(gcloud_upload(FUNCTION))
    package = {
        p.relative_to(FUNCTION).as_posix()
        for p in (FUNCTION / "skserve").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }

    assert {"main.py", "requirements.txt"} <= files
    assert package and package <= files
    assert files == {"main.py", "requirements.txt"} | package
    assert sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*.py")) == (
        sorted(f for f in files if f.endswith(".py"))
    )


def test_requirements_pin_every_dependency_exactly() -> None:
    names = sorted(p.name for p in FUNCTION.glob("requirements*.txt"))

    assert names == [
        "requirements-lambda-slim.txt",
        "requirements-lambda.txt",
        "requirements-slim.txt",
        "requirements.txt",
    ]
    for name in names:
        lines = [
            line.strip()
            for line in (FUNCTION / name).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert lines, name
        for line in lines:
            assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[a-z0-9,_-]+\])?==[\w.]+", line), (
                f"{name}: {line!r} is not pinned with =="
            )


def test_gcloudignore_leaves_tests_caches_stores_and_lambda_files_out(
    tmp_path: Path,
) -> None:
    source = tmp_path / "function"
    shutil.copytree(FUNCTION, source, ignore=shutil.ignore_patterns("__pycache__"))
    junk = [
        "__pycache__/main.cpython-312.pyc",
        "skserve/__pycache__/http.cpython-312.pyc",
        "skserve/stale.pyc",
        "tests/test_handler.py",
        "skserve/tests/helpers.py",
        "test_local.py",
        "skserve/model_test.py",
        "conftest.py",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/content",
        ".hypothesis/examples/x",
        ".venv/lib/site.py",
        "venv/bin/activate",
        ".env",
        "model-store/default/LATEST",
        "model.pkl",
        "skserve/model.joblib",
        ".git/HEAD",
        ".gitignore",
    ]
    kept = ["skserve/testing_notes.md", "skserve/contest.py", "templates/index.html"]
    for rel in junk + kept:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text("x")

    uploaded = set(gcloud_upload(source))

    assert set(kept) <= uploaded
    assert not uploaded & set(junk)
    assert {
        ".gcloudignore",
        "lambda_main.py",
        "requirements-lambda.txt",
        "requirements-slim.txt",
        "requirements-lambda-slim.txt",
    }.isdisjoint(uploaded)
    assert uploaded == set(gcloud_upload(FUNCTION)) | set(kept)


def test_terraform_archive_holds_the_same_files_as_the_gcloud_upload(
    tmp_path: Path,
) -> None:
    source = tmp_path / "function"
    shutil.copytree(FUNCTION, source)
    for rel in [
        "__pycache__/main.cpython-312.pyc",
        "skserve/__pycache__/x.cpython-312.pyc",
        "skserve/tests/test_x.py",
        "tests/conftest.py",
        "skserve/thing_test.py",
        "test_main.py",
        ".venv/bin/python",
        "model-store/default/LATEST",
        "skserve/model.pkl",
        ".pytest_cache/README.md",
        ".env",
        ".git/HEAD",
        "skserve/testing_notes.md",
        "skserve/requirements-dev.txt",
    ]:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text("x")

    assert "skserve/testing_notes.md" in terraform_archive(source)
    assert terraform_archive(source) == gcloud_upload(source)
    assert terraform_archive(FUNCTION) == gcloud_upload(FUNCTION)


def test_every_import_in_the_upload_resolves_in_a_fresh_python312_venv(
    bundle: Path, bundle_venv: Path
) -> None:
    imports = sorted(bundle_imports(bundle))
    result = subprocess.run(
        [
            str(bundle_venv / "bin" / "python"),
            "-c",
            RESOLVE_IMPORTS,
            json.dumps(imports),
        ],
        cwd=bundle,
        env=clean_env(bundle_venv, {}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])

    assert {("google.cloud", "storage"), ("boto3", ""), ("flask", "")} <= set(imports)
    assert ("functions_framework", "") in imports
    assert report == {"failed": {}, "version": [3, 12]}


def test_upload_serves_a_published_model_under_python312_functions_framework(
    bundle: Path, bundle_venv: Path, model_dir: Path, tmp_path: Path
) -> None:
    model = published_model(model_dir)
    rows = [SEED_FEATURES, [0.0] * 10]

    with BundleServer(
        bundle_venv, bundle, {"MODEL_URI": str(model_dir)}, tmp_path
    ) as server:
        single = server.post({"features": SEED_FEATURES})
        batch = server.post({"instances": rows, "probabilities": True})
        metadata = requests.get(server.url + "/metadata", timeout=60)
        wrong = server.post({"features": [1.0, 2.0]})

    assert single.status_code == 200, server.logs()
    assert single.json()["prediction"] == model.predict([SEED_FEATURES])[0]
    assert batch.json()["predictions"] == model.predict(rows).tolist()
    np.testing.assert_allclose(batch.json()["probabilities"], model.predict_proba(rows))
    assert metadata.status_code == 200
    assert metadata.json()["model_version"] == single.headers["X-Model-Version"]
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "wrong_feature_count"


def test_upload_serves_a_dataframe_pipeline_with_nulls_text_and_unseen_categories(
    bundle: Path, bundle_venv: Path, tmp_path: Path
) -> None:
    """function/ deployed alone (its requirements.txt, python312) serves the
    canonical mixed-type pipeline's pickle, with the pinned pandas, exactly as
    its own predict on a DataFrame (without a twin: the path pandas serves)."""
    store = tmp_path / "store"
    published, model, frame = publish_canonical(
        tmp_path / "frame", str(store), "c", "--no-twin"
    )
    assert published.returncode == 0, published.stderr
    version = (store / "c" / "LATEST").read_text().strip()
    ordered = [[row[name] for name in FRAME_COLUMNS] for row in MIXED_ROWS]
    expected = model.predict(frame_of(MIXED_ROWS, frame))

    with BundleServer(
        bundle_venv, bundle, {"MODEL_URI": str(store / "c")}, tmp_path
    ) as server:
        single = server.post({"features": MIXED_ROWS[0]})
        batch = server.post({"instances": ordered, "probabilities": True})
        named = server.post({"instances": MIXED_ROWS})
        refused = server.post({"features": {**MIXED_ROWS[0], "plan": 3}})
        metadata = requests.get(server.url + "/metadata", timeout=60)

    assert "takes a pandas DataFrame" in published.stdout
    assert single.status_code == 200, server.logs()
    assert single.json() == {"prediction": expected[0], "model_version": version}
    assert batch.json()["predictions"] == expected.tolist() == ["yes", "no"]
    np.testing.assert_allclose(
        batch.json()["probabilities"],
        model.predict_proba(frame_of(MIXED_ROWS, frame)),
        rtol=0,
        atol=1e-12,
    )
    assert named.json()["predictions"] == expected.tolist()
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_value"
    assert "('plan') must be a string, got 3" in refused.json()["error"]["message"]
    assert metadata.json()["served_by"] == "sklearn"


# --- gcloud: the deploy script ------------------------------------------------------


def test_dry_run_prints_bucket_account_publish_and_deploy_in_order() -> None:
    commands = dry_run("--project", "acme-ml", "--region", "europe-west1")
    heads = [" ".join(argv[:4]) for argv in commands]

    assert heads == [
        "gcloud services enable artifactregistry.googleapis.com",
        "gcloud storage buckets create",
        "gcloud storage buckets update",
        "gcloud iam service-accounts create",
        "gcloud iam service-accounts create",
        *["gcloud projects add-iam-policy-binding acme-ml"] * 3,
        "gcloud storage buckets add-iam-policy-binding",
        "python -m train --store",
        "gcloud functions deploy sklearn-predict",
        "gcloud functions describe sklearn-predict",
    ]
    enable, create, update, account, _, *_, binding, train, deploy, describe = commands
    assert {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "iam.googleapis.com",
        # projects add-iam-policy-binding goes through Resource Manager.
        "cloudresourcemanager.googleapis.com",
    } <= set(enable)
    assert create[4] == "gs://acme-ml-sklearn-models"
    assert {"--uniform-bucket-level-access", "--public-access-prevention"} <= set(
        create
    )
    assert flag(create, "location") == "europe-west1"
    assert "--versioning" in update
    email = f"{account[4]}@acme-ml.iam.gserviceaccount.com"
    assert flag(binding, "member") == f"serviceAccount:{email}"
    assert flag(binding, "role") == "roles/storage.objectViewer"
    assert train == [
        "python",
        "-m",
        "train",
        "--store",
        "gs://acme-ml-sklearn-models/models",
        "--name",
        "default",
    ]
    assert (
        'startsWith("projects/_/buckets/acme-ml-sklearn-models/objects/models/default/")'
        in flag(binding, "condition")
    )
    assert flag(deploy, "service-account") == email
    assert flag(describe, "format") == "value(serviceConfig.uri)"


def test_dry_run_update_makes_an_existing_bucket_uniform_private_and_pruned() -> None:
    """An existing --bucket gets every setting a new one gets: IAM conditions
    need uniform access, and replaced versions expire as in Terraform."""
    commands = dry_run(
        "--project", "acme-ml", "--bucket", "team-models", "--noncurrent-days", "7"
    )
    update = next(
        a for a in commands if a[:4] == ["gcloud", "storage", "buckets", "update"]
    )
    lifecycle = REPO / flag(update, "lifecycle-file")

    assert update[4] == "gs://team-models"
    assert {
        "--versioning",
        "--uniform-bucket-level-access",
        "--public-access-prevention",
    } <= set(update)
    assert lifecycle.is_relative_to(REPO / "infra" / ".build")  # gitignored
    assert json.loads(lifecycle.read_text()) == {
        "rule": [
            {
                "action": {"type": "Delete"},
                "condition": {"daysSinceNoncurrentTime": 7},
            }
        ]
    }


def test_dry_run_builds_with_its_own_build_account_and_documented_roles() -> None:
    commands = dry_run("--project", "acme-ml", "--build-service-account", "ml-builder")
    accounts = [
        a for a in commands if a[:4] == ["gcloud", "iam", "service-accounts", "create"]
    ]
    grants = [
        a for a in commands if a[:3] == ["gcloud", "projects", "add-iam-policy-binding"]
    ]
    *_, deploy, _ = commands
    build_email = "ml-builder@acme-ml.iam.gserviceaccount.com"

    assert [a[4] for a in accounts] == ["sklearn-predict", "ml-builder"]
    assert flag(deploy, "build-service-account") == (
        f"projects/acme-ml/serviceAccounts/{build_email}"
    )
    assert {flag(g, "member") for g in grants} == {f"serviceAccount:{build_email}"}
    # Google's list for a custom build account; not roles/cloudbuild.builds.builder.
    assert {flag(g, "role"): flag(g, "condition") for g in grants} == {
        # Without None gcloud prompts when the project has conditional bindings.
        "roles/logging.logWriter": "None",
        "roles/artifactregistry.writer": "None",
        # Every bucket but the model bucket (tests/deploy/test_terraform.py
        # evaluates the expression against bucket and object names).
        "roles/storage.objectAdmin": "expression=resource.name != "
        '"projects/_/buckets/acme-ml-sklearn-models" && '
        '!resource.name.startsWith("projects/_/buckets/acme-ml-sklearn-models/")'
        ",title=not-the-model-bucket",
    }


@pytest.mark.parametrize("ingress", ["all", "internal-only", "internal-and-gclb"])
def test_dry_run_passes_the_ingress_setting(ingress: str) -> None:
    *_, deploy, _ = dry_run("--project", "acme-ml", "--ingress-settings", ingress)

    assert flag(deploy, "ingress-settings") == ingress


@pytest.mark.parametrize(
    ("cpu", "concurrency"), [(".583", "1"), ("0.5", "1"), ("1", "80"), ("2000m", "8")]
)
def test_dry_run_accepts_concurrency_cloud_run_accepts(
    cpu: str, concurrency: str
) -> None:
    *_, deploy, _ = dry_run(
        "--project", "acme-ml", "--cpu", cpu, "--concurrency", concurrency
    )

    assert flag(deploy, "cpu") == cpu
    assert flag(deploy, "concurrency") == concurrency


FAKE_GCLOUD = """#!/bin/sh
# Records each call; no bucket or account exists yet, and the first two calls
# of buckets add-iam-policy-binding fail as IAM does for an account just created.
echo "$*" >>"$CALLS"
case "$*" in
  *"buckets describe"* | *"service-accounts describe"*) exit 1 ;;
  *"buckets add-iam-policy-binding"*)
    count=$(grep -c "buckets add-iam-policy-binding" "$CALLS")
    if [ "$count" -le 2 ]; then
      echo "ERROR: Service account $4 does not exist." >&2
      exit 1
    fi
    ;;
esac
exit 0
"""


def test_binding_a_new_account_is_retried_with_backoff(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "sleep").write_text('#!/bin/sh\necho "$1" >>"$SLEEPS"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    calls, sleeps = tmp_path / "calls", tmp_path / "sleeps"

    result = subprocess.run(
        ["bash", str(DEPLOY_SCRIPT), "--project", "acme-ml", "--skip-train"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CALLS": str(calls),
            "SLEEPS": str(sleeps),
        },
    )
    bindings = [
        line for line in calls.read_text().splitlines() if "buckets add-iam" in line
    ]

    assert result.returncode == 0, result.stderr
    assert len(bindings) == 3 and len(set(bindings)) == 1
    assert sleeps.read_text().split() == ["2", "4"]
    assert result.stderr.count("retrying") == 2
    assert "functions deploy sklearn-predict" in calls.read_text()


def test_dry_run_deploy_flags_match_the_code_and_the_bundle() -> None:
    *_, train, deploy, _ = dry_run("--project", "acme-ml", "--concurrency", "8")
    env = gcloud_dict(flag(deploy, "set-env-vars"))
    source = REPO / flag(deploy, "source")

    assert "--gen2" in deploy and "--trigger-http" in deploy
    assert flag(deploy, "runtime") == "python312"
    assert flag(deploy, "entry-point") in entry_points()
    assert source == FUNCTION and (source / ".gcloudignore").is_file()
    assert flag(deploy, "region") == "us-central1"
    assert flag(deploy, "concurrency") == env["THREADS"] == "8"
    assert env["MODEL_URI"] == f"{train[4]}/{train[6]}"
    assert set(env) - {"THREADS"} <= function_env_names()
    assert env["GOOGLE_CLOUD_PROJECT"] == "acme-ml"
    assert "--no-allow-unauthenticated" in deploy
    assert "--allow-unauthenticated" not in deploy


def test_dry_run_public_secrets_and_comma_settings() -> None:
    *_, deploy, _ = dry_run(
        "--project",
        "acme-ml",
        "--allow-unauthenticated",
        "--skip-train",
        "--env",
        "CORS_ALLOW_ORIGINS=https://a.example,https://b.example",
        "--env",
        "MAX_ROWS=500",
        "--secret",
        "API_KEYS=sklearn-api-keys",
        "--secret",
        "MODEL_SIGNING_KEY=sklearn-signing:3",
    )
    commands = dry_run(
        "--project", "acme-ml", "--skip-train", "--secret", "API_KEYS=keys"
    )
    env = gcloud_dict(flag(deploy, "set-env-vars"))
    secrets = gcloud_dict(flag(deploy, "set-secrets"))

    assert "--allow-unauthenticated" in deploy
    assert "--no-allow-unauthenticated" not in deploy
    assert env["CORS_ALLOW_ORIGINS"] == "https://a.example,https://b.example"
    assert env["MAX_ROWS"] == "500"
    assert secrets == {
        "API_KEYS": "sklearn-api-keys:latest",
        "MODEL_SIGNING_KEY": "sklearn-signing:3",
    }
    assert set(secrets) <= settings_env_names()
    assert not set(secrets) & set(env)
    assert not any(argv[:3] == ["python", "-m", "train"] for argv in commands)
    (grant,) = [
        argv
        for argv in commands
        if argv[:4] == ["gcloud", "secrets", "add-iam-policy-binding", "keys"]
    ]
    # gcloud refuses to run on a secret with conditional bindings without it
    # when it cannot prompt.
    assert flag(grant, "condition") == "None"
    assert flag(grant, "role") == "roles/secretmanager.secretAccessor"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--project is required"),
        (("--project", "p", "--env", "THREADS=9"), "THREADS from --concurrency"),
        (("--project", "p", "--env", "MODEL_URI=gs://x/y"), "not one of"),
        (("--project", "p", "--secret", "MAX_ROWS=s"), "not one of"),
        (("--project", "p", "--concurrency", "0"), "positive integer"),
        (("--project", "p", "--concurrency", "1001"), "from 1 to 1000"),
        (("--project", "p", "--model", "a/b"), "single path segment"),
        (("--project", "p", "--bogus"), "unknown argument"),
        # A comma splits gcloud's --condition; a quote ends the CEL string.
        (("--project", "p", "--prefix", "a,title=x"), "--prefix must be"),
        (("--project", "p", "--prefix", 'a")||true||("'), "--prefix must be"),
        (("--project", "p", "--prefix", "/models"), "leading or trailing slashes"),
        (("--project", "p", "--prefix", "models/"), "leading or trailing slashes"),
        (("--project", "p", "--prefix", "a/../b"), "'..' segments"),
        (("--project", "p", "--bucket", 'b"x'), "--bucket must be a bucket name"),
        (("--project", "p", "--function", "Predict"), "--function must be"),
        (("--project", "p", "--service-account", "fn"), "6 to 30"),
        (("--project", "p", "--build-service-account", "sklearn-predict"), "differ"),
        (("--project", "p", "--cpu", "0.5"), "needs --cpu of at least 1"),
        (("--project", "p", "--cpu", "500m", "--concurrency", "2"), "at least 1"),
        (("--project", "p", "--cpu", "one"), "--cpu must be 0.08 to 1 vCPU"),
        # Values Cloud Run would refuse only when it creates the function.
        (("--project", "p", "--cpu", "1.5"), "or 1, 2, 4, 6 or 8"),
        (("--project", "p", "--cpu", "1500m"), "or 1, 2, 4, 6 or 8"),
        (("--project", "p", "--cpu", "0", "--concurrency", "1"), "0.08 to 1"),
        (("--project", "p", "--cpu", "0.05", "--concurrency", "1"), "0.08 to 1"),
        (
            ("--project", "p", "--cpu", "0.5", "--memory", "2Gi", "--concurrency", "1"),
            "below 1 vCPU at most 1Gi",
        ),
        (("--project", "p", "--memory", "64Mi"), "from 128Mi to 32Gi"),
        (("--project", "p", "--memory", "1GB"), "unit k, M, G, Mi or Gi"),
        (("--project", "p", "--allow-unauthenticated"), "--public-without-api-keys"),
        (("--project", "p", "--ingress-settings", "public"), "--ingress-settings"),
        (("--project", "p", "--noncurrent-days", "0"), "at least 1"),
        (("--project", "p", "--profile", "tiny"), "--profile must be full or slim"),
        (
            ("--project", "p", "--profile", "slim", "--env", "MODEL_RUNTIME=sklearn"),
            "no scikit-learn",
        ),
    ],
)
def test_dry_run_refuses_bad_arguments_and_prints_no_command(
    args: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        ["bash", str(DEPLOY_SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_dry_run_publish_and_deploy_commands_serve_from_gcs(
    bundle: Path,
    bundle_venv: Path,
    gcs_emulator: GCSEmulator,
    tmp_path: Path,
) -> None:
    from google.cloud import storage

    prefix = f"deploy-{uuid.uuid4().hex[:8]}"
    *_, train, deploy, _ = dry_run(
        "--project",
        "acme-ml",
        "--bucket",
        "models",
        "--prefix",
        prefix,
        "--model",
        "demo",
        env={"PYTHON": sys.executable},
    )
    emulator = {"STORAGE_EMULATOR_HOST": gcs_emulator.host}
    published = subprocess.run(
        train,
        cwd=REPO,
        env={**os.environ, **emulator},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert published.returncode == 0, published.stderr
    os.environ.update(emulator)
    bucket = storage.Client().bucket("models")
    version = bucket.blob(f"{prefix}/demo/LATEST").download_as_bytes().decode().strip()
    model = joblib.load(
        io.BytesIO(
            bucket.blob(
                f"{prefix}/demo/versions/{version}/model.pkl"
            ).download_as_bytes()
        )
    )
    settings = gcloud_dict(flag(deploy, "set-env-vars"))

    with BundleServer(
        bundle_venv, bundle, {**settings, **emulator}, tmp_path
    ) as server:
        response = server.post({"instances": [SEED_FEATURES, [0.0] * 10]})

    assert settings["MODEL_URI"] == f"gs://models/{prefix}/demo"
    assert response.status_code == 200, server.logs()
    assert response.json()["predictions"] == (
        model.predict([SEED_FEATURES, [0.0] * 10]).tolist()
    )
    assert response.headers["X-Model-Version"] == version


def test_docs_dry_run_shows_what_the_script_prints() -> None:
    """The gcloud page's dry run, its shown lines parsed as the shell would."""
    page = (REPO / "docs" / "deploy" / "gcloud.md").read_text()
    match = re.search(
        r"```sh\n(infra/deploy-gcloud\.sh [^\n]*--dry-run)\n((?:# [^\n]*\n)+)```",
        page,
    )
    assert match, "the gcloud page lost its dry run"
    args = shlex.split(match[1])[1:]
    shown = [line.removeprefix("# ") for line in match[2].splitlines()]

    printed = [shlex.join(argv) for argv in dry_run(*args)]

    assert [shlex.join(shlex.split(line)) for line in shown] == printed


def test_script_can_set_every_setting_the_function_reads() -> None:
    script = DEPLOY_SCRIPT.read_text()
    lists = {
        name: set(re.search(rf"^{name}=\(([^)]*)\)", script, re.M)[1].split())
        for name in ("ENV_SETTINGS", "SECRET_SETTINGS")
    }
    *_, deploy, _ = dry_run("--project", "acme-ml")
    computed = set(gcloud_dict(flag(deploy, "set-env-vars")))
    exposed = lists["ENV_SETTINGS"] | lists["SECRET_SETTINGS"] | computed

    assert unexposed(settings_fields(), exposed) == []
    assert exposed - {"THREADS"} <= function_env_names()
    assert lists["SECRET_SETTINGS"] == {"API_KEYS", "MODEL_SIGNING_KEY"}


# --- The slim profile: onnxruntime without scikit-learn -------------------------------

SLIM_DROPS = {"scikit-learn", "scipy", "joblib", "pandas"}


pins = function_pins


def script_checkout(root: Path) -> Path:
    """The deploy script and function/ laid out as in the repo, in a folder of
    their own: what the script stages in infra/.build/ stays out of the work tree."""
    (root / "infra").mkdir(parents=True)
    shutil.copy2(DEPLOY_SCRIPT, root / "infra" / DEPLOY_SCRIPT.name)
    shutil.copytree(
        FUNCTION, root / "function", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_slim_pins_are_the_full_pins_without_scikit_learn_scipy_joblib() -> None:
    full, slim = pins("requirements.txt"), pins("requirements-slim.txt")

    assert set(full) - set(slim) == SLIM_DROPS
    assert set(slim) <= set(full)
    assert "onnxruntime" in slim
    for package, version in slim.items():
        assert version == full[package], package


def test_dry_run_slim_stages_the_gcloud_upload_with_the_slim_pins_as_requirements(
    tmp_path: Path,
) -> None:
    checkout = script_checkout(tmp_path / "repo")
    source = checkout / "function"
    for rel in [
        "__pycache__/main.cpython-312.pyc",
        "skserve/tests/test_x.py",
        "test_local.py",
        ".venv/lib/site.py",
        "model-store/default/LATEST",
        "skserve/model.pkl",
        ".env",
        "skserve/testing_notes.md",
    ]:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text("x")
    stale = checkout / "infra" / ".build" / "sklearn-predict-slim" / "stale.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("a file an earlier deploy staged")

    *_, deploy, _ = dry_run(
        "--project",
        "acme-ml",
        "--profile",
        "slim",
        script=checkout / "infra" / "deploy-gcloud.sh",
    )
    staged = checkout / flag(deploy, "source")
    env = gcloud_dict(flag(deploy, "set-env-vars"))
    upload = gcloud_upload(source)

    assert staged == stale.parent  # under the gitignored infra/.build/
    assert (staged / "requirements.txt").read_text() == (
        (FUNCTION / "requirements-slim.txt").read_text()
    )
    assert all_files(staged) == set(upload) | {".gcloudignore"}
    assert gcloud_upload(staged) == upload
    assert "skserve/testing_notes.md" in upload
    for rel in upload:
        if rel != "requirements.txt":
            assert (staged / rel).read_bytes() == (source / rel).read_bytes(), rel
    assert env["MODEL_RUNTIME"] == "onnx"
    assert flag(deploy, "runtime") == "python312"


def test_dry_run_profile_full_uploads_function_with_the_runtime_given() -> None:
    *_, default, _ = dry_run("--project", "acme-ml")
    *_, full, _ = dry_run(
        "--project", "acme-ml", "--profile", "full", "--env", "MODEL_RUNTIME=sklearn"
    )

    assert flag(default, "source") == flag(full, "source") == "function"
    assert "MODEL_RUNTIME" not in gcloud_dict(flag(default, "set-env-vars"))
    assert gcloud_dict(flag(full, "set-env-vars"))["MODEL_RUNTIME"] == "sklearn"


def test_dry_run_slim_reads_model_runtime_auto_as_onnx_and_sets_it_once(
    tmp_path: Path,
) -> None:
    checkout = script_checkout(tmp_path / "repo")

    *_, deploy, _ = dry_run(
        "--project",
        "acme-ml",
        "--profile",
        "slim",
        "--env",
        "MODEL_RUNTIME=auto",
        "--env",
        "MAX_ROWS=500",
        script=checkout / "infra" / "deploy-gcloud.sh",
    )
    settings = flag(deploy, "set-env-vars")

    assert settings.count("MODEL_RUNTIME=") == 1
    assert gcloud_dict(settings)["MODEL_RUNTIME"] == "onnx"
    assert gcloud_dict(settings)["MAX_ROWS"] == "500"


@dataclass(frozen=True)
class SlimUpload:
    bundle: Path
    settings: dict[str, str]  # the printed deploy command's --set-env-vars


@pytest.fixture(scope="module")
def slim_upload(tmp_path_factory: pytest.TempPathFactory) -> SlimUpload:
    """What `deploy-gcloud.sh --profile slim` uploads: its staged folder, copied
    the way gcloud uploads it."""
    checkout = script_checkout(tmp_path_factory.mktemp("slim") / "repo")
    *_, deploy, _ = dry_run(
        "--project",
        "acme-ml",
        "--profile",
        "slim",
        script=checkout / "infra" / "deploy-gcloud.sh",
    )
    bundle = build_bundle(
        checkout / flag(deploy, "source"),
        tmp_path_factory.mktemp("slim-bundle") / "bundle",
    )
    return SlimUpload(bundle, gcloud_dict(flag(deploy, "set-env-vars")))


@pytest.fixture(scope="module")
def slim_venv(
    slim_upload: SlimUpload, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh Python 3.12 venv holding only the slim upload's requirements.txt."""
    return install_venv(
        slim_upload.bundle / "requirements.txt", tmp_path_factory.mktemp("gcf-slim")
    )


FIND_SPECS = """
import importlib.util, json, sys
print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))
"""


def test_slim_upload_serves_the_twin_under_python312_without_scikit_learn(
    slim_upload: SlimUpload, slim_venv: Path, model_dir: Path, tmp_path: Path
) -> None:
    model = published_model(model_dir)
    version = (model_dir / "LATEST").read_text().strip()
    rows = [SEED_FEATURES, [0.0] * 10]
    settings = {**slim_upload.settings, "MODEL_URI": str(model_dir)}
    specs = subprocess.run(
        [
            *(str(slim_venv / "bin" / "python"), "-c", FIND_SPECS),
            *("sklearn", "scipy", "joblib", "onnxruntime", "functions_framework"),
        ],
        env=clean_env(slim_venv, {}),
        capture_output=True,
        text=True,
        timeout=120,
    )

    with BundleServer(slim_venv, slim_upload.bundle, settings, tmp_path) as server:
        single = server.post({"features": SEED_FEATURES})
        batch = server.post({"instances": rows, "probabilities": True})
        metadata = requests.get(server.url + "/metadata", timeout=60)

    assert (model_dir / "versions" / version / "model.onnx").is_file()
    assert json.loads(specs.stdout) == {
        "sklearn": False,
        "scipy": False,
        "joblib": False,
        "onnxruntime": True,
        "functions_framework": True,
    }
    assert single.status_code == 200, server.logs()
    assert single.json() == {
        "prediction": model.predict([SEED_FEATURES])[0],
        "model_version": version,
    }
    assert batch.json()["predictions"] == model.predict(rows).tolist()
    np.testing.assert_allclose(
        batch.json()["probabilities"], model.predict_proba(rows), atol=1e-6
    )
    assert metadata.json()["served_by"] == "onnx"


def test_slim_upload_answers_503_naming_model_runtime_for_a_version_without_twin(
    slim_upload: SlimUpload, slim_venv: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    published = run_train("--store", str(store), "--name", "plain", "--no-twin")
    assert published.returncode == 0, published.stderr
    settings = {**slim_upload.settings, "MODEL_URI": str(store / "plain")}

    with BundleServer(slim_venv, slim_upload.bundle, settings, tmp_path) as server:
        refused = server.post({"features": SEED_FEATURES})
        health = requests.get(server.url + "/health", timeout=60)

    assert refused.status_code == 503, server.logs()
    assert refused.json()["error"]["code"] == "incompatible_model"
    assert "MODEL_RUNTIME=onnx" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert health.status_code == 200


INSTALLED = """
import importlib.metadata, json, re
print(json.dumps({
    re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
    for d in importlib.metadata.distributions()
}))
"""


def site_packages(venv: Path) -> tuple[dict[str, str], int]:
    """The venv's distributions ({name: version}) and its site-packages' bytes."""
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", INSTALLED],
        env=clean_env(venv, {}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    (folder,) = venv.glob("lib/python3.*/site-packages")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return json.loads(listed.stdout), size


def test_slim_venv_is_the_full_venv_without_scikit_learn_scipy_and_joblib(
    bundle_venv: Path, slim_venv: Path
) -> None:
    full, full_size = site_packages(bundle_venv)
    slim, slim_size = site_packages(slim_venv)

    print(
        f"\nCloud Functions site-packages: full {full_size / 1e6:.1f} MB, "
        f"slim {slim_size / 1e6:.1f} MB"
    )
    assert set(full) - set(slim) >= SLIM_DROPS
    assert {package: full.get(package) for package in slim} == slim
    assert "onnxruntime" in slim
    assert slim_size < full_size
    # What the docs say, within a tolerance (tests/deploy/sizes.py).
    full_documented, slim_documented = documented_mb(
        "Cloud Functions: site-packages of a Python 3.12 venv"
    )
    assert_documented("full site-packages", full_size, full_documented)
    assert_documented("slim site-packages", slim_size, slim_documented)
    assert (
        mentioned_mb("deploy/gcloud.md", r"\(([\d.]+) MB of site-packages\)")
        == full_documented
    )
