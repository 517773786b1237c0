"""AWS Lambda: the same `predict` behind API Gateway, packaged by the real CLI.

In-process, function/lambda_main.py answers API Gateway HTTP API (payload 2.0)
and REST API (1.0) events, loading the model from S3 and its API keys from SSM
Parameter Store through moto. `osls print` shows what each param resolves to
(the IAM authorizer, the SSM read grant, refusals). Then
`osls package` (the maintained Serverless Framework v3 fork, installed by
`npm ci`) builds the artifact from serverless.yml, once per profile (full: the
pickle with scikit-learn, public with API keys; slim: the ONNX twin with
onnxruntime, private); the tests route every path the function serves through
the HTTP API its CloudFormation template declares, as API Gateway would, open
each artifact, check its size against Lambda's limit and what its slim
patterns left out, size the largest event the body limit lets through against
Lambda's payload limit, and run its handler under Python 3.12 with nothing but
the artifact and the runtime's boto3 on sys.path (the full profile also on a
DataFrame pipeline).
"""

from __future__ import annotations

import ast
import base64
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import numpy as np
import pytest

from tests.deploy.events import http_api_event, rest_api_event
from tests.deploy.frames import FRAME_COLUMNS, MIXED_ROWS, frame_of, publish_canonical
from tests.deploy.sizes import assert_documented, documented_mb, mentioned_mb
from tests.support import (
    REPO,
    SEED_FEATURES,
    free_port,
    function_env_names,
    function_pins,
    published_model,
    run_train,
    settings_fields,
    unexposed,
)

pytestmark = pytest.mark.e2e

FUNCTION = REPO / "function"
OSLS = REPO / "node_modules" / ".bin" / "osls"
PYTHON312 = REPO / "infra" / "lambda" / "python.sh"  # finds python3.12
LAMBDA_UNZIPPED_LIMIT = 250 * 1000 * 1000  # bytes; AWS enforces 262,144,000
BUCKET, PARAM_PATH = "ci-models", "models/default"
KEYS_PARAMETER = "/sklearn-serverless/ci/api-keys"
SERVICE_ARGS = ("--stage", "ci", "--region", "eu-west-1")
SERVICE_ARGS += (f"--param=modelBucket={BUCKET}",)
# Public with API keys: how a client that cannot sign SigV4 (tritonclient,
# KServe's client) reaches the function.
PACKAGE_ARGS = ("package", *SERVICE_ARGS, "--param=public=true")
PACKAGE_ARGS += (f"--param=apiKeysParameter={KEYS_PARAMETER}", "--param=profile=full")
API_KEY = "ci-key-0123456789abcdef"  # a test fixture, not a secret
PUBLISH_ARGS = ("--store", f"s3://{BUCKET}/models", "--name", "default")
SLIM_BUCKET = "ci-slim-models"
# The default profile: no --param=profile at all.
SLIM_PACKAGE_ARGS = ("package", *SERVICE_ARGS[:4], f"--param=modelBucket={SLIM_BUCKET}")
SLIM_DROPS = {"scikit-learn", "scipy", "joblib", "pandas"}
# "6 MB" per synchronous invocation, request and response (Lambda's quotas),
# read as the smaller of its two meanings (6,000,000 bytes, not 6 MiB).
LAMBDA_SYNC_PAYLOAD = 6_000_000
# An HTTP API's request line and headers together: at most 10,240 bytes.
HTTP_API_HEADER_BYTES = 10_240


# --- API Gateway events, as AWS sends them ----------------------------------------


EVENTS = {"http-api-v2": http_api_event, "rest-api-v1": rest_api_event}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def answer(response: dict[str, Any]) -> Answer:
    """A Lambda proxy response, v1 or v2, with lower-case headers and JSON body."""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers[key.lower()] = ", ".join(values)
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return Answer(response["statusCode"], headers, json.loads(body) if body else None)


# --- In process: the handler over moto's S3 -------------------------------------------


@pytest.fixture(scope="module")
def handler() -> Iterator[Any]:
    """lambda_main.handler, imported once as Lambda's cold start does."""
    saved_main = sys.modules.get("main")
    module: ModuleType = importlib.import_module("lambda_main")
    assert sys.modules["main"]._service is None  # import touched no setting
    yield module.handler
    sys.modules.pop("lambda_main", None)
    sys.modules.pop("main", None)  # create_app's copy of main.py
    if saved_main is not None:
        sys.modules["main"] = saved_main


