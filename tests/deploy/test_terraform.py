"""infra/*.tf: parsed with python-hcl2 and checked against the code it deploys.

Terraform cannot run here, so these tests hold the configuration to what the
code and the other deploy paths say: the entry point main.py defines, the
runtime, the setting names settings.py reads, the function/ source folder, the
gcloud script's defaults, and the access rules the deploy pages promise. The
variables' validations and the IAM conditions are evaluated
(tests/deploy/expressions.py), and each rule is held against the gcloud
script's for the same values; the resource graph is read from the references.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from typing import Any

import hcl2
import pytest

from tests.deploy.expressions import (
    Variables,
    cel_allows,
    local_value,
    resource_attribute,
)
from tests.support import (
    REPO,
    entry_points,
    function_env_names,
    settings_fields,
    unexposed,
)

INFRA = REPO / "infra"
FUNCTION = REPO / "function"
LAYOUT = ("versions.tf", "variables.tf", "main.tf", "outputs.tf", "monitoring.tf")


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _clean(node: Any) -> Any:
    """python-hcl2's tree without its markers: labels and strings unquoted."""
    if isinstance(node, dict):
        return {
            _unquote(key): _clean(value)
            for key, value in node.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(node, list):
        return [_clean(value) for value in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


def load(name: str) -> dict[str, Any]:
    with (INFRA / name).open() as handle:
        return _clean(hcl2.load(handle))


def labelled(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """[{label: body}, ...] -> {label: body}."""
    return {label: body for block in blocks for label, body in block.items()}


def resources(doc: dict[str, Any], kind: str = "resource") -> dict[str, Any]:
    """{"type.name": body} for every resource (or data source) in `doc`."""
    return {
        f"{rtype}.{name}": body
        for block in doc.get(kind, [])
        for rtype, named in block.items()
        for name, body in named.items()
    }


@pytest.fixture(scope="module")
def main_tf() -> dict[str, Any]:
    return load("main.tf")


@pytest.fixture(scope="module")
def rules() -> Variables:
    """variables.tf's defaults and validations, to evaluate for -var values."""
    return Variables.load(INFRA / "variables.tf")


def terraform_accepts(rules: Variables, **given: Any) -> bool:
    """Whether `terraform plan -var ...` would get past every validation."""
    return not rules.refusals(project_id="p", **given)


@pytest.fixture(scope="module")
def variables() -> dict[str, Any]:
    return labelled(load("variables.tf")["variable"])


@pytest.fixture(scope="module")
def function(main_tf: dict[str, Any]) -> dict[str, Any]:
    return resources(main_tf)["google_cloudfunctions2_function.predict"]


@pytest.fixture(scope="module")
def local(main_tf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for block in main_tf["locals"] for k, v in block.items()}


def secret_names(variables: dict[str, Any]) -> set[str]:
    """The settings secret_environment_variables' validation accepts."""
    condition = variables["secret_environment_variables"]["validation"][0]["condition"]
    listed = re.search(r"contains\(\[([^\]]*)\]", condition)
    assert listed, condition
    return set(re.findall(r'"([A-Z_]+)"', listed.group(1)))


def test_layout_follows_terraform_google_modules() -> None:
    docs = {name: load(name) for name in LAYOUT}

    assert sorted(p.name for p in INFRA.glob("*.tf")) == sorted(LAYOUT)
    assert set(docs["versions.tf"]) == {"terraform"}
    assert set(docs["variables.tf"]) == {"variable"}
    assert set(docs["outputs.tf"]) == {"output"}
    assert {"resource", "locals", "data"} <= set(docs["main.tf"])
    assert not {"variable", "output", "terraform"} & set(docs["main.tf"])
    # Dashboards and alerts: their own variables beside what they build.
    assert set(docs["monitoring.tf"]) == {"locals", "resource"}


def test_providers_and_terraform_are_pinned_to_bounded_ranges() -> None:
    terraform = load("versions.tf")["terraform"][0]
    providers = terraform["required_providers"][0]

    assert set(providers) == {"google", "archive", "time"}
    for name, spec in providers.items():
        assert spec["source"] == f"hashicorp/{name}"
        assert re.fullmatch(r">= [\d.]+, < [\d.]+", spec["version"]), spec
    assert re.fullmatch(r">= [\d.]+, < [\d.]+", terraform["required_version"])


def test_every_variable_has_a_type_and_a_description_and_is_used(
    variables: dict[str, Any],
) -> None:
    used = "\n".join(
        (INFRA / name).read_text()
        for name in ("main.tf", "outputs.tf", "monitoring.tf")
    )
    referenced = set(re.findall(r"\bvar\.([a-z0-9_]+)", used))
    # A flag may exist only to relax another variable's validation
    # (public_without_api_keys): used there, it is used.
    for name, spec in variables.items():
        for rule in spec.get("validation", []):
            found = re.findall(r"\bvar\.([a-z0-9_]+)", rule["condition"])
            referenced |= set(found) - {name}

    for name, spec in variables.items():
        assert spec.get("type"), f"variable {name} has no type"
        assert len(spec.get("description", "")) > 10, f"{name} has no description"
    assert referenced == set(variables)


def test_function_has_the_entry_point_and_runtime_the_code_has(
    function: dict[str, Any],
) -> None:
    build = function["build_config"][0]

    assert build["entry_point"] == "predict"
    assert build["entry_point"] in entry_points()
    assert build["runtime"] == "python312"


def test_source_is_function_folder_zipped_and_named_by_its_hash(
    main_tf: dict[str, Any], function: dict[str, Any], local: dict[str, Any]
) -> None:
    archive = resources(main_tf, "data")["archive_file.source"]
    obj = resources(main_tf)["google_storage_bucket_object.source"]
    storage = function["build_config"][0]["source"][0]["storage_source"][0]
    (blocks,) = archive["dynamic"]
    source = blocks["source"]
    content = source["content"][0]

    assert local["source_dir"] == "${path.module}/../function"
    assert (INFRA / "../function").resolve() == FUNCTION
    assert (FUNCTION / "main.py").is_file()
    # One block per file: the provider refuses source blocks beside source_dir.
    assert not {"source_dir", "source_file", "excludes"} & set(archive)
    assert source["for_each"] == "${local.source_files}"
    assert local["source_files"] == (
        '${setsubtract(fileset(local.source_dir, "**"), flatten([for pattern in '
        "local.source_excludes : fileset(local.source_dir, pattern)]))}"
    )
    assert content["filename"] == "${source.value}"
    assert "${data.archive_file.source.output_sha256}" in obj["name"]
    assert obj["source"] == "${data.archive_file.source.output_path}"
    assert storage["object"] == "${google_storage_bucket_object.source.name}"
    assert storage["bucket"] == "${google_storage_bucket.source.name}"


def test_environment_is_every_setting_the_function_reads(
    function: dict[str, Any], local: dict[str, Any], variables: dict[str, Any]
) -> None:
    service = function["service_config"][0]
    plain = set(local["environment"])
    secret = secret_names(variables)

    assert "local.environment" in service["environment_variables"]
    assert plain - {"THREADS"} <= function_env_names(), "names nothing reads"
    assert secret <= function_env_names()
    assert unexposed(settings_fields(), plain | secret) == []
    assert not plain & secret
    assert local["environment"]["MODEL_URI"] == "${local.model_uri}"
    assert local["environment"]["GOOGLE_CLOUD_PROJECT"] == "${var.project_id}"


def test_threads_match_the_per_instance_concurrency(
    function: dict[str, Any], local: dict[str, Any], variables: dict[str, Any]
) -> None:
    service = function["service_config"][0]

    assert service["max_instance_request_concurrency"] == "${var.concurrency}"
    assert local["environment"]["THREADS"] == "${tostring(var.concurrency)}"
    assert variables["concurrency"]["default"] >= 1
    assert service["available_cpu"] == "${var.cpu}"
    assert variables["cpu"]["default"] == "1"  # concurrency > 1 needs a full vCPU
    for name in ("memory", "timeout_seconds", "max_instances", "min_instances"):
        assert f"${{var.{name}}}" in service.values()


def test_secrets_come_from_secret_manager_for_the_sensitive_settings(
    main_tf: dict[str, Any], function: dict[str, Any], variables: dict[str, Any]
) -> None:
    service = function["service_config"][0]
    dynamic = labelled(service["dynamic"])["secret_environment_variables"]
    accessor = resources(main_tf)["google_secret_manager_secret_iam_member.function"]

    assert secret_names(variables) == {"API_KEYS", "MODEL_SIGNING_KEY"}
    assert variables["secret_environment_variables"]["default"] == {}
    assert dynamic["for_each"] == "${var.secret_environment_variables}"
    assert dynamic["content"][0]["key"] == "${secret_environment_variables.key}"
    assert accessor["for_each"] == "${var.secret_environment_variables}"
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["member"] == "${local.function_member}"


def test_model_bucket_is_uniform_versioned_and_never_public(
    main_tf: dict[str, Any],
) -> None:
    for name in ("models", "source"):
        bucket = resources(main_tf)[f"google_storage_bucket.{name}"]
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
    models = resources(main_tf)["google_storage_bucket.models"]
    assert models["versioning"][0]["enabled"] is True
    assert models["force_destroy"] == "${var.force_destroy}"


def test_function_runs_as_its_own_account_reading_only_the_model_prefix(
    main_tf: dict[str, Any], function: dict[str, Any], local: dict[str, Any]
) -> None:
    everything = resources(main_tf)
    binding = everything["google_storage_bucket_iam_member.model_reader"]
    grants_to_function = [
        key
        for key, body in everything.items()
        if body.get("member") == "${local.function_member}"
    ]

    assert (
        function["service_config"][0]["service_account_email"]
        == "${google_service_account.function.email}"
    )
    assert local["function_member"] == (
        "serviceAccount:${google_service_account.function.email}"
    )
    assert binding["role"] == "roles/storage.objectViewer"
    assert binding["bucket"] == "${google_storage_bucket.models.name}"
    assert (
        'resource.name.startsWith(\\"projects/_/buckets/${local.model_bucket}'
        '/objects/${local.model_root}/\\")' in binding["condition"][0]["expression"]
    )
    assert local["model_root"] == "${var.model_prefix}/${var.model_name}"
    assert "gs://${local.model_bucket}/${local.model_root}" in local["model_uri"]
    assert sorted(grants_to_function) == [
        "google_secret_manager_secret_iam_member.function",
        "google_storage_bucket_iam_member.model_reader",
    ]


def test_invoker_is_public_only_when_a_variable_says_so(
    main_tf: dict[str, Any], variables: dict[str, Any]
) -> None:
    everything = resources(main_tf)
    public = [
        key for key, body in everything.items() if body.get("member") == "allUsers"
    ]
    invokers = everything["google_cloud_run_service_iam_member.invokers"]

    assert public == ["google_cloud_run_service_iam_member.public"]
    assert everything[public[0]]["count"] == "${var.allow_unauthenticated ? 1 : 0}"
    assert everything[public[0]]["role"] == "roles/run.invoker"
    assert variables["allow_unauthenticated"]["default"] is False
    assert invokers["for_each"] == "${toset(var.invoker_members)}"
    assert variables["invoker_members"]["default"] == []


def test_outputs_give_the_function_url_and_the_publish_command() -> None:
    outputs = labelled(load("outputs.tf")["output"])
    publish = outputs["publish_command"]["value"]

    assert outputs["function_uri"]["value"] == (
        "${google_cloudfunctions2_function.predict.service_config[0].uri}"
    )
    for output in outputs.values():
        assert output["description"]
    assert publish.startswith("python -m train --store gs://")
    assert "--name ${var.model_name}" in publish
    assert "${var.model_prefix}" in publish


def test_tfvars_example_sets_declared_variables(variables: dict[str, Any]) -> None:
    text = (INFRA / "terraform.tfvars.example").read_text()
    example = _clean(hcl2.loads(text))
    commented = re.findall(r"^# ([a-z_]+)\s+=", text, re.MULTILINE)

    required = {name for name, spec in variables.items() if "default" not in spec}
    assert required == {"project_id"}
    assert required <= set(example) <= set(variables)
    assert set(commented) <= set(variables)


def test_gcloud_script_defaults_match_the_terraform_defaults(
    variables: dict[str, Any], local: dict[str, Any]
) -> None:
    result = subprocess.run(
        ["bash", str(INFRA / "deploy-gcloud.sh"), "--dry-run", "--project", "p"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    deploy = next(
        argv for argv in commands if argv[:3] == ["gcloud", "functions", "deploy"]
    )
    account = next(
        argv for argv in commands if argv[:3] == ["gcloud", "iam", "service-accounts"]
    )
    flags = dict(a[2:].split("=", 1) for a in deploy if a.startswith("--") and "=" in a)

    assert deploy[3] == variables["function_name"]["default"]
    assert account[4] == variables["service_account_id"]["default"]
    assert flags["region"] == variables["region"]["default"]
    assert flags["memory"] == variables["memory"]["default"]
    assert flags["cpu"] == variables["cpu"]["default"]
    assert flags["timeout"] == f"{variables['timeout_seconds']['default']}s"
    assert flags["max-instances"] == str(variables["max_instances"]["default"])
    assert flags["concurrency"] == str(variables["concurrency"]["default"])
    assert flags["runtime"] == "python312"
    assert (
        f"ALLOW_{flags['ingress-settings'].upper().replace('-', '_')}"
        == (variables["ingress_settings"]["default"])
    )
    assert flags["entry-point"] == "predict"
    assert "p-sklearn-models" in flags["set-env-vars"]
    assert local["model_bucket"] == (
        '${coalesce(var.model_bucket_name, "${var.project_id}-sklearn-models")}'
    )


def dry_run(*args: str) -> list[list[str]]:
    """infra/deploy-gcloud.sh --dry-run ARGS, one argv per printed command."""
    result = subprocess.run(
        ["bash", str(INFRA / "deploy-gcloud.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def script_accepts(*args: str) -> bool:
    """Whether the gcloud script takes these arguments (exit 2 is a refusal)."""
    result = subprocess.run(
        ["bash", str(INFRA / "deploy-gcloud.sh"), "--dry-run", "--project", "p", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (0, 2), result.stderr
    return result.returncode == 0


def validation_regexes(variables: dict[str, Any], name: str) -> list[str]:
    """The regex() patterns in a variable's validations, as HCL strings hold them."""
    conditions = " ".join(v["condition"] for v in variables[name]["validation"])
    found = re.findall(r'regex\("((?:[^"\\]|\\.)*)"', conditions)
    # HCL escapes a backslash as \\, as Python's re would read it unescaped.
    return [pattern.replace("\\\\", "\\") for pattern in found]


@pytest.mark.parametrize(
    "prefix",
    [
        "models",
        "team/models",
        "a.b/c-d_e",
        ".hidden",
        "/models",
        "models/",
        "a//b",
        "a,b",
        'a"b',
        "a b",
        "a/../b",
        "..",
        "./m",
        "a/.",
    ],
)
def test_model_prefix_follows_one_rule_in_terraform_and_the_script(
    variables: dict[str, Any], prefix: str
) -> None:
    """The prefix ends up in the IAM condition's CEL string: both paths must
    refuse what would break it, and agree on everything else."""
    shape, dot_segment = validation_regexes(variables, "model_prefix")
    condition = variables["model_prefix"]["validation"][0]["condition"]
    terraform_accepts = bool(re.search(shape, prefix)) and not re.search(
        dot_segment, prefix
    )

    assert condition.count("regex(") == 2 and "&& !can(regex(" in condition
    assert script_accepts("--prefix", prefix) == terraform_accepts
    assert terraform_accepts == (
        prefix in {"models", "team/models", "a.b/c-d_e", ".hidden"}
    )


@pytest.mark.parametrize(
    "bucket",
    ["team-models", "a.b_c-d", "ab", "Team", "-models", 'b"x', "b,x", "b" * 223],
)
def test_bucket_name_follows_one_rule_in_terraform_and_the_script(
    variables: dict[str, Any], bucket: str
) -> None:
    (shape,) = validation_regexes(variables, "model_bucket_name")
    terraform_accepts = bool(re.search(shape, bucket))

    assert script_accepts("--bucket", bucket) == terraform_accepts
    assert terraform_accepts == (bucket in {"team-models", "a.b_c-d"})


def test_build_and_function_accounts_must_differ_in_both_paths(
    variables: dict[str, Any],
) -> None:
    rules = [
        v["condition"] for v in variables["build_service_account_id"]["validation"]
    ]

    assert "${var.build_service_account_id != var.service_account_id}" in rules
    assert not script_accepts("--build-service-account", "sklearn-predict")
    assert script_accepts("--build-service-account", "sklearn-builder")


@pytest.mark.parametrize(
    ("cpu", "concurrency", "accepted"),
    [
        ("1", 4, True),
        ("2", 80, True),
        ("1000m", 8, True),
        (".583", 1, True),
        ("0.5", 1, True),
        ("0.5", 2, False),
        ("500m", 4, False),
        ("0.999", 2, False),
        ("one", 1, False),
        ("1.", 1, False),
    ],
)
def test_concurrency_above_one_needs_a_whole_vcpu_in_both_paths(
    rules: Variables, cpu: str, concurrency: int, accepted: bool
) -> None:
    refused = rules.refusals(project_id="p", cpu=cpu, concurrency=concurrency)

    assert script_accepts("--cpu", cpu, "--concurrency", str(concurrency)) == accepted
    assert (not refused) == accepted


# Cloud Run's CPU and memory rules (https://cloud.google.com/run/docs/configuring/
# services/cpu and .../services/memory-limits): 0.08 to 1 vCPU in steps of
# 0.001, else 1, 2, 4, 6 or 8; 128Mi to 32Gi; below 0.5 vCPU at most 512Mi,
# below 1 at most 1Gi; over 4Gi needs 2 vCPUs, over 8Gi 4, over 16Gi 6, over
# 24Gi 8; 4 vCPUs need 2Gi, 6 and 8 need 4Gi.
CPU_MEMORY_CASES = [
    # What a first deploy got wrong: each passed validation before.
    ("1.5", "1Gi", False),
    ("1500m", "1Gi", False),
    ("0", "512Mi", False),
    ("0.05", "128Mi", False),
    ("0.5", "2Gi", False),
    # The edges of each rule, on both sides.
    ("0.08", "512Mi", True),
    ("80m", "128Mi", True),
    ("79m", "128Mi", False),
    ("0.08", "513Mi", False),
    ("0.5", "1Gi", True),
    ("0.499", "513Mi", False),
    (".583", "1Gi", True),
    ("0.999", "1025Mi", False),
    ("1", "4Gi", True),
    ("1", "4097Mi", False),
    ("2", "8Gi", True),
    ("2", "9Gi", False),
    ("2.0", "4Gi", True),
    ("3", "2Gi", False),
    ("4", "2Gi", True),
    ("4", "1Gi", False),
    ("4", "17Gi", False),
    ("6", "4Gi", True),
    ("6", "2Gi", False),
    ("8", "32Gi", True),
    ("8", "33Gi", False),
    ("16", "32Gi", False),
    ("1.0001", "1Gi", False),
    # Memory's own shape and range.
    ("1", "128Mi", True),
    ("1", "127Mi", False),
    ("1", "1024M", True),
    ("1", "2G", True),
    ("1", "1000000k", True),
    ("1", "1GB", False),
    ("1", "1.5Gi", False),
    ("1", "1024", False),
]


@pytest.mark.parametrize(("cpu", "memory", "accepted"), CPU_MEMORY_CASES)
def test_cpu_and_memory_follow_cloud_runs_rules_in_both_paths(
    rules: Variables, cpu: str, memory: str, accepted: bool
) -> None:
    """Refused before anything is created, as Cloud Run would refuse them only
    when it creates the function, after the buckets, accounts and publish."""
    args = ("--cpu", cpu, "--memory", memory, "--concurrency", "1")
    script = subprocess.run(
        ["bash", str(INFRA / "deploy-gcloud.sh"), "--dry-run", "--project", "p", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    refused = rules.refusals(project_id="p", cpu=cpu, memory=memory, concurrency=1)

    assert script.returncode == (0 if accepted else 2), script.stderr
    assert (not refused) == accepted, refused
    # One rule, one message: the script says what Terraform says.
    said = script.stderr.replace("--cpu must", "cpu must").replace("--memory", "memory")
    for message in refused:
        assert message.rstrip(".") in said.replace("\n", " "), (message, said)


def test_cpu_and_memory_defaults_are_a_pair_cloud_run_accepts(
    rules: Variables, variables: dict[str, Any]
) -> None:
    assert terraform_accepts(rules)
    assert script_accepts()
    assert (variables["cpu"]["default"], variables["memory"]["default"]) == ("1", "1Gi")


@pytest.mark.parametrize(
    ("public", "keys", "flag", "accepted"),
    [
        (False, False, False, True),
        (True, True, False, True),
        (True, False, True, True),
        (True, False, False, False),
        (False, False, True, True),
    ],
)
def test_public_function_needs_api_keys_or_an_explicit_flag_in_both_paths(
    rules: Variables, public: bool, keys: bool, flag: bool, accepted: bool
) -> None:
    """A forgotten API_KEYS would leave the URL open to anyone: public needs
    keys, or public_without_api_keys / --public-without-api-keys saying so."""
    secrets = {"API_KEYS": {"secret": "sklearn-api-keys"}} if keys else {}
    signing = {"MODEL_SIGNING_KEY": {"secret": "sklearn-signing"}}
    args = ["--skip-train"]
    args += ["--allow-unauthenticated"] if public else []
    args += ["--secret", "API_KEYS=sklearn-api-keys"] if keys else []
    args += ["--public-without-api-keys"] if flag else []
    given = {
        "allow_unauthenticated": public,
        "public_without_api_keys": flag,
        # A signing key is no API key.
        "secret_environment_variables": {**secrets, **signing},
    }

    assert terraform_accepts(rules, **given) == accepted
    assert script_accepts(*args, "--secret", "MODEL_SIGNING_KEY=s") == accepted
    assert rules.defaults["public_without_api_keys"] is False


def test_cross_variable_validation_requires_terraform_1_9() -> None:
    """Before 1.9 a validation may only refer to its own variable."""
    required = load("versions.tf")["terraform"][0]["required_version"]
    lower = re.match(r">= (\d+)\.(\d+)", required)

    assert lower and (int(lower[1]), int(lower[2])) >= (1, 9)


def test_noncurrent_retention_is_validated_and_matches_the_script(
    main_tf: dict[str, Any], variables: dict[str, Any]
) -> None:
    rule = resources(main_tf)["google_storage_bucket.models"]["lifecycle_rule"][0]
    days = variables["noncurrent_version_retention_days"]
    update = next(a for a in dry_run("--project", "p") if "update" in a[:4])
    lifecycle = json.loads((REPO / update[-1].split("=", 1)[1]).read_text())

    assert rule["condition"][0]["days_since_noncurrent_time"] == (
        "${var.noncurrent_version_retention_days}"
    )
    assert rule["action"][0]["type"] == "Delete"
    assert (
        "var.noncurrent_version_retention_days >= 1"
        in days["validation"][0]["condition"]
    )
    assert lifecycle["rule"][0]["condition"] == {
        "daysSinceNoncurrentTime": days["default"]
    }
    assert not script_accepts("--noncurrent-days", "0")


def test_build_runs_as_its_own_account_with_the_scripts_roles(
    main_tf: dict[str, Any],
    function: dict[str, Any],
    local: dict[str, Any],
    variables: dict[str, Any],
) -> None:
    everything = resources(main_tf)
    account = everything["google_service_account.build"]
    grants = everything["google_project_iam_member.build"]
    script_grants = [
        argv
        for argv in dry_run("--project", "p")
        if argv[:3] == ["gcloud", "projects", "add-iam-policy-binding"]
    ]
    script_roles = {
        a.split("=", 1)[1] for g in script_grants for a in g if a.startswith("--role=")
    }

    # The id attribute is projects/<project>/serviceAccounts/<email>, the
    # format build_config.service_account takes.
    assert function["build_config"][0]["service_account"] == (
        "${google_service_account.build.id}"
    )
    assert account["account_id"] == "${var.build_service_account_id}"
    assert (
        variables["build_service_account_id"]["default"]
        != (variables["service_account_id"]["default"])
    )
    storage = everything["google_project_iam_member.build_storage"]
    terraform_roles = {*local["build_roles"], storage["role"]}
    assert grants["for_each"] == "${toset(local.build_roles)}"
    assert grants["member"] == storage["member"] == "${local.build_member}"
    # What Google documents for a custom build account: logs, images, and
    # objectAdmin to fetch the source; not the builder role, which would let
    # the build write any bucket.
    assert (
        terraform_roles
        == script_roles
        == {
            "roles/logging.logWriter",
            "roles/artifactregistry.writer",
            "roles/storage.objectAdmin",
        }
    )
    for name in ("build", "build_storage"):
        assert f"${{google_project_iam_member.{name}}}" in function["depends_on"]


MAIN_TF = INFRA / "main.tf"


def script_condition(argv: list[str]) -> str:
    """The CEL expression of a gcloud --condition=expression=...,title=... flag."""
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith("--condition=")]
    expression, _, title = value.removeprefix("expression=").rpartition(",title=")
    assert title and "," not in title, value
    return expression


@pytest.mark.parametrize(
    ("given", "args", "bucket"),
    [
        ({}, (), "p-sklearn-models"),
        (
            {"model_bucket_name": "team-models"},
            ("--bucket", "team-models"),
            "team-models",
        ),
    ],
)
def test_build_account_cannot_write_the_model_bucket_in_both_paths(
    rules: Variables, given: dict[str, str], args: tuple[str, ...], bucket: str
) -> None:
    """roles/storage.objectAdmin (to fetch the source) holds on every bucket but
    the model bucket: the build can never write or delete LATEST or a version."""
    terraform = local_value(
        MAIN_TF, rules, "build_storage_condition", project_id="p", **given
    )
    bound = resource_attribute(
        MAIN_TF,
        rules,
        "google_project_iam_member.build_storage",
        "condition.expression",
        project_id="p",
        **given,
    )
    (grant,) = [
        argv
        for argv in dry_run("--project", "p", *args)
        if argv[:3] == ["gcloud", "projects", "add-iam-policy-binding"]
        and "--role=roles/storage.objectAdmin" in argv
    ]
    script = script_condition(grant)
    denied = [
        f"projects/_/buckets/{bucket}",
        f"projects/_/buckets/{bucket}/objects/models/default/LATEST",
        f"projects/_/buckets/{bucket}/objects/models/default/versions/v1/model.pkl",
        f"projects/_/buckets/{bucket}/objects/other/team/model.pkl",
    ]
    allowed = [
        "projects/_/buckets/gcf-v2-sources-123456789-us-central1/objects/f.zip",
        "projects/_/buckets/gcf-v2-uploads-123456789-us-central1/objects/f.zip",
        "projects/_/buckets/p-gcf-source/objects/sklearn-predict/0a1b.zip",
        f"projects/_/buckets/{bucket}-staging/objects/models/default/LATEST",
        f"projects/_/buckets/{bucket}x",
        "projects/p",  # the role's resourcemanager.projects.get
    ]

    assert terraform == bound == script
    for name in denied:
        assert not cel_allows(script, name), name
    for name in allowed:
        assert cel_allows(script, name), name


@pytest.mark.parametrize(
    ("prefix", "model"), [("models", "default"), ("team/models", "churn")]
)
def test_function_reads_only_its_model_prefix_by_the_same_condition_in_both_paths(
    rules: Variables, prefix: str, model: str
) -> None:
    terraform = resource_attribute(
        MAIN_TF,
        rules,
        "google_storage_bucket_iam_member.model_reader",
        "condition.expression",
        project_id="p",
        model_prefix=prefix,
        model_name=model,
    )
    (grant,) = [
        argv
        for argv in dry_run("--project", "p", "--prefix", prefix, "--model", model)
        if argv[:4] == ["gcloud", "storage", "buckets", "add-iam-policy-binding"]
    ]
    script = script_condition(grant)
    objects = "projects/_/buckets/p-sklearn-models/objects"
    readable = [f"{objects}/{prefix}/{model}/LATEST"]
    readable += [f"{objects}/{prefix}/{model}/versions/v1/model.pkl"]
    unreadable = [
        f"{objects}/{prefix}/{model}-v2/LATEST",
        f"{objects}/{prefix}/{model}x/versions/v1/model.pkl",
        f"{objects}/{prefix}/LATEST",
        f"{objects}/other/{model}/LATEST",
        f"projects/_/buckets/p-sklearn-models-x/objects/{prefix}/{model}/LATEST",
        "projects/_/buckets/p-sklearn-models",
    ]

    assert terraform == script
    assert [cel_allows(script, name) for name in readable] == [True, True]
    assert not [name for name in unreadable if cel_allows(script, name)]


# The Google APIs each resource type calls: a type missing here fails the test
# below until its API is named.
APIS_CALLED = {
    "google_storage_bucket": {"storage.googleapis.com"},
    "google_storage_bucket_object": {"storage.googleapis.com"},
    "google_storage_bucket_iam_member": {"storage.googleapis.com"},
    "google_service_account": {"iam.googleapis.com"},
    # projects.getIamPolicy / setIamPolicy.
    "google_project_iam_member": {"cloudresourcemanager.googleapis.com"},
    "google_secret_manager_secret_iam_member": {"secretmanager.googleapis.com"},
    "google_cloudfunctions2_function": {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
    },
    "google_cloud_run_service_iam_member": {"run.googleapis.com"},
}


def dependency_graph(
    main_tf: dict[str, Any], local: dict[str, Any]
) -> dict[str, set[str]]:
    """Terraform's graph, read from the configuration: each resource's and
    local's direct dependencies (references in its body, depends_on), with a
    local standing for what it refers to."""
    nodes = {
        **resources(main_tf),
        **{f"data.{k}": v for k, v in resources(main_tf, "data").items()},
    }
    nodes |= {f"local.{name}": value for name, value in local.items()}
    graph = {}
    for key, body in nodes.items():
        text = json.dumps(body)
        graph[key] = {
            other
            for other in nodes
            if other != key
            and re.search(rf"(?<![\w.]){re.escape(other)}(?![\w-])", text)
        }
    return graph


def depends_on(graph: dict[str, set[str]], key: str) -> set[str]:
    seen: set[str] = set()
    todo = [key]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_every_resource_that_calls_an_api_waits_for_its_enablement(
    main_tf: dict[str, Any], local: dict[str, Any], rules: Variables
) -> None:
    """On a fresh project the IAM, Resource Manager and Secret Manager APIs are
    off: a resource created while its API is being enabled fails."""
    graph = dependency_graph(main_tf, local)
    everything = resources(main_tf)
    secrets = {"API_KEYS": {"secret": "k"}}
    plain = set(local_value(MAIN_TF, rules, "apis", project_id="p"))
    with_secrets = set(
        local_value(
            MAIN_TF, rules, "apis", project_id="p", secret_environment_variables=secrets
        )
    )

    assert with_secrets - plain == {"secretmanager.googleapis.com"}
    assert everything["google_project_service.apis"]["for_each"] == (
        "${toset(var.enable_apis ? local.apis : [])}"
    )
    for key, body in everything.items():
        kind = key.split(".")[0]
        if kind == "google_project_service" or not kind.startswith("google_"):
            continue
        assert kind in APIS_CALLED, f"{key}: which API does it call?"
        # Secret Manager resources exist only when secrets are configured.
        enabled = with_secrets if "secret" in body.get("for_each", "") else plain
        assert APIS_CALLED[kind] <= enabled, key
        assert "google_project_service.apis" in depends_on(graph, key), key
    # The graph is read right: the accounts wait for the APIs directly.
    assert "google_project_service.apis" in graph["google_service_account.build"]
    assert (
        "local.function_member"
        in graph["google_storage_bucket_iam_member.model_reader"]
    )


def test_script_enables_the_apis_terraform_enables(
    rules: Variables,
) -> None:
    for args, given in [
        ((), {}),
        (
            ("--secret", "API_KEYS=k"),
            {"secret_environment_variables": {"API_KEYS": {"secret": "k"}}},
        ),
    ]:
        (enable,) = [
            argv
            for argv in dry_run("--project", "p", "--skip-train", *args)
            if argv[:3] == ["gcloud", "services", "enable"]
        ]
        terraform = local_value(MAIN_TF, rules, "apis", project_id="p", **given)
        assert sorted(a for a in enable[3:] if not a.startswith("--")) == sorted(
            terraform
        )


def test_every_binding_waits_for_new_accounts_to_propagate(
    main_tf: dict[str, Any],
) -> None:
    everything = resources(main_tf)
    sleep = everything["time_sleep.accounts_propagate"]
    bindings = {
        key: body
        for key, body in everything.items()
        if key.split(".")[0].endswith(("_iam_member", "_iam_binding"))
        and "run_service" not in key
    }

    assert re.fullmatch(r"\d+s", sleep["create_duration"])
    assert int(sleep["create_duration"][:-1]) >= 10
    assert set(sleep["triggers"].values()) == {
        "${google_service_account.function.email}",
        "${google_service_account.build.email}",
    }
    assert sorted(bindings) == [
        "google_project_iam_member.build",
        "google_project_iam_member.build_storage",
        "google_secret_manager_secret_iam_member.function",
        "google_storage_bucket_iam_member.model_reader",
    ]
    for key, body in bindings.items():
        assert "${time_sleep.accounts_propagate}" in body.get("depends_on", []), key


def test_source_archive_is_source_blocks_alone_so_its_hash_is_the_content(
    main_tf: dict[str, Any],
) -> None:
    """The archive provider writes source blocks with Go's zip.Writer.Create:
    no timestamp and no mode (output_file_mode applies only to files it reads
    from disk, so setting it would claim what it does not do); and
    output_sha256, which names the object, needs archive 2.4 or later."""
    archive = resources(main_tf, "data")["archive_file.source"]
    providers = load("versions.tf")["terraform"][0]["required_providers"][0]

    assert set(archive) == {"type", "output_path", "dynamic"}
    assert providers["archive"]["version"] == ">= 2.4, < 3.0"


def test_infra_leaves_no_generated_state_in_the_repo() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()

    assert {"infra/.build/", "infra/.terraform/", "infra/*.tfstate"} <= set(ignored)
    assert not list(INFRA.glob("*.tfstate"))
    for script in ("deploy-gcloud.sh", "lambda/python.sh"):
        assert (INFRA / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_runtime_profile_picks_the_requirements_and_the_runtime_the_script_does(
    main_tf: dict[str, Any], local: dict[str, Any], variables: dict[str, Any]
) -> None:
    profile = variables["runtime_profile"]
    choices, cross = (v["condition"] for v in profile["validation"])
    archive = resources(main_tf, "data")["archive_file.source"]
    content = archive["dynamic"][0]["source"]["content"][0]["content"]
    requirements = local["profile_requirements"]

    assert profile["default"] == "full"
    assert choices == '${contains(["full", "slim"], var.runtime_profile)}'
    assert set(requirements) == {"full", "slim"}
    assert requirements["full"] == "requirements.txt"
    # requirements.txt's entry in the archive holds the profile's file.
    assert content == (
        '${file("${local.source_dir}/${source.value == "requirements.txt" ? '
        'local.profile_requirements[var.runtime_profile] : source.value}")}'
    )
    assert local["environment"]["MODEL_RUNTIME"] == "${local.model_runtime}"
    assert local["model_runtime"] == (
        '${var.runtime_profile == "slim" ? "onnx" : var.model_runtime}'
    )
    assert cross == (
        '${var.runtime_profile != "slim" || var.model_runtime != "sklearn"}'
    )
    for name, file in requirements.items():
        deploy = next(
            argv
            for argv in dry_run("--project", "p", "--profile", name)
            if argv[:3] == ["gcloud", "functions", "deploy"]
        )
        flags = dict(a[2:].split("=", 1) for a in deploy if "=" in a)
        staged = REPO / flags["source"]
        env = flags["set-env-vars"].split(",")
        assert (staged / "requirements.txt").read_text() == (
            (FUNCTION / file).read_text()
        ), name
        assert ("MODEL_RUNTIME=onnx" in env) == (name == "slim")
    assert not script_accepts("--profile", "slim", "--env", "MODEL_RUNTIME=sklearn")
    assert script_accepts("--profile", "full", "--env", "MODEL_RUNTIME=sklearn")
    assert not script_accepts("--profile", "tiny")
