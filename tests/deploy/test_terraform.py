"""infra/*.tf: parsed with python-hcl2 and checked against the code it deploys.

Terraform cannot run here, so these tests hold the configuration to what the
code and the other deploy paths say: the entry point main.py defines, the
runtime, the setting names settings.py reads, the function/ source folder, the
gcloud script's defaults, and the access rules the README promises.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from typing import Any

import hcl2
import pytest

from tests.support import (
    REPO,
    entry_points,
    function_env_names,
    settings_fields,
    unexposed,
)

INFRA = REPO / "infra"
FUNCTION = REPO / "function"
LAYOUT = ("versions.tf", "variables.tf", "main.tf", "outputs.tf")


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
    used = "\n".join((INFRA / name).read_text() for name in ("main.tf", "outputs.tf"))
    referenced = set(re.findall(r"\bvar\.([a-z0-9_]+)", used))

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
    variables: dict[str, Any], cpu: str, concurrency: int, accepted: bool
) -> None:
    (cpu_shape,) = validation_regexes(variables, "cpu")
    rules = [v["condition"] for v in variables["concurrency"]["validation"]]
    cross = next(rule for rule in rules if "var.cpu" in rule)
    shaped = bool(re.search(cpu_shape, cpu))
    vcpus = (
        float(cpu.removesuffix("m")) / (1000 if cpu.endswith("m") else 1)
        if shaped
        else 0
    )

    assert script_accepts("--cpu", cpu, "--concurrency", str(concurrency)) == accepted
    assert (shaped and (concurrency == 1 or vcpus >= 1)) == accepted
    assert cross.startswith("${var.concurrency == 1 || ")
    assert 'tonumber(trimsuffix(var.cpu, "m")) / 1000' in cross
    assert ">= 1" in cross


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
    assert grants["for_each"] == "${toset(local.build_roles)}"
    assert grants["member"] == "${local.build_member}"
    assert set(local["build_roles"]) == script_roles
    assert "roles/cloudbuild.builds.builder" in script_roles
    assert "${google_project_iam_member.build}" in function["depends_on"]
    assert "iam.googleapis.com" in local["apis"]


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
        "google_secret_manager_secret_iam_member.function",
        "google_storage_bucket_iam_member.model_reader",
    ]
    for key, body in bindings.items():
        assert "${time_sleep.accounts_propagate}" in body.get("depends_on", []), key


def test_source_archive_has_one_file_mode_so_its_hash_is_stable(
    main_tf: dict[str, Any],
) -> None:
    archive = resources(main_tf, "data")["archive_file.source"]

    assert re.fullmatch(r"0[0-7]{3}", archive["output_file_mode"])


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