@pytest.fixture
def s3_model(aws_credentials: None, seed_store: Path) -> Iterator[Path]:
    """The seed's published model copied to moto's S3; MODEL_URI points at it."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        for path in (seed_store / "seed").rglob("*"):
            if path.is_file():
                key = path.relative_to(seed_store).as_posix()
                s3.put_object(
                    Bucket="models", Key=f"team/{key}", Body=path.read_bytes()
                )
        os.environ["MODEL_URI"] = "s3://models/team/seed"
        yield seed_store / "seed"


def test_http_api_predict_loads_the_model_from_s3(handler: Any, s3_model: Path) -> None:
    model = published_model(s3_model)
    latest = (s3_model / "LATEST").read_text().strip()

    result = answer(
        handler(http_api_event("POST", "/predict", {"features": SEED_FEATURES}), None)
    )

    assert result.status == 200
    assert result.body == {
        "prediction": model.predict([SEED_FEATURES])[0],
        "model_version": latest,
    }
    assert result.headers["content-type"] == "application/json"
    assert result.headers["x-model-version"] == latest
    assert result.headers["x-request-id"]


def test_http_api_base64_batch_with_probabilities(handler: Any, s3_model: Path) -> None:
    model = published_model(s3_model)
    rows = [SEED_FEATURES, [0.0] * 10]
    event = http_api_event(
        "POST", "/predict", {"instances": rows, "probabilities": True}, base64_body=True
    )

    result = answer(handler(event, None))

    assert result.status == 200
    assert result.body["predictions"] == model.predict(rows).tolist()
    assert result.body["classes"] == model.classes_.tolist()
    np.testing.assert_allclose(result.body["probabilities"], model.predict_proba(rows))


def test_rest_api_predict_and_metadata(handler: Any, s3_model: Path) -> None:
    model = published_model(s3_model)
    latest = (s3_model / "LATEST").read_text().strip()

    predicted = answer(
        handler(
            rest_api_event("POST", "/predict", {"instances": [SEED_FEATURES]}), None
        )
    )
    metadata = answer(handler(rest_api_event("GET", "/metadata"), None))

    assert predicted.status == 200
    assert predicted.body["predictions"] == model.predict([SEED_FEATURES]).tolist()
    assert predicted.headers["x-model-version"] == latest
    assert metadata.status == 200
    assert metadata.body["model_version"] == latest
    assert metadata.body["n_features"] == 10


def test_warm_invocations_reuse_the_model_loaded_by_the_first(
    handler: Any, s3_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        result = answer(
            handler(http_api_event("POST", "/", {"features": SEED_FEATURES}), None)
        )
        assert result.status == 200

    assert capsys.readouterr().out.count('"message":"loaded model version') == 1


@pytest.mark.parametrize("kind", sorted(EVENTS))
@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code"),
    [
        ("POST", "/predict", "{not json", "application/json", 400, "invalid_json"),
        (
            "POST",
            "/predict",
            {"features": [1.0, 2.0]},
            None,
            400,
            "wrong_feature_count",
        ),
        ("POST", "/predict", {"rows": []}, None, 400, None),
        ("POST", "/predict", "a,b", "text/csv", 415, "unsupported_media_type"),
        ("GET", "/predict", None, None, 405, "method_not_allowed"),
        ("POST", "/nowhere", {"features": SEED_FEATURES}, None, 404, "not_found"),
    ],
)
def test_errors_are_json_over_both_event_formats(
    handler: Any,
    s3_model: Path,
    kind: str,
    method: str,
    path: str,
    body: Any,
    content_type: str | None,
    status: int,
    code: str | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}

    result = answer(handler(EVENTS[kind](method, path, body, headers=headers), None))

    assert result.status == status
    assert result.headers["content-type"] == "application/json"
    assert set(result.body) == {"error"}
    assert set(result.body["error"]) == {"code", "message"}
    if code:
        assert result.body["error"]["code"] == code
    if status == 405:
        assert "POST" in result.headers["allow"]
    assert result.headers["x-request-id"]


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_health_answers_without_the_store_and_predict_gets_503_then(
    handler: Any, aws_credentials: None, kind: str
) -> None:
    os.environ.update(
        MODEL_URI="s3://unreachable-bucket/models/seed",
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{free_port()}",  # nothing listens
    )

    health = answer(handler(EVENTS[kind]("GET", "/health"), None))
    down = answer(
        handler(EVENTS[kind]("POST", "/predict", {"features": SEED_FEATURES}), None)
    )

    assert health.status == 200
    assert health.body == {"status": "ok"}
    assert health.headers["x-model-version"] == "none"
    assert down.status == 503
    assert down.body["error"]["code"] == "store_unavailable"
    assert int(down.headers["retry-after"]) >= 1


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    """lambda_main reads its SSM parameters once per process; start over."""
    module = sys.modules.get("lambda_main")
    if module is not None:
        module._secrets_loaded = False
    yield
    if module is not None:
        module._secrets_loaded = False


def _put_keys(value: str, name: str = KEYS_PARAMETER) -> None:
    import boto3

    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=name, Value=value, Type="SecureString", Overwrite=True
    )


def test_api_keys_come_from_the_ssm_parameter_the_environment_names(
    handler: Any, s3_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _put_keys(f"{API_KEY}\nsecond-key-0123456789")
    os.environ["API_KEYS_SSM_PARAMETER"] = KEYS_PARAMETER
    body = {"features": SEED_FEATURES}

    anonymous = answer(handler(http_api_event("POST", "/predict", body), None))
    wrong = answer(
        handler(
            http_api_event(
                "POST", "/predict", body, headers={"x-api-key": "not-the-key-0000000"}
            ),
            None,
        )
    )
    bearer = answer(
        handler(
            http_api_event(
                "POST", "/predict", body, headers={"authorization": f"Bearer {API_KEY}"}
            ),
            None,
        )
    )
    second = answer(
        handler(
            rest_api_event(
                "POST", "/predict", body, headers={"X-API-Key": "second-key-0123456789"}
            ),
            None,
        )
    )
    logged = capsys.readouterr()

    assert anonymous.status == 401
    assert anonymous.body["error"]["code"] == "unauthorized"
    assert wrong.status == 401
    assert bearer.status == 200 and second.status == 200
    assert bearer.body["prediction"] == second.body["prediction"]
    assert API_KEY not in logged.out + logged.err
    assert "second-key" not in logged.out + logged.err


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_a_missing_parameter_answers_json_500_and_the_next_request_retries(
    handler: Any, s3_model: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["API_KEYS_SSM_PARAMETER"] = "/sklearn-serverless/ci/not-yet"
    headers = {"x-api-key": API_KEY}
    event = EVENTS[kind](
        "POST", "/predict", {"features": SEED_FEATURES}, headers=headers
    )

    missing = answer(handler(event, None))
    _put_keys(API_KEY, "/sklearn-serverless/ci/not-yet")
    served = answer(handler(event, None))
    logged = capsys.readouterr().out

    assert missing.status == 500
    assert missing.headers["content-type"] == "application/json"
    assert missing.body["error"]["code"] == "configuration_error"
    assert "not-yet" not in json.dumps(missing.body)  # names stay in the logs
    assert missing.headers["x-request-id"]
    assert "/sklearn-serverless/ci/not-yet: ParameterNotFound" in logged
    assert served.status == 200
    assert API_KEY not in logged


def test_unreachable_ssm_answers_503_with_retry_after_and_serves_nothing(
    handler: Any, aws_credentials: None
) -> None:
    os.environ.update(
        API_KEYS_SSM_PARAMETER=KEYS_PARAMETER,
        AWS_ENDPOINT_URL_SSM=f"http://127.0.0.1:{free_port()}",  # nothing listens
        MODEL_URI="s3://unreachable-bucket/models/seed",
    )

    health = answer(handler(http_api_event("GET", "/health"), None))
    down = answer(
        handler(http_api_event("POST", "/predict", {"features": SEED_FEATURES}), None)
    )

    for result in (health, down):
        assert result.status == 503
        assert result.body["error"]["code"] == "model_unavailable"
        assert "secrets" in result.body["error"]["message"]
        assert int(result.headers["retry-after"]) >= 1
        assert result.headers["x-model-version"] == "none"


@pytest.mark.parametrize(
    ("value", "plain"), [(" , \n ", ""), (API_KEY, "plain-key-0123456789abc")]
)
def test_keys_that_would_turn_auth_off_or_conflict_are_refused(
    handler: Any, s3_model: Path, value: str, plain: str
) -> None:
    """An empty parameter would mean "no keys"; a plain API_KEYS beside the
    parameter is ambiguous. Both fail closed, as a configuration error."""
    _put_keys(value)
    os.environ["API_KEYS_SSM_PARAMETER"] = KEYS_PARAMETER
    if plain:
        os.environ["API_KEYS"] = plain
    event = http_api_event(
        "POST", "/predict", {"features": SEED_FEATURES}, headers={"x-api-key": plain}
    )

    result = answer(handler(event, None))

    assert result.status == 500
    assert result.body["error"]["code"] == "configuration_error"


def test_cold_start_import_reads_no_setting_store_or_model(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "import lambda_main\n"
        "service = sys.modules['main']._service\n"
        "event = json.loads(sys.argv[1])\n"
        "response = lambda_main.handler(event, None)\n"
        "print(json.dumps({'service': repr(service), 'response': response}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(FUNCTION),
        "MODEL_URI": "s3://unreachable-bucket/models/seed",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}",
        "MAX_ROWS": "many",  # invalid: must not break the import
    }
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(http_api_event("GET", "/health"))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    response = answer(report["response"])

    assert report["service"] == "None"
    assert response.status == 500
    assert response.body["error"]["code"] == "configuration_error"


def test_lambda_module_imports_only_its_dependencies_and_function_folder() -> None:
    tree = ast.parse((FUNCTION / "lambda_main.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }

    runtime = {"__future__", "os", "pathlib", "threading", "typing"}
    provided = {"boto3", "botocore"}  # by the Lambda runtime, imported lazily
    bundled = {"functions_framework", "apig_wsgi", "flask", "skserve"}
    top_level = {
        node.module.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
    }

    assert imported <= runtime | provided | bundled
    assert not top_level & provided  # import must not need the runtime's boto3
    assert "make_lambda_handler" in (FUNCTION / "lambda_main.py").read_text()


_pins = function_pins


def test_lambda_slim_requirements_swap_scikit_learn_scipy_joblib_for_onnxruntime() -> (
    None
):
    full, slim = _pins("requirements-lambda.txt"), _pins("requirements-lambda-slim.txt")
    function_pins = _pins("requirements.txt")

    assert set(full) - set(slim) == SLIM_DROPS
    assert set(slim) - set(full) == {"onnxruntime"}
    for package, version in slim.items():
        assert version == full.get(package, function_pins.get(package)), package


def test_lambda_requirements_are_the_function_pins_minus_gcs_boto3_and_onnx() -> None:
    lambda_pins, function_pins = (
        _pins("requirements-lambda.txt"),
        _pins("requirements.txt"),
    )
    dev_pins = {
        line.split("==")[0].lower(): line.split("==")[1].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }

    # onnxruntime would take the artifact past Lambda's 250 MB: the Lambda
    # serves the pickle (MODEL_RUNTIME=sklearn in serverless.yml).
    assert set(function_pins) - set(lambda_pins) == {
        "google-cloud-storage",
        "boto3",
        "onnxruntime",
    }
    assert set(lambda_pins) - set(function_pins) == {"apig-wsgi"}
    for package, version in lambda_pins.items():
        assert version == function_pins.get(package, dev_pins.get(package)), package


# --- The real CLI: `osls package` ---------------------------------------------


def copy_service(service: Path) -> Path:
    """A copy of the service for the CLI (its .serverless/ stays out of the work
    tree); the pip download cache is the repo's gitignored .cache/."""
    service.mkdir(parents=True)
    for name in ("serverless.yml", "package.json"):
        shutil.copy2(REPO / name, service / name)
    shutil.copytree(
        FUNCTION, service / "function", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "infra" / "lambda", service / "infra" / "lambda")
    (service / "node_modules").symlink_to(REPO / "node_modules")
    (REPO / ".cache").mkdir(exist_ok=True)
    (service / ".cache").symlink_to(REPO / ".cache")
    return service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_service(tmp_path_factory.mktemp("serverless") / "service")


@pytest.fixture(scope="module")
def slim_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another copy: each package is written to its service's .serverless/."""
    return copy_service(tmp_path_factory.mktemp("serverless-slim") / "service")


def osls(service: Path, *args: str) -> subprocess.CompletedProcess:
    """node_modules/.bin/osls ARGS in `service`, offline, with fake credentials."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(service)),
        "LANG": "C.UTF-8",
        # No AWS call is made; fake credentials make sure none could succeed.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        # osls has no telemetry or dashboard; these silence serverless@3 too.
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "SLS_SCHEMA_CACHE_BASE_DIR": str(service.parent),
    }
    # How this machine reaches python3.12 and PyPI.
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_", "PYENV"))})
    return subprocess.run(
        [str(OSLS), *args],
        cwd=service,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def resolved(service: Path, *params: str) -> dict[str, Any]:
    """serverless.yml as the CLI resolves it for these extra --param values."""
    result = osls(service, "print", "--format", "json", *SERVICE_ARGS, *params)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout[result.stdout.index("{") :])


def routes_authorizers(config: dict[str, Any]) -> list[Any]:
    return [
        event["httpApi"].get("authorizer")
        for event in config["functions"]["predict"]["events"]
    ]


def test_routes_are_private_by_default_and_public_only_when_a_param_says_so(
    service: Path,
) -> None:
    default = resolved(service)
    keyed = resolved(
        service, "--param=public=true", f"--param=apiKeysParameter={KEYS_PARAMETER}"
    )
    open_ = resolved(
        service, "--param=public=true", "--param=publicWithoutApiKeys=true"
    )

    assert routes_authorizers(default) == [{"type": "aws_iam"}]
    assert routes_authorizers(keyed) == routes_authorizers(open_) == [""]
    assert default["params"]["default"]["public"] == "false"
    assert default["params"]["default"]["publicWithoutApiKeys"] == "false"
    # One route for every path: osls makes path "*" the $default route.
    (event,) = default["functions"]["predict"]["events"]
    assert (event["httpApi"]["method"], event["httpApi"]["path"]) == ("*", "*")


def test_secret_read_is_granted_only_for_the_named_parameters(service: Path) -> None:
    plain = resolved(service)["provider"]
    named = resolved(
        service,
        f"--param=apiKeysParameter={KEYS_PARAMETER}",
        "--param=signingKeyParameter=/sklearn-serverless/ci/signing-key",
    )["provider"]
    statements = named["iam"]["role"]["statements"]
    ssm = [s for s in statements if s["Action"] == ["ssm:GetParameter"]]
    kms = [s for s in statements if s["Action"] == ["kms:Decrypt"]]
    arns = [a["Fn::Join"][1][-1] for a in ssm[0]["Resource"]]

    assert plain["environment"]["API_KEYS_SSM_PARAMETER"] == ""
    assert not [
        s for s in plain["iam"]["role"]["statements"] if "s3" not in str(s["Action"])
    ]
    assert named["environment"]["API_KEYS_SSM_PARAMETER"] == KEYS_PARAMETER
    assert arns == [
        f":parameter{KEYS_PARAMETER}",
        ":parameter/sklearn-serverless/ci/signing-key",
    ]
    assert (
        kms[0]["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"]
        == (ssm[0]["Resource"])
    )
    assert "kms:ViaService" in kms[0]["Condition"]["StringEquals"]
    assert not {"API_KEYS", "MODEL_SIGNING_KEY"} & set(named["environment"])


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("--param=public=yes", 'param "public" must be true or false, got "yes"'),
        (
            "--param=publicWithoutApiKeys=1",
            'param "publicWithoutApiKeys" must be true or false, got "1"',
        ),
        # Public with neither API keys nor the flag saying it is meant to be open.
        ("--param=public=true", "param public=true without apiKeysParameter lets"),
        ("--param=apiKeys=k", "--param=apiKeys is no longer read"),
        ("--param=apiKeysParameter=keys", "must be an SSM parameter path"),
        ("--param=signingKeyParameter=/aws/x", "must be an SSM parameter path"),
        ("--param=profile=tiny", 'param "profile" must be full or slim, got "tiny"'),
        ("--param=modelRuntime=onnx", "--param=modelRuntime is no longer read"),
    ],
)
def test_cli_refuses_params_that_would_weaken_access_with_one_line(
    service: Path, param: str, message: str
) -> None:
    result = osls(service, "print", *SERVICE_ARGS, param)
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert message in output
    assert "    at " not in output  # a message, not a JavaScript stack trace


def test_profile_param_picks_the_requirements_file_and_model_runtime(
    service: Path,
) -> None:
    default = resolved(service)
    slim = resolved(service, "--param=profile=slim")
    full = resolved(service, "--param=profile=full")

    assert default["params"]["default"]["profile"] == "slim"
    for config, requirements, runtime in [
        (default, "requirements-lambda-slim.txt", "onnx"),
        (full, "requirements-lambda.txt", "sklearn"),
        (slim, "requirements-lambda-slim.txt", "onnx"),
    ]:
        assert config["custom"]["pythonRequirements"]["fileName"] == requirements
        assert (FUNCTION / requirements).is_file()  # the plugin reads function/
        assert config["provider"]["environment"]["MODEL_RUNTIME"] == runtime


@dataclass(frozen=True)
class LambdaPackage:
    artifact: Path
    template: dict[str, Any]
    log: str

    @property
    def settings(self) -> dict[str, str]:
        """The function's environment, as CloudFormation will set it."""
        function = self.template["Resources"]["PredictLambdaFunction"]
        return function["Properties"]["Environment"]["Variables"]

    def names(self) -> set[str]:
        with zipfile.ZipFile(self.artifact) as archive:
            return set(archive.namelist())

    def unzipped_bytes(self) -> int:
        with zipfile.ZipFile(self.artifact) as archive:
            return sum(info.file_size for info in archive.infolist())

    def unzip(self, task: Path) -> Path:
        """The artifact unzipped, as Lambda lays it out in /var/task."""
        with zipfile.ZipFile(self.artifact) as archive:
            archive.extractall(task)
        return task


def package(service: Path, *args: str) -> LambdaPackage:
    """`osls package ARGS` in `service`, and what it built."""
    result = osls(service, *args)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    template = json.loads(
        (
            service / ".serverless" / "cloudformation-template-update-stack.json"
        ).read_text()
    )
    key = template["Resources"]["PredictLambdaFunction"]["Properties"]["Code"]["S3Key"]
    return LambdaPackage(service / ".serverless" / Path(key).name, template, log)


@pytest.fixture(scope="module")
def lambda_package(service: Path) -> LambdaPackage:
    """`osls package --param=profile=full`, as docs/deploy/lambda.md shows it."""
    return package(service, *PACKAGE_ARGS)


@pytest.fixture(scope="module")
def slim_package(slim_service: Path) -> LambdaPackage:
    """`osls package`, the default (slim) profile, as the deploy pages show it."""
    return package(slim_service, *SLIM_PACKAGE_ARGS)


@pytest.fixture(scope="module")
def task_root(
    lambda_package: LambdaPackage, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return lambda_package.unzip(tmp_path_factory.mktemp("lambda") / "task")


@pytest.fixture(scope="module")
def slim_task_root(
    slim_package: LambdaPackage, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return slim_package.unzip(tmp_path_factory.mktemp("lambda-slim") / "task")


@pytest.fixture(scope="module")
def artifact_names(lambda_package: LambdaPackage) -> set[str]:
    return lambda_package.names()


def test_package_holds_the_handler_and_the_serving_package_at_the_root(
    lambda_package: LambdaPackage, artifact_names: set[str]
) -> None:
    serving = {
        p.relative_to(FUNCTION).as_posix()
        for p in (FUNCTION / "skserve").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }

    assert {"lambda_main.py", "main.py"} <= artifact_names
    assert serving <= artifact_names
    assert not {n for n in artifact_names if n.startswith("function/")}
    assert not {".gcloudignore", "requirements-lambda.txt"} & artifact_names
    assert "✔ Service packaged" in lambda_package.log


def test_package_includes_the_pinned_python_dependencies(
    artifact_names: set[str],
) -> None:
    dist_infos = {n.split("/")[0] for n in artifact_names if ".dist-info/" in n}
    versions = {
        re.sub(
            r"[-_.]+", "-", d.removesuffix(".dist-info").rsplit("-", 1)[0]
        ).lower(): (d.removesuffix(".dist-info").rsplit("-", 1)[1])
        for d in dist_infos
    }

    for package, version in _pins("requirements-lambda.txt").items():
        assert versions.get(package) == version, package
    assert "boto3" not in versions and "botocore" not in versions  # the runtime's
    assert not [n for n in artifact_names if n.startswith("google/cloud/storage/")]
    assert not [n for n in artifact_names if "/tests/" in n]


# serverless.yml's slimPatterns: what no interpreter reads, the servers
# functions-framework brings (apig-wsgi calls the Flask app itself), and the
# scipy subpackages no scikit-learn module imports.
BUILD_INPUTS = (".pyx", ".pxd", ".pxi", ".pxi.in", ".tp", ".pyi", ".c", ".cpp")
BUILD_INPUTS += (".h", ".hpp", ".a")
SERVER_STACK = {"gunicorn", "uvicorn", "uvicorn_worker", "starlette", "anyio"}
SERVER_STACK |= {"h11", "idna", "watchdog", "bin"}
UNUSED_SCIPY = {"signal", "odr", "fftpack", "datasets", "misc", "differentiate"}
# Modules scikit-learn imports only for optional backends and its own build.
OPTIONAL = {"Cython", "cupy", "dask", "torch", "pytest"}

# Every scikit-learn module (but its tests), imported from the task root alone.
IMPORT_EVERY_SKLEARN_MODULE = """
import importlib, json, pkgutil, sys, warnings
sys.path[:0] = [sys.argv[1]]
warnings.simplefilter("ignore")
import pandas, sklearn
failed, count = {}, 0
for found in pkgutil.walk_packages(sklearn.__path__, "sklearn."):
    if ".tests" in found.name or found.name.endswith("conftest"):
        continue
    count += 1
    try:
        importlib.import_module(found.name)
    except ImportError as exc:
        failed[found.name] = exc.name or repr(exc)
print(json.dumps({"count": count, "failed": failed}))
"""


def test_package_leaves_out_what_serving_never_reads_yet_every_sklearn_module_imports(
    artifact_names: set[str], task_root: Path
) -> None:
    top_level = {n.split("/")[0] for n in artifact_names}
    dist_names = {d.split("-")[0] for d in top_level if d.endswith(".dist-info")}
    result = subprocess.run(
        [str(PYTHON312), "-S", "-B", "-c", IMPORT_EVERY_SKLEARN_MODULE, str(task_root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.splitlines()[-1])
    missing = {name.split(".")[0] for name in report["failed"].values()}

    assert not [n for n in artifact_names if n.endswith(BUILD_INPUTS)]
    assert not SERVER_STACK & (top_level | dist_names)
    scipy_parts = {n.split("/")[1] for n in artifact_names if n.startswith("scipy/")}
    assert not UNUSED_SCIPY & scipy_parts
    assert {"scipy/sparse/__init__.py", "scipy/cluster/hierarchy.py"} <= artifact_names
    assert report["count"] > 300
    assert missing <= OPTIONAL, report["failed"]


def test_a_pickle_needing_a_left_out_scipy_subpackage_is_refused_naming_it(
    task_root: Path, lambda_runtime: Path, tmp_path: Path
) -> None:
    import scipy.signal
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rows = np.random.default_rng(3).normal(size=(80, 4))
    model = make_pipeline(
        FunctionTransformer(scipy.signal.detrend), LogisticRegression()
    ).fit(rows, rows[:, 0] > 0)
    joblib.dump(model, tmp_path / "detrend.pkl")
    store = tmp_path / "store"
    published = run_train(
        *("publish", str(tmp_path / "detrend.pkl"), "--store", str(store)),
        *("--name", "detrend", "--no-twin"),
    )
    assert published.returncode == 0, published.stderr
    settings = {"MODEL_URI": str(store / "detrend"), "MODEL_RUNTIME": "sklearn"}
    event = http_api_event("POST", "/predict", {"features": [0.1, 0.2, 0.3, 0.4]})

    result = invoke_packaged(task_root, lambda_runtime, settings, [event], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (refused,) = map(answer, json.loads(result.stdout.splitlines()[-1]))

    assert refused.status == 503
    assert refused.body["error"]["code"] == "incompatible_model"
    assert "module 'scipy.signal' is not installed" in refused.body["error"]["message"]


def test_package_unzipped_fits_lambdas_250_mb_limit(
    lambda_package: LambdaPackage,
) -> None:
    unzipped = lambda_package.unzipped_bytes()

    print(
        f"\nLambda artifact: {unzipped / 1e6:.1f} MB unzipped "
        f"({lambda_package.artifact.stat().st_size / 1e6:.1f} MB zipped)"
    )
    assert 100e6 < unzipped < LAMBDA_UNZIPPED_LIMIT


def test_package_holds_wheels_for_lambdas_python312_on_x86_64(
    lambda_package: LambdaPackage,
) -> None:
    tags: dict[str, list[str]] = {}
    with zipfile.ZipFile(lambda_package.artifact) as archive:
        for name in archive.namelist():
            if name.endswith(".dist-info/WHEEL"):
                text = archive.read(name).decode()
                tags[name] = re.findall(r"^Tag: (\S+)$", text, re.MULTILINE)

    assert len(tags) > 10
    for name, wheel_tags in tags.items():
        assert any(_lambda_compatible(tag) for tag in wheel_tags), (name, wheel_tags)


def _lambda_compatible(tag: str) -> bool:
    """CPython 3.12 on x86_64 with glibc <= 2.34 (Amazon Linux 2023) can load it."""
    python, abi, platform = tag.split("-")
    if python not in {"cp312", "py3", "py2.py3"} and not python.startswith("cp3"):
        return False
    if abi not in {"cp312", "none", "abi3"}:
        return False
    if platform == "any":
        return True
    legacy = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12)}
    legacy["manylinux2014_x86_64"] = (2, 17)
    if platform in legacy:
        return True
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
    return bool(match) and (int(match[1]), int(match[2])) <= (2, 34)


# Run by Python 3.12 itself: the source hash is keyed by the interpreter's magic.
CHECK_PYC = """
import importlib.util, json, pathlib, sys
stale, checked = [], 0
for pyc in pathlib.Path(sys.argv[1]).rglob("__pycache__/*.cpython-312.pyc"):
    source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
    if not source.exists():
        continue
    header = pyc.read_bytes()[:16]
    flags = int.from_bytes(header[4:8], "little")
    valid = header[8:16] == importlib.util.source_hash(source.read_bytes())
    if header[:4] != importlib.util.MAGIC_NUMBER or flags != 0b11 or not valid:
        stale.append(str(pyc.relative_to(sys.argv[1])))
    checked += 1
print(json.dumps({"checked": checked, "stale": stale[:20]}))
"""


def test_package_bytecode_stays_valid_after_lambda_unzips_it(
    task_root: Path,
) -> None:
    """serverless zips every file with a fixed timestamp, so only hash-checked .pyc
    stay valid; stale ones would be recompiled on every cold start."""
    result = subprocess.run(
        [str(PYTHON312), "-S", "-c", CHECK_PYC, str(task_root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert report["stale"] == []
    assert report["checked"] > 1000


def test_cloudformation_wires_handler_routes_settings_and_s3_read(
    lambda_package: LambdaPackage,
) -> None:
    resources = lambda_package.template["Resources"]
    function = resources["PredictLambdaFunction"]["Properties"]
    env = function["Environment"]["Variables"]
    route_resources = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    ]
    routes = {r["RouteKey"] for r in route_resources}
    statements = [
        statement
        for policy in resources["IamRoleLambdaExecution"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    s3 = [s for s in statements if any(a.startswith("s3:") for a in s["Action"])]

    assert function["Handler"] == "lambda_main.handler"
    assert function["Runtime"] == "python3.12"
    assert function["Timeout"] <= 30  # HTTP API integrations time out at 30 s
    assert env["MODEL_URI"] == f"s3://{BUCKET}/{PARAM_PATH}"
    # A secret's parameter name stands for the secret: lambda_main reads it.
    exposed = set(env) | {
        name.removesuffix("_SSM_PARAMETER") for name in env if env[name]
    }

    assert set(env) <= function_env_names()
    assert env["API_KEYS_SSM_PARAMETER"] == KEYS_PARAMETER
    assert env["MODEL_RUNTIME"] == "sklearn"  # the artifact has no onnxruntime
    assert not {"API_KEYS", "MODEL_SIGNING_KEY"} & set(env)
    # Every setting but the Google Cloud project (trace ids for Cloud Logging)
    # and the signing key, whose parameter these args leave unnamed.
    assert unexposed(settings_fields(), exposed) == ["project", "signing_keys"]
    assert routes == {"$default"}
    # Public (PACKAGE_ARGS say so), with the API keys the function checks.
    assert {r.get("AuthorizationType", "NONE") for r in route_resources} == {"NONE"}
    assert [s["Action"] for s in s3] == [["s3:GetObject"], ["s3:ListBucket"]]
    assert s3[1]["Condition"] == {"StringLike": {"s3:prefix": [f"{PARAM_PATH}/*"]}}
    # Each ARN names the stack's partition: the same statements in aws-cn.
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        assert [cfn_value(st["Resource"], partition=partition) for st in s3] == [
            f"arn:{partition}:s3:::{BUCKET}/{PARAM_PATH}/*",
            f"arn:{partition}:s3:::{BUCKET}",
        ]
    assert "arn:aws:" not in json.dumps(lambda_package.template)


def cfn_value(value: Any, *, partition: str = "aws") -> Any:
    """A CloudFormation value with Fn::Join, Fn::Sub and the pseudo parameters
    resolved for an account in `partition`; other references stay symbolic."""
    pseudo = {
        "AWS::Partition": partition,
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
    }
    if isinstance(value, list):
        return [cfn_value(item, partition=partition) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return pseudo.get(value["Ref"], f"<{value['Ref']}>")
    if set(value) == {"Fn::GetAtt"}:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(cfn_value(p, partition=partition)) for p in parts)
    if set(value) == {"Fn::Sub"}:
        return re.sub(
            r"\$\{([^}]+)\}",
            lambda m: pseudo.get(m[1], f"<{m[1]}>"),
            value["Fn::Sub"],
        )
    return {k: cfn_value(v, partition=partition) for k, v in value.items()}


# --- API Gateway: which route, hence which authorizer, each request meets ---------


@dataclass(frozen=True)
class GatewayRoute:
    """An HTTP API route as the template declares it, followed to its target."""

    key: str  # "$default" or "METHOD /path/{var}/{proxy+}"
    function: str | None  # the Lambda's logical id, if the route invokes one
    authorization: str  # AWS_IAM, JWT, CUSTOM or NONE


def http_api_routes(template: dict[str, Any]) -> list[GatewayRoute]:
    """The routes of the template's one HTTP API, each followed through its
    integration to the function API Gateway may invoke (the Lambda permission
    must cover the API), as deployed on its $default stage."""
    resources = template["Resources"]
    (api_id,) = [
        key for key, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Api"
    ]
    api = resources[api_id]["Properties"]
    # No CORS configuration: API Gateway would answer preflights itself.
    assert api["ProtocolType"] == "HTTP" and "CorsConfiguration" not in api
    stages = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Stage"
    ]
    assert stages == [
        {
            "ApiId": {"Ref": api_id},
            "StageName": "$default",  # no stage prefix in the paths
            "AutoDeploy": True,
            "DefaultRouteSettings": {"DetailedMetricsEnabled": False},
        }
    ]
    invocable = {
        r["Properties"]["FunctionName"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["Action"] == "lambda:InvokeFunction"
        and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and cfn_value(r["Properties"]["SourceArn"]).endswith(f"<{api_id}>/*")
    }
    routes = []
    for resource in resources.values():
        if resource["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        route = resource["Properties"]
        assert route["ApiId"] == {"Ref": api_id}
        separator, (prefix, target) = route["Target"]["Fn::Join"]
        integration = resources[target["Ref"]]["Properties"]
        function = None
        if (separator, prefix) == ("/", "integrations") and (
            integration["IntegrationType"] == "AWS_PROXY"
            and integration["PayloadFormatVersion"] == "2.0"
        ):
            logical_id, attribute = integration["IntegrationUri"]["Fn::GetAtt"]
            if attribute == "Arn" and logical_id in invocable:
                function = logical_id
        routes.append(
            GatewayRoute(
                route["RouteKey"], function, route.get("AuthorizationType", "NONE")
            )
        )
    return routes


def gateway_route(
    routes: list[GatewayRoute], method: str, path: str
) -> GatewayRoute | None:
    """The route API Gateway selects for a request, by its documented priority
    (Create routes for HTTP APIs, "Routing API requests"): a full match of
    route and method, the method before ANY and literal segments before path
    variables; then a greedy {proxy+} match, the longest first; then $default.
    None: API Gateway answers {"message":"Not Found"} and calls nothing."""
    segments = [part for part in path.split("/")[1:] if part] if path != "/" else []
    candidates = []
    for route in routes:
        if route.key == "$default":
            continue
        route_method, template = route.key.split(" ", 1)
        if route_method not in (method, "ANY"):
            continue
        parts = [part for part in template.split("/")[1:] if part]
        greedy = bool(parts) and re.fullmatch(r"\{[^}]+\+\}", parts[-1]) is not None
        fixed = parts[:-1] if greedy else parts
        if greedy and len(segments) <= len(fixed):
            continue
        if not greedy and len(segments) != len(fixed):
            continue
        if all(
            re.fullmatch(r"\{[^}+]+\}", part) or part == segment
            for part, segment in zip(fixed, segments, strict=False)
        ):
            literal = sum(not part.startswith("{") for part in fixed)
            candidates.append(((greedy, -literal, route_method == "ANY"), route))
    if candidates:
        return min(candidates, key=lambda found: found[0])[1]
    return next((route for route in routes if route.key == "$default"), None)


def test_gateway_route_selection_follows_api_gateways_priorities() -> None:
    """The model of API Gateway's choice the route tests rely on, on the
    documented kinds of routes."""
    routes = [
        GatewayRoute(key, "F", auth)
        for key, auth in [
            ("GET /pets/dog/1", "AWS_IAM"),
            ("GET /pets/dog/{id}", "JWT"),
            ("ANY /pets/dog/{id}", "CUSTOM"),
            ("GET /pets/{proxy+}", "NONE"),
            ("ANY /{proxy+}", "AWS_IAM"),
        ]
    ]
    with_default = [*routes, GatewayRoute("$default", "F", "NONE")]

    def key(method: str, path: str, table: list[GatewayRoute] = routes) -> str | None:
        found = gateway_route(table, method, path)
        return found.key if found else None

    assert key("GET", "/pets/dog/1") == "GET /pets/dog/1"
    assert key("GET", "/pets/dog/2") == "GET /pets/dog/{id}"
    assert key("POST", "/pets/dog/2") == "ANY /pets/dog/{id}"
    assert key("GET", "/pets/cat/1") == "GET /pets/{proxy+}"
    assert key("POST", "/pets/cat/1") == "ANY /{proxy+}"
    assert key("GET", "/") is None  # a greedy variable needs one segment
    assert key("GET", "/", with_default) == "$default"
    assert key("GET", "/v2/models/x", [GatewayRoute("ANY /predict", "F", "N")]) is None


def served_requests(name: str, version: str) -> list[tuple[str, str]]:
    """(method, path) for every rule of the function's own URL map, the
    model's name and version in its variables, and OPTIONS on each path (a
    browser's preflight): what a client may send, so a new route is included
    without anyone listing it."""
    from skserve.service import Service
    from skserve.settings import Settings

    service = Service(Settings.from_env({"MODEL_URI": f"s3://unused/models/{name}"}))
    requests = set()
    for rule in service.url_map.iter_rules():
        built = rule.build({"name": name, "version": version}, append_unknown=False)
        assert built is not None, rule.rule
        path = built[1]
        requests |= {(method, path) for method in rule.methods or ()} | {
            ("OPTIONS", path)
        }
    return sorted(requests)


@pytest.mark.parametrize(
    ("profile", "authorization"), [("full", "NONE"), ("slim", "AWS_IAM")]
)
def test_every_path_the_function_serves_reaches_the_handler_with_its_authorizer(
    profile: str, authorization: str, request: pytest.FixtureRequest
) -> None:
    """Routed as API Gateway routes the packaged HTTP API: /predict, /v2 and
    its model routes, /openapi.json, GET and OPTIONS /, every method. full is
    packaged public (with API keys), slim private (SigV4 on every route)."""
    built: LambdaPackage = request.getfixturevalue(
        "lambda_package" if profile == "full" else "slim_package"
    )
    routes = http_api_routes(built.template)
    function = built.template["Resources"]["PredictLambdaFunction"]["Properties"]
    served = served_requests("default", "20250101T000000.000Z-0123abcd")
    paths = {path for _, path in served}

    assert {"/", "/predict", "/openapi.json", "/v2", "/v2/health/live"} <= paths
    assert "/v2/models/default/versions/20250101T000000.000Z-0123abcd/infer" in paths
    assert function["Handler"] == "lambda_main.handler"
    for method, path in served:
        route = gateway_route(routes, method, path)
        assert route is not None, f"{method} {path}: API Gateway answers Not Found"
        assert route.function == "PredictLambdaFunction", (method, path, route)
        assert route.authorization == authorization, (method, path, route)


def test_handler_answers_every_served_path_through_the_default_route(
    handler: Any, s3_model: Path
) -> None:
    """Each request the route test sends through API Gateway, as the $default
    route delivers it: the function routes it (no 404 or 405 of its own)."""
    version = (s3_model / "LATEST").read_text().strip()
    answered = {}

    for method, path in served_requests("seed", version):
        body = {"features": SEED_FEATURES} if method == "POST" else None
        result = handler(http_api_event(method, path, body), None)
        answered[(method, path)] = result["statusCode"]

    assert len(answered) > 20
    assert not {k: v for k, v in answered.items() if v in (404, 405)}, answered
    assert answered[("GET", "/openapi.json")] == 200
    assert answered[("GET", "/v2/health/live")] == 200
    assert answered[("GET", f"/v2/models/seed/versions/{version}/ready")] == 200


# --- Lambda's payload limit: the body limit must fit inside it -----------------------


def event_bytes(event: dict[str, Any]) -> int:
    """The invocation payload: the event as Lambda receives it, JSON."""
    return len(json.dumps(event).encode())


def largest_events(limit: int) -> dict[str, dict[str, Any]]:
    """For a body of exactly `limit` bytes, the events that cost the most:
    binary (base64, +1/3) and JSON text whose escaping adds the most a real
    request adds (a BYTES tensor of one-letter strings: each `"a",` becomes
    `\\"a\\",`, +1/2), with the request line and headers at HTTP API's limit."""
    headers = {"x-padding": "p" * (HTTP_API_HEADER_BYTES - 200)}
    head = '{"inputs": [{"name": "plan", "datatype": "BYTES", "shape": [-1], "data": ['
    count = (limit - len(head) - len("]}]}") + 1) // 4
    text = head + ",".join(['"a"'] * count) + "]}]}"
    text += " " * (limit - len(text))
    assert len(text) == limit
    return {
        "binary": http_api_event(
            "POST",
            "/v2/models/default/infer",
            os.urandom(limit),
            headers={**headers, "content-type": "application/octet-stream"},
        ),
        "json": http_api_event(
            "POST", "/v2/models/default/infer", text, headers=headers
        ),
    }


@pytest.mark.parametrize("profile", ["full", "slim"])
def test_default_body_limit_fits_lambdas_synchronous_payload(
    profile: str, request: pytest.FixtureRequest
) -> None:
    built: LambdaPackage = request.getfixturevalue(
        "lambda_package" if profile == "full" else "slim_package"
    )
    limit = int(built.settings["MAX_BODY_BYTES"])
    events = largest_events(limit)
    sizes = {kind: event_bytes(event) for kind, event in events.items()}

    assert limit == 3 * 1024 * 1024  # serverless.yml's default, both profiles
    assert max(sizes.values()) <= LAMBDA_SYNC_PAYLOAD, sizes
    # The function's own 10 MiB default would not fit, even as plain JSON.
    assert event_bytes(largest_events(10 * 1024 * 1024)["binary"]) > (
        LAMBDA_SYNC_PAYLOAD
    )


@pytest.mark.parametrize("kind", ["binary", "json"])
def test_a_body_over_the_limit_gets_the_functions_413_inside_the_payload_limit(
    handler: Any, s3_model: Path, lambda_package: LambdaPackage, kind: str
) -> None:
    """One byte over the default: the event still fits Lambda's payload, so
    the caller gets the function's JSON 413, not API Gateway's error."""
    limit = int(lambda_package.settings["MAX_BODY_BYTES"])
    os.environ["MAX_BODY_BYTES"] = str(limit)
    event = largest_events(limit + 1)[kind]
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v2/models/seed/infer"

    result = answer(handler(event, None))

    assert event_bytes(event) <= LAMBDA_SYNC_PAYLOAD
    assert result.status == 413
    assert result.headers["content-type"] == "application/json"
    assert f"MAX_BODY_BYTES={limit}" in result.body["error"]


# The Lambda runtime, reduced to its import path: the task root (the artifact),
# then the runtime's own boto3. Nothing from this repo or its venv.
INVOKE = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import lambda_main
events = json.loads(sys.stdin.read())
print(json.dumps([lambda_main.handler(event, None) for event in events]))
"""


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the python3.12 Lambda runtime adds to sys.path: its boto3."""
    runtime = tmp_path_factory.mktemp("lambda-runtime") / "runtime"
    boto3_pin = f"boto3=={_pins('requirements.txt')['boto3']}"
    installed = subprocess.run(
        [
            *(str(PYTHON312), "-m", "pip", "install", "--quiet"),
            *("--disable-pip-version-check", "--target", str(runtime), boto3_pin),
        ],
        env={**os.environ, "PIP_CACHE_DIR": str(REPO / ".cache" / "pip")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return runtime


def invoke_packaged(
    task_root: Path,
    runtime: Path,
    settings: dict[str, str],
    events: list[dict[str, Any]],
    tmp_path: Path,
    *,
    script: str = INVOKE,
) -> subprocess.CompletedProcess:
    """`script` under Python 3.12 -S in the task root, with the function's
    `settings` and this session's AWS endpoints: Lambda's cold start, then
    one invocation per event."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        **settings,
        **{k: v for k, v in os.environ.items() if k.startswith(("AWS_", "PYENV"))},
    }
    # -B: /var/task is read-only, so Lambda never writes bytecode there either
    # (here it would leave the module's task root with timestamp-checked .pyc).
    return subprocess.run(
        [str(PYTHON312), "-S", "-B", "-c", script, str(task_root), str(runtime)],
        cwd=task_root,  # Lambda's working directory is the task root
        input=json.dumps(events),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def published_from_s3(bucket: str, name: str) -> tuple[str, Any]:
    """The promoted version of s3://<bucket>/models/<name> and its estimator."""
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    latest = s3.get_object(Bucket=bucket, Key=f"models/{name}/LATEST")
    version = latest["Body"].read().decode().strip()
    pickled = s3.get_object(
        Bucket=bucket, Key=f"models/{name}/versions/{version}/model.pkl"
    )
    return version, joblib.load(io.BytesIO(pickled["Body"].read()))


def test_packaged_handler_serves_the_readme_publish_from_s3_under_python312(
    lambda_package: LambdaPackage,
    task_root: Path,
    lambda_runtime: Path,
    s3_env: dict,
    moto_server: str,
    tmp_path: Path,
) -> None:
    import boto3

    settings = lambda_package.settings
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    published = run_train(*PUBLISH_ARGS, env=s3_env)
    assert published.returncode == 0, published.stderr
    version, model = published_from_s3(BUCKET, "default")
    # The API keys, where the template's API_KEYS_SSM_PARAMETER points, on
    # moto's server: the packaged handler reads them with the runtime's boto3.
    boto3.client(
        "ssm", region_name="us-east-1", endpoint_url=moto_server
    ).put_parameter(
        Name=settings["API_KEYS_SSM_PARAMETER"],
        Value=API_KEY,
        Type="SecureString",
        Overwrite=True,
    )
    key = {"x-api-key": API_KEY}
    events = [
        http_api_event("GET", "/health", headers=key),
        http_api_event("POST", "/predict", {"features": SEED_FEATURES}, headers=key),
        rest_api_event(
            "POST",
            "/predict",
            {"instances": [SEED_FEATURES, [0.0] * 10]},
            headers={"X-API-Key": API_KEY},
        ),
        http_api_event("GET", "/metadata", headers=key),
        http_api_event("POST", "/predict", {"features": SEED_FEATURES}),
    ]
    os.environ["AWS_ENDPOINT_URL_SSM"] = moto_server
    result = invoke_packaged(task_root, lambda_runtime, settings, events, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    health, single, batch, metadata, anonymous = map(
        answer, json.loads(result.stdout.splitlines()[-1])
    )

    assert f"MODEL_URI={settings['MODEL_URI']}" in published.stdout
    assert health.status == 200
    assert single.status == 200
    assert single.body == {
        "prediction": model.predict([SEED_FEATURES])[0],
        "model_version": version,
    }
    assert batch.body["predictions"] == (
        model.predict([SEED_FEATURES, [0.0] * 10]).tolist()
    )
    assert metadata.body["model_version"] == version
    assert metadata.body["served_by"] == "sklearn"
    assert anonymous.status == 401
    assert API_KEY not in result.stdout + result.stderr


# The same cold start, reporting which model libraries the process could find
# and which it imported.
INVOKE_REPORTING = """
import importlib.util, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import lambda_main
events = json.loads(sys.stdin.read())
answers = [lambda_main.handler(event, None) for event in events]
libraries = ("sklearn", "scipy", "joblib", "pandas", "onnxruntime")
print(json.dumps({
    "answers": answers,
    "findable": sorted(m for m in libraries if importlib.util.find_spec(m)),
    "imported": sorted({m.split(".")[0] for m in sys.modules} & set(libraries)),
}))
"""


def test_packaged_handler_serves_a_dataframe_pipeline_with_nulls_text_and_unseen_values(
    lambda_package: LambdaPackage,
    task_root: Path,
    lambda_runtime: Path,
    s3_env: dict,
    tmp_path: Path,
) -> None:
    """The canonical mixed-type pipeline, published by the CLI, answers a null,
    a string and an unseen category through the artifact's handler exactly as
    its own predict does on a DataFrame."""
    store = f"s3://{s3_env['BUCKET']}/models"
    frame_published, _, frame = publish_canonical(
        tmp_path / "frame", store, "frame", "--no-twin", env=s3_env
    )
    assert frame_published.returncode == 0, frame_published.stderr
    version, published = published_from_s3(s3_env["BUCKET"], "frame")
    # No API keys: the deployment these params make without apiKeysParameter.
    settings = {**lambda_package.settings, "API_KEYS_SSM_PARAMETER": ""}
    ordered = [[row[name] for name in FRAME_COLUMNS] for row in MIXED_ROWS]
    refused_row = {**MIXED_ROWS[1], "income": "rich"}
    events = [
        http_api_event("POST", "/predict", {"features": MIXED_ROWS[0]}),
        rest_api_event(
            "POST", "/predict", {"instances": ordered, "probabilities": True}
        ),
        http_api_event("POST", "/predict", {"features": refused_row}),
        http_api_event("GET", "/metadata"),
    ]

    served = invoke_packaged(
        task_root,
        lambda_runtime,
        {**settings, "MODEL_URI": f"{store}/frame"},
        events,
        tmp_path,
        script=INVOKE_REPORTING,
    )
    assert served.returncode == 0, served.stderr[-4000:]
    report = json.loads(served.stdout.splitlines()[-1])
    single, batch, refused, metadata = map(answer, report["answers"])
    expected = published.predict(frame_of(MIXED_ROWS, frame))

    assert "takes a pandas DataFrame" in frame_published.stdout
    assert single.status == 200, served.stdout[-4000:]
    assert single.body == {
        "prediction": expected[0],
        "model_version": version,
    }
    assert batch.body["predictions"] == expected.tolist() == ["yes", "no"]
    assert batch.body["classes"] == published.classes_.tolist()
    np.testing.assert_allclose(
        batch.body["probabilities"],
        published.predict_proba(frame_of(MIXED_ROWS, frame)),
        rtol=0,
        atol=1e-12,
    )
    assert refused.status == 400
    assert refused.body["error"]["code"] == "invalid_value"
    assert "('income')" in refused.body["error"]["message"]
    assert '"rich"' in refused.body["error"]["message"]
    assert metadata.body["served_by"] == "sklearn"
    assert report["imported"] == ["joblib", "pandas", "scipy", "sklearn"]


def test_slim_package_holds_onnxruntime_and_no_scikit_learn_scipy_joblib_or_pandas(
    slim_package: LambdaPackage,
) -> None:
    names = slim_package.names()
    dist_infos = {n.split("/")[0] for n in names if ".dist-info/" in n}
    versions = {
        re.sub(
            r"[-_.]+", "-", d.removesuffix(".dist-info").rsplit("-", 1)[0]
        ).lower(): d.removesuffix(".dist-info").rsplit("-", 1)[1]
        for d in dist_infos
    }
    top_level = {n.split("/")[0] for n in names}

    for package, version in _pins("requirements-lambda-slim.txt").items():
        assert versions.get(package) == version, package
    assert not SLIM_DROPS & set(versions)
    assert not {"sklearn", "scipy", "joblib", "pandas", "scipy.libs"} & top_level
    assert "boto3" not in versions  # the runtime's
    assert {"lambda_main.py", "main.py", "skserve/runtimes/onnx.py"} <= names
    assert slim_package.settings["MODEL_RUNTIME"] == "onnx"
    assert slim_package.settings["MODEL_URI"] == f"s3://{SLIM_BUCKET}/{PARAM_PATH}"


def test_both_profiles_fit_lambdas_limit_and_slim_is_the_smaller(
    lambda_package: LambdaPackage, slim_package: LambdaPackage
) -> None:
    sizes = {
        name: (built.unzipped_bytes(), built.artifact.stat().st_size)
        for name, built in (("full", lambda_package), ("slim", slim_package))
    }

    print()
    for name, (unzipped, zipped) in sizes.items():
        print(
            f"Lambda artifact, {name} profile: {unzipped / 1e6:.1f} MB unzipped "
            f"({zipped / 1e6:.1f} MB zipped)"
        )
    assert sizes["slim"][0] < sizes["full"][0] < LAMBDA_UNZIPPED_LIMIT
    assert sizes["slim"][1] < sizes["full"][1]
    # What the docs say, within a tolerance (tests/deploy/sizes.py).
    full_unzipped, full_zipped, slim_unzipped, slim_zipped = documented_mb(
        "Lambda artifact"
    )
    assert_documented("full unzipped", sizes["full"][0], full_unzipped)
    assert_documented("full zipped", sizes["full"][1], full_zipped)
    assert_documented("slim unzipped", sizes["slim"][0], slim_unzipped)
    assert_documented("slim zipped", sizes["slim"][1], slim_zipped)
    # The Lambda page repeats the table's figures; they must agree.
    assert mentioned_mb("deploy/lambda.md", r"\*\*([\d.]+) MB unzipped\*\*") == (
        full_unzipped
    )
    assert mentioned_mb("deploy/lambda.md", r"\(([\d.]+) MB zipped\)") == full_zipped
    assert mentioned_mb("deploy/lambda.md", r"the slim profile: ([\d.]+) MB") == (
        slim_unzipped
    )


def test_slim_packaged_handler_serves_the_twin_under_python312_without_sklearn(
    slim_package: LambdaPackage,
    slim_task_root: Path,
    lambda_runtime: Path,
    s3_env: dict,
    tmp_path: Path,
) -> None:
    import boto3

    settings = slim_package.settings
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=SLIM_BUCKET)
    store = ("--store", f"s3://{SLIM_BUCKET}/models")
    twin = run_train(*store, "--name", "default", env=s3_env)
    plain = run_train(*store, "--name", "plain", "--no-twin", env=s3_env)
    assert twin.returncode == 0 and plain.returncode == 0, twin.stderr + plain.stderr
    version, model = published_from_s3(SLIM_BUCKET, "default")
    rows = [SEED_FEATURES, [0.0] * 10]
    events = [
        http_api_event("POST", "/predict", {"features": SEED_FEATURES}),
        rest_api_event("POST", "/predict", {"instances": rows, "probabilities": True}),
        http_api_event("GET", "/metadata"),
    ]
    refused_settings = {**settings, "MODEL_URI": f"s3://{SLIM_BUCKET}/models/plain"}

    served = invoke_packaged(
        slim_task_root,
        lambda_runtime,
        settings,
        events,
        tmp_path,
        script=INVOKE_REPORTING,
    )
    refusing = invoke_packaged(
        slim_task_root,
        lambda_runtime,
        refused_settings,
        events[:1],
        tmp_path,
        script=INVOKE_REPORTING,
    )
    assert served.returncode == 0, served.stderr[-4000:]
    assert refusing.returncode == 0, refusing.stderr[-4000:]
    report = json.loads(served.stdout.splitlines()[-1])
    single, batch, metadata = map(answer, report["answers"])
    (refused,) = map(answer, json.loads(refusing.stdout.splitlines()[-1])["answers"])

    assert "with ONNX twin" in twin.stdout
    assert report["findable"] == ["onnxruntime"]  # nothing else to fall back on
    assert report["imported"] == ["onnxruntime"]
    assert single.status == 200, served.stdout[-4000:]
    assert single.body == {
        "prediction": model.predict([SEED_FEATURES])[0],
        "model_version": version,
    }
    assert batch.body["predictions"] == model.predict(rows).tolist()
    np.testing.assert_allclose(
        batch.body["probabilities"], model.predict_proba(rows), atol=1e-6
    )
    assert metadata.body["served_by"] == "onnx"
    assert refused.status == 503
    assert refused.body["error"]["code"] == "incompatible_model"
    assert "MODEL_RUNTIME=onnx" in refused.body["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_default_slim_handler_serves_a_dataframe_pipelines_twin_without_pandas(
    slim_package: LambdaPackage,
    slim_task_root: Path,
    lambda_runtime: Path,
    s3_env: dict,
    tmp_path: Path,
) -> None:
    """The default deploy answers the canonical mixed-type pipeline from its
    twin: a null, a string and an unseen category, with neither pandas nor
    scikit-learn in the artifact, as the pipeline's own predict does."""
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=SLIM_BUCKET)
    store = f"s3://{SLIM_BUCKET}/models"
    published, _, frame = publish_canonical(
        tmp_path / "frame", store, "frame", env=s3_env
    )
    assert published.returncode == 0, published.stderr
    version, model = published_from_s3(SLIM_BUCKET, "frame")
    settings = {**slim_package.settings, "MODEL_URI": f"{store}/frame"}
    ordered = [[row[name] for name in FRAME_COLUMNS] for row in MIXED_ROWS]
    events = [
        http_api_event("POST", "/predict", {"features": MIXED_ROWS[0]}),
        rest_api_event(
            "POST", "/predict", {"instances": ordered, "probabilities": True}
        ),
        http_api_event("GET", "/metadata"),
    ]

    served = invoke_packaged(
        slim_task_root,
        lambda_runtime,
        settings,
        events,
        tmp_path,
        script=INVOKE_REPORTING,
    )

    assert served.returncode == 0, served.stderr[-4000:]
    report = json.loads(served.stdout.splitlines()[-1])
    single, batch, metadata = map(answer, report["answers"])
    expected = model.predict(frame_of(MIXED_ROWS, frame))
    assert "with ONNX twin" in published.stdout
    assert slim_package.settings["MODEL_RUNTIME"] == "onnx"
    assert single.status == 200, served.stdout[-4000:]
    assert single.body == {"prediction": expected[0], "model_version": version}
    assert batch.body["predictions"] == expected.tolist()
    np.testing.assert_allclose(
        batch.body["probabilities"],
        model.predict_proba(frame_of(MIXED_ROWS, frame)),
        rtol=0,
        atol=1e-6,
    )
    assert metadata.body["served_by"] == "onnx"
    assert report["imported"] == ["onnxruntime"]


def test_docs_show_the_commands_these_tests_run() -> None:
    deploy = "\n".join(
        page.read_text() for page in sorted((REPO / "docs" / "deploy").glob("*.md"))
    )
    blocks = re.findall(r"```sh\n(.*?)```", deploy, re.DOTALL)
    shown = {line for block in blocks for line in block.splitlines()}

    assert "make node_modules/.installed" in shown
    assert shlex.join(["node_modules/.bin/osls", *PACKAGE_ARGS]) in shown
    assert shlex.join(["node_modules/.bin/osls", *SLIM_PACKAGE_ARGS]) in shown
    assert shlex.join(["python", "-m", "train", *PUBLISH_ARGS]) in shown
    assert "npm ci" in (REPO / "Makefile").read_text()
