"""The configuration model: the example config, every validation error, overrides, freeze windows.

Each error case edits a valid configuration written under a temporary folder (the working
directory, so messages show `config/...` paths) and names the fragment the error must contain:
the file, the key path and the problem.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.bundles import artifact
from conveyor.bundles.lint import lint
from conveyor.bundles.render import resolve_parameters
from conveyor.bundles.source import load_source
from conveyor.cli import bundle as bundle_commands
from conveyor.config.binding import config_digest
from conveyor.config.model import (
    BundleTestsGate,
    CommandGate,
    DeploymentGate,
    FreezeWindow,
    HttpGate,
    Weekly,
)
from conveyor.config.reader import load_config
from conveyor.errors import ConfigError, PromotionRefused

REPO_ROOT = Path(__file__).resolve().parents[2]
API = "conveyor.dev/v1alpha1"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in an empty folder with none of Conveyor's environment overrides set."""
    for name in ("CONVEYOR_CONFIG", "CONVEYOR_REGISTRY", "CONVEYOR_KUBECONFIG", "CONVEYOR_STATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def base_config() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Config",
        "registry": "",
        "stateRepository": "../state.git",
        "clusters": {"local": {"kubeconfig": "kube/config", "context": "kwok"}},
        "apps": {
            "web": {
                "source": {"repository": "..", "ref": "main", "path": "examples/web"},
                "pipeline": "pipelines/web.yaml",
            }
        },
    }


def target(name: str, namespace: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "cluster": "local", "namespace": namespace, **settings}


def base_pipeline() -> dict[str, Any]:
    """stages[0] dev, stages[1] staging (gates 0 tests, 1 command, 2 http, 3 deployment,
    4 tests), stages[2] prod (freezeWindows 0 absolute, 1 weekly)."""
    return {
        "apiVersion": API,
        "kind": "Pipeline",
        "name": "web",
        "stages": [
            {"name": "dev", "targets": [target("dev", "web-dev")]},
            {
                "name": "staging",
                "targets": [
                    target(
                        "staging",
                        "web-staging",
                        parameters="environments/shared.yaml",
                        forceConflicts=True,
                        selfHeal=False,
                    )
                ],
                "gates": [
                    {"type": "tests"},
                    {"type": "command", "command": ["python3", "-c", "pass"], "env": {"MODE": "x"}},
                    {"type": "http", "url": "http://web.example/healthz", "bodyContains": "ok"},
                    {"type": "deployment", "deployment": "smoke/nightly", "parameters": {"n": 2}},
                    {"type": "tests", "timeout": 90},
                ],
                "autoPromote": False,
            },
            {
                "name": "prod",
                "targets": [target("prod-eu", "web-prod-eu"), target("prod-us", "web-prod-us")],
                "gates": [{"type": "tests", "name": "prod-tests"}],
                "approval": {"required": True, "timeout": "30m"},
                "soak": "1h30m",
                "parallelism": 2,
                "freezeWindows": [
                    {
                        "reason": "year end",
                        "start": "2025-12-20T00:00:00Z",
                        "end": "2026-01-05T00:00:00+01:00",
                    },
                    {
                        "reason": "weekend",
                        "weekly": {"days": ["sat", "sun"], "from": "00:00", "to": "00:00"},
                    },
                ],
            },
        ],
    }


@dataclass
class Tree:
    """A configuration folder to write: the two documents, and files (by path under config/)
    written as they are, replacing the documents or the parameter files."""

    config: dict[str, Any] = field(default_factory=base_config)
    pipeline: dict[str, Any] = field(default_factory=base_pipeline)
    files: dict[str, str] = field(
        default_factory=lambda: {
            "environments/dev.yaml": "replicas: 1\ngreeting: hello from dev\n",
            "environments/shared.yaml": "replicas: 2\n",
            "environments/prod-eu.yaml": "replicas: 3\n",
            "environments/prod-us.yaml": "",
        }
    )

    def write(self, root: Path) -> Path:
        documents = {
            "conveyor.yaml": yaml.safe_dump(self.config, sort_keys=False),
            "pipelines/web.yaml": yaml.safe_dump(self.pipeline, sort_keys=False),
        }
        for relative, text in {**documents, **self.files}.items():
            path = root / "config" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return root / "config" / "conveyor.yaml"


Edit = Callable[[Tree], object]


def stages(tree: Tree) -> list[dict[str, Any]]:
    stage_list: list[dict[str, Any]] = tree.pipeline["stages"]
    return stage_list


def gate(tree: Tree, index: int) -> dict[str, Any]:
    gate_settings: dict[str, Any] = stages(tree)[1]["gates"][index]
    return gate_settings


def window(tree: Tree, index: int) -> dict[str, Any]:
    window_settings: dict[str, Any] = stages(tree)[2]["freezeWindows"][index]
    return window_settings


def load(tree: Tree, root: Path) -> Any:
    return load_config(tree.write(root))


# --- a valid configuration ------------------------------------------------------------------


def test_a_valid_configuration_loads_with_its_values_and_defaults(isolated: Path) -> None:
    config = load(Tree(), isolated)

    assert config.path == isolated / "config" / "conveyor.yaml"
    assert config.root == isolated / "config"
    assert config.registry == ""
    assert config.state_repository == str(isolated / "state.git")
    local = config.clusters["local"]
    assert (local.name, local.kubeconfig, local.context) == (
        "local",
        isolated / "config" / "kube" / "config",
        "kwok",
    )
    web = config.app("web")
    assert (web.source.repository, web.source.ref, web.source.path) == (
        str(isolated),
        "main",
        "examples/web",
    )
    pipeline = web.pipeline
    assert pipeline.name == "web"
    assert pipeline.path == isolated / "config" / "pipelines" / "web.yaml"
    assert [stage.name for stage in pipeline.stages] == ["dev", "staging", "prod"]

    dev, staging, prod = pipeline.stages
    assert (dev.gates, dev.soak, dev.freeze_windows, dev.auto_promote, dev.parallelism) == (
        (),
        0.0,
        (),
        True,
        1,
    )
    assert (dev.approval.required, dev.approval.timeout) == (False, 3600.0)
    (dev_target,) = dev.targets
    assert dev_target.name == "dev" and dev_target.stage == "dev"
    assert dev_target.cluster is local
    assert dev_target.namespace == "web-dev"
    assert dev_target.parameters_file == isolated / "config" / "environments" / "dev.yaml"
    assert dev_target.parameters == {"replicas": 1, "greeting": "hello from dev"}
    assert (dev_target.force_conflicts, dev_target.self_heal) == (False, True)

    (staging_target,) = staging.targets
    assert staging_target.parameters_file.name == "shared.yaml"
    assert staging_target.parameters == {"replicas": 2}
    assert (staging_target.force_conflicts, staging_target.self_heal) == (True, False)
    assert staging.auto_promote is False
    tests, command, http, deployment, more_tests = staging.gates
    assert tests == BundleTestsGate(name="tests", timeout=300.0)
    assert command == CommandGate(
        name="command", timeout=300.0, command=("python3", "-c", "pass"), env={"MODE": "x"}
    )
    assert http == HttpGate(
        name="http",
        timeout=60.0,
        url="http://web.example/healthz",
        expect_status=200,
        body_contains="ok",
        retries=3,
        interval=2.0,
    )
    assert deployment == DeploymentGate(
        name="deployment", timeout=1800.0, deployment="smoke/nightly", parameters={"n": 2}
    )
    assert more_tests == BundleTestsGate(name="tests-2", timeout=90.0)
    gate_types = [gate.type for gate in staging.gates]
    assert gate_types == ["tests", "command", "http", "deployment", "tests"]

    assert [target.name for target in prod.targets] == ["prod-eu", "prod-us"]
    assert prod.targets[1].parameters == {}
    assert [gate.name for gate in prod.gates] == ["prod-tests"]
    assert (prod.approval.required, prod.approval.timeout) == (True, 1800.0)
    assert (prod.soak, prod.parallelism) == (5400.0, 2)
    year_end, weekend = prod.freeze_windows
    assert year_end == FreezeWindow(
        reason="year end",
        start=datetime(2025, 12, 20, tzinfo=UTC),
        end=datetime(2026, 1, 4, 23, tzinfo=UTC),
        weekly=None,
    )
    assert weekend == FreezeWindow(
        reason="weekend", start=None, end=None, weekly=Weekly(frozenset({5, 6}), time(), time())
    )


def test_pipeline_lookups_answer_by_name_and_name_what_is_known(isolated: Path) -> None:
    pipeline = load(Tree(), isolated).app("web").pipeline

    assert pipeline.stage("staging").name == "staging"
    assert pipeline.previous("dev") is None
    previous = pipeline.previous("prod")
    assert previous is not None and previous.name == "staging"
    assert pipeline.target("prod-us").stage == "prod"
    target_names = [target.name for target in pipeline.targets()]
    assert target_names == ["dev", "staging", "prod-eu", "prod-us"]
    assert pipeline.environment_names() == ["dev", "staging", "prod", "prod-eu", "prod-us"]
    with pytest.raises(ConfigError) as unknown_stage:
        pipeline.previous("qa")
    assert "config/pipelines/web.yaml: unknown stage 'qa'; known: dev, staging, prod" in str(
        unknown_stage.value
    )
    with pytest.raises(ConfigError) as unknown_target:
        pipeline.target("prod-ap")
    assert "unknown target 'prod-ap'; known: dev, staging, prod-eu, prod-us" in str(
        unknown_target.value
    )


def test_an_unknown_app_is_an_error_naming_the_known_ones(isolated: Path) -> None:
    config = load(Tree(), isolated)

    calls: list[Callable[[], object]] = [
        lambda: config.app("api"),
        lambda: config.store_location("api"),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as error:
            call()
        assert "config/conveyor.yaml: apps: unknown app 'api'; known: web" in str(error.value)


def test_stage_frozen_returns_the_first_active_window(isolated: Path) -> None:
    prod = load(Tree(), isolated).app("web").pipeline.stage("prod")

    saturday_in_december = datetime(2025, 12, 27, 12, tzinfo=UTC)
    frozen = prod.frozen(saturday_in_december)
    assert frozen is not None and frozen.reason == "year end"
    saturday_in_march = datetime(2026, 3, 7, 12, tzinfo=UTC)
    frozen = prod.frozen(saturday_in_march)
    assert frozen is not None and frozen.reason == "weekend"
    assert prod.frozen(datetime(2026, 3, 9, 12, tzinfo=UTC)) is None


def test_the_example_configuration_loads() -> None:
    config = load_config(REPO_ROOT / "config" / "conveyor.yaml")

    assert config.registry == ""
    assert config.state_repository == str(REPO_ROOT / ".conveyor" / "state.git")
    assert config.clusters["local"].kubeconfig == REPO_ROOT / ".conveyor" / "kubeconfig"
    assert config.clusters["local"].context is None
    web = config.app("web")
    assert (web.source.repository, web.source.ref, web.source.path) == (
        str(REPO_ROOT),
        "HEAD",
        "examples/web",
    )
    pipeline = web.pipeline
    assert [stage.name for stage in pipeline.stages] == ["dev", "test", "staging", "prod"]
    assert {target.name: target.namespace for target in pipeline.targets()} == {
        "dev": "web-dev",
        "test": "web-test",
        "staging": "web-staging",
        "prod-eu": "web-prod-eu",
        "prod-us": "web-prod-us",
    }
    assert {target.name: target.cluster.name for target in pipeline.targets()} == {
        "dev": "local",
        "test": "local",
        "staging": "local",
        "prod-eu": "local",
        "prod-us": "local-2",
    }
    assert config.clusters["local-2"].kubeconfig == REPO_ROOT / ".conveyor" / "kubeconfig-2"
    assert [gate.type for gate in pipeline.stage("test").gates] == ["tests"]
    tests, command = pipeline.stage("staging").gates
    assert isinstance(tests, BundleTestsGate)
    assert isinstance(command, CommandGate) and "CONVEYOR_DIGEST" in command.command[-1]
    prod = pipeline.stage("prod")
    assert (prod.approval.required, prod.approval.timeout) == (True, 3600.0)
    assert (prod.soak, prod.parallelism) == (10.0, 2)
    assert prod.budget is not None and (prod.budget.name, prod.budget.limit) == ("prod", 2)
    assert pipeline.stage("staging").budget is None
    assert [gate.type for gate in prod.gates] == ["tests"]
    assert pipeline.target("dev").parameters["replicas"] == 1
    for name in ("prod-eu", "prod-us"):
        assert pipeline.target(name).parameters["replicas"] == 3
        assert pipeline.target(name).parameters["logLevel"] == "warn"
    assert (
        pipeline.target("prod-eu").parameters["greeting"]
        != (pipeline.target("prod-us").parameters["greeting"])
    )


def test_the_example_parameters_fit_the_example_bundle_and_its_manifests_pass_lint() -> None:
    pipeline = load_config(REPO_ROOT / "config" / "conveyor.yaml").app("web").pipeline
    source = load_source(REPO_ROOT / "examples" / "web")

    for target in pipeline.targets():
        resolve_parameters(source.spec.parameters, target.parameters, target.name)
    assert lint(source, pipeline.environment_names()) == []


# --- every validation error -----------------------------------------------------------------

CONFIG = "config/conveyor.yaml"
PIPELINE = "config/pipelines/web.yaml"


def set_file(relative: str, text: str) -> Edit:
    return lambda tree: tree.files.__setitem__(relative, text)


ERROR_CASES = [
    # malformed YAML, wrong documents
    pytest.param(
        set_file("conveyor.yaml", "apiVersion: x\nkind: [Config\n"),
        f"{CONFIG}:3: invalid YAML",
        id="malformed-config-yaml",
    ),
    pytest.param(
        set_file("pipelines/web.yaml", "apiVersion: x\nname: a\nname: b\n"),
        f"{PIPELINE}:3: invalid YAML: found the key 'name' twice",
        id="duplicate-key-in-pipeline",
    ),
    pytest.param(
        set_file("conveyor.yaml", "- apiVersion\n"),
        f"{CONFIG}: must hold exactly one YAML mapping, a Config",
        id="config-not-a-mapping",
    ),
    pytest.param(
        set_file("conveyor.yaml", ""), f"{CONFIG}: must hold exactly one", id="empty-config"
    ),
    pytest.param(
        lambda tree: tree.config.update(apiVersion="conveyor.dev/v1"),
        f"{CONFIG}: apiVersion: must be 'conveyor.dev/v1alpha1', got 'conveyor.dev/v1'",
        id="wrong-api-version",
    ),
    pytest.param(
        lambda tree: tree.pipeline.update(kind="Config"),
        f"{PIPELINE}: kind: must be 'Pipeline', got 'Config'",
        id="wrong-kind",
    ),
    pytest.param(
        lambda tree: tree.config.pop("kind"),
        f"{CONFIG}: kind: must be 'Config', got null",
        id="missing-kind",
    ),
    # unknown keys, at each level
    pytest.param(
        lambda tree: tree.config.update(registy="x"),
        f"{CONFIG}: registy: unknown key; known: apiVersion, kind, registry, stateRepository, "
        "clusters, apps",
        id="unknown-key-config",
    ),
    pytest.param(
        lambda tree: tree.config["clusters"]["local"].update(kubeconfg="x"),
        f"{CONFIG}: clusters.local.kubeconfg: unknown key; known: kubeconfig, context",
        id="unknown-key-cluster",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"].update(pipelines="x"),
        f"{CONFIG}: apps.web.pipelines: unknown key; known: source, pipeline",
        id="unknown-key-app",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(branch="main"),
        f"{CONFIG}: apps.web.source.branch: unknown key; known: repository, ref, allowedRefs, path,"
        " watch",
        id="unknown-key-source",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(allowedRefs=["release/*"]),
        f"{CONFIG}: apps.web.source.ref: 'main' is not among allowedRefs (release/*)",
        id="default-ref-not-allowed",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(allowedRefs=["main", 3]),
        f"{CONFIG}: apps.web.source.allowedRefs[1]: must be a ref or a glob",
        id="allowed-ref-not-a-string",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(allowedRefs=[]),
        f"{CONFIG}: apps.web.source.allowedRefs: must list at least one ref",
        id="allowed-refs-empty",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(watch={"refs": []}),
        f"{CONFIG}: apps.web.source.watch.refs: must list at least one branch, tag or glob",
        id="watch-refs-empty",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(watch={"refs": ["--all"]}),
        f"{CONFIG}: apps.web.source.watch.refs[0]: must be a branch, tag or glob",
        id="watch-ref-an-option",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(
            watch={"refs": ["main"], "interval": "1s"}
        ),
        f"{CONFIG}: apps.web.source.watch.interval: must be at least 5s, got 1s",
        id="watch-too-often",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(watch={"ref": ["main"]}),
        f"{CONFIG}: apps.web.source.watch.ref: unknown key; known: refs, interval, images",
        id="watch-unknown-key",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(
            watch={"refs": ["main"], "images": [{"repository": "r.example/web", "semver": "new"}]}
        ),
        f"{CONFIG}: apps.web.source.watch.images[0].semver: 'new' is not a version comparison",
        id="watch-image-bad-constraint",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(
            watch={"refs": ["main"], "images": [{"repository": "r.example/web:1", "semver": "^1"}]}
        ),
        f"{CONFIG}: apps.web.source.watch.images[0].repository: 'r.example/web:1' names a tag",
        id="watch-image-with-a-tag",
    ),
    pytest.param(
        lambda tree: tree.pipeline.update(stage=[]),
        f"{PIPELINE}: stage: unknown key; known: apiVersion, kind, name, stages",
        id="unknown-key-pipeline",
    ),
    pytest.param(
        lambda tree: stages(tree)[1].update(gate=[]),
        f"{PIPELINE}: stages[1].gate: unknown key; known: name, targets, gates,",
        id="unknown-key-stage",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].update(namespce="x"),
        f"{PIPELINE}: stages[0].targets[0].namespce: unknown key; known: name, cluster,",
        id="unknown-key-target",
    ),
    pytest.param(
        lambda tree: gate(tree, 0).update(timout="5m"),
        f"{PIPELINE}: stages[1].gates[0].timout: unknown key; known: name, type, timeout",
        id="unknown-key-gate",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).update(command=["x"]),
        f"{PIPELINE}: stages[1].gates[2].command: unknown key; known: name, type, url,",
        id="key-of-another-gate-type",
    ),
    pytest.param(
        lambda tree: stages(tree)[2]["approval"].update(requried=True),
        f"{PIPELINE}: stages[2].approval.requried: unknown key; known: required, timeout",
        id="unknown-key-approval",
    ),
    pytest.param(
        lambda tree: window(tree, 0).update(until="x"),
        f"{PIPELINE}: stages[2].freezeWindows[0].until: unknown key; known: start, end, weekly",
        id="unknown-key-freeze-window",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].update(day="sat"),
        f"{PIPELINE}: stages[2].freezeWindows[1].weekly.day: unknown key; known: days, from, to",
        id="unknown-key-weekly",
    ),
    # missing required keys
    pytest.param(
        lambda tree: tree.config.pop("stateRepository"),
        f"{CONFIG}: stateRepository: is required",
        id="missing-state-repository",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"].pop("pipeline"),
        f"{CONFIG}: apps.web.pipeline: is required",
        id="missing-pipeline",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"].pop("source"),
        f"{CONFIG}: apps.web.source: is required",
        id="missing-source",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].pop("repository"),
        f"{CONFIG}: apps.web.source.repository: is required",
        id="missing-repository",
    ),
    pytest.param(
        lambda tree: tree.config.pop("clusters"),
        f"{CONFIG}: clusters: is required",
        id="missing-clusters",
    ),
    pytest.param(
        lambda tree: tree.pipeline.pop("name"), f"{PIPELINE}: name: is required", id="missing-name"
    ),
    pytest.param(
        lambda tree: stages(tree)[1].pop("targets"),
        f"{PIPELINE}: stages[1].targets: is required",
        id="missing-targets",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].pop("namespace"),
        f"{PIPELINE}: stages[0].targets[0].namespace: is required",
        id="missing-namespace",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].update(cluster=None),
        f"{PIPELINE}: stages[0].targets[0].cluster: is required",
        id="null-is-missing",
    ),
    pytest.param(
        lambda tree: window(tree, 0).pop("reason"),
        f"{PIPELINE}: stages[2].freezeWindows[0].reason: is required",
        id="missing-reason",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].pop("from"),
        f"{PIPELINE}: stages[2].freezeWindows[1].weekly.from: is required",
        id="missing-weekly-from",
    ),
    # wrong types
    pytest.param(
        lambda tree: stages(tree)[0].update(autoPromote="yes please"),
        f"{PIPELINE}: stages[0].autoPromote: must be true or false, got 'yes please'",
        id="bool-wrong-type",
    ),
    pytest.param(
        lambda tree: stages(tree)[2].update(parallelism="2"),
        f"{PIPELINE}: stages[2].parallelism: must be a whole number, got '2'",
        id="int-wrong-type",
    ),
    pytest.param(
        lambda tree: stages(tree)[2].update(parallelism=True),
        f"{PIPELINE}: stages[2].parallelism: must be a whole number, got true",
        id="bool-is-not-int",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].update(namespace=5),
        f"{PIPELINE}: stages[0].targets[0].namespace: must be a string, got 5",
        id="string-wrong-type",
    ),
    pytest.param(
        lambda tree: tree.pipeline.update(stages={"dev": {}}),
        f"{PIPELINE}: stages: must be a list, got",
        id="list-wrong-type",
    ),
    pytest.param(
        lambda tree: tree.pipeline["stages"].append("qa"),
        f"{PIPELINE}: stages[3]: must be a mapping, got 'qa'",
        id="stage-not-a-mapping",
    ),
    pytest.param(
        lambda tree: tree.config.update(clusters=["local"]),
        f"{CONFIG}: clusters: must be a mapping of cluster name: settings",
        id="clusters-a-list",
    ),
    pytest.param(
        lambda tree: tree.config["clusters"].update(local="kube/config"),
        f"{CONFIG}: clusters.local: must be a mapping, got 'kube/config'",
        id="cluster-not-a-mapping",
    ),
    pytest.param(
        lambda tree: gate(tree, 1)["env"].update(MODE=1),
        f"{PIPELINE}: stages[1].gates[1].env.MODE: must be a string, got 1",
        id="env-value-not-a-string",
    ),
    pytest.param(
        lambda tree: gate(tree, 1).update(env=["MODE=x"]),
        f"{PIPELINE}: stages[1].gates[1].env: must be a mapping, got",
        id="env-not-a-mapping",
    ),
    pytest.param(
        lambda tree: gate(tree, 1)["env"].update({"1MODE": "x"}),
        f"{PIPELINE}: stages[1].gates[1].env.1MODE: not an environment variable name",
        id="env-bad-name",
    ),
    pytest.param(
        lambda tree: gate(tree, 1).update(command=["sleep", 5]),
        f"{PIPELINE}: stages[1].gates[1].command[1]: must be a non-empty string, got 5",
        id="command-item-not-a-string",
    ),
    pytest.param(
        lambda tree: gate(tree, 3).update(parameters=[1]),
        f"{PIPELINE}: stages[1].gates[3].parameters: must be a mapping",
        id="deployment-parameters-not-a-mapping",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].update({"from": 1320}),
        f'{PIPELINE}: stages[2].freezeWindows[1].weekly.from: must be a "HH:MM" time of day '
        "(UTC, 24-hour), got 1320",
        id="unquoted-clock-time",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].update(to="24:00"),
        f'{PIPELINE}: stages[2].freezeWindows[1].weekly.to: must be a "HH:MM"',
        id="clock-time-out-of-range",
    ),
    # durations
    pytest.param(
        lambda tree: stages(tree)[2].update(soak="10 minutes"),
        f'{PIPELINE}: stages[2].soak: must be a duration: "90s", "5m", "1h", "1h30m" or a '
        "whole number of seconds; got '10 minutes'",
        id="duration-words",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).update(interval="1.5s"),
        f"{PIPELINE}: stages[1].gates[2].interval: must be a duration",
        id="duration-fraction",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).update(interval="5m1h"),
        f"{PIPELINE}: stages[1].gates[2].interval: must be a duration",
        id="duration-units-out-of-order",
    ),
    pytest.param(
        lambda tree: stages(tree)[2]["approval"].update(timeout=-5),
        f"{PIPELINE}: stages[2].approval.timeout: must be a duration",
        id="duration-negative",
    ),
    pytest.param(
        lambda tree: gate(tree, 0).update(timeout=1.5),
        f"{PIPELINE}: stages[1].gates[0].timeout: must be a duration",
        id="duration-float",
    ),
    pytest.param(
        lambda tree: gate(tree, 0).update(timeout="0s"),
        f"{PIPELINE}: stages[1].gates[0].timeout: must be longer than 0s",
        id="timeout-zero",
    ),
    pytest.param(
        lambda tree: stages(tree)[2].update(soak=""),
        f"{PIPELINE}: stages[2].soak: must be a duration",
        id="duration-empty",
    ),
    # clusters, names, duplicates, emptiness
    pytest.param(
        lambda tree: stages(tree)[2]["targets"][0].update(cluster="eu-1"),
        f"{PIPELINE}: stages[2].targets[0].cluster: unknown cluster 'eu-1'; known: local",
        id="unknown-cluster",
    ),
    pytest.param(
        lambda tree: stages(tree)[2]["targets"][1].update(name="dev"),
        f"{PIPELINE}: stages[2].targets[1].name: the target name 'dev' is already used at "
        "stages[0].targets[0].name; target names are unique across the pipeline",
        id="duplicate-target-name",
    ),
    pytest.param(
        lambda tree: stages(tree)[2].update(name="dev"),
        f"{PIPELINE}: stages[2].name: the stage name 'dev' is already used at stages[0].name",
        id="duplicate-stage-name",
    ),
    pytest.param(
        lambda tree: gate(tree, 4).update(name="tests"),
        f"{PIPELINE}: stages[1].gates[4].name: the gate name 'tests' is already used at "
        "stages[1].gates[0].name; gate names are unique in a stage",
        id="duplicate-gate-name",
    ),
    pytest.param(
        lambda tree: stages(tree)[2]["targets"][1].update(namespace="web-prod-eu"),
        f"{PIPELINE}: stages[2].targets[1].namespace: stages[2].targets[0] already deploys to "
        "namespace 'web-prod-eu' of cluster 'local'",
        id="shared-namespace",
    ),
    pytest.param(
        lambda tree: tree.pipeline.update(stages=[]),
        f"{PIPELINE}: stages: must list at least one",
        id="empty-stages",
    ),
    pytest.param(
        lambda tree: stages(tree)[0].update(targets=[]),
        f"{PIPELINE}: stages[0].targets: must list at least one",
        id="empty-targets",
    ),
    pytest.param(
        lambda tree: tree.config.update(clusters={}),
        f"{CONFIG}: clusters: must name at least one cluster",
        id="empty-clusters",
    ),
    pytest.param(
        lambda tree: tree.config.update(apps={}),
        f"{CONFIG}: apps: must name at least one app",
        id="empty-apps",
    ),
    pytest.param(
        lambda tree: gate(tree, 1).update(command=[]),
        f"{PIPELINE}: stages[1].gates[1].command: must list at least one",
        id="empty-command",
    ),
    pytest.param(
        lambda tree: stages(tree)[2]["targets"][0].update(name="Prod_EU"),
        f"{PIPELINE}: stages[2].targets[0].name: must be a DNS-1123 label",
        id="bad-target-name",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].update(namespace="web.dev"),
        f"{PIPELINE}: stages[0].targets[0].namespace: must be a DNS-1123 label",
        id="bad-namespace",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].update(namespace="x" * 64),
        f"{PIPELINE}: stages[0].targets[0].namespace: must be a DNS-1123 label",
        id="namespace-too-long",
    ),
    pytest.param(
        lambda tree: stages(tree)[0].update(name="-dev"),
        f"{PIPELINE}: stages[0].name: must be a DNS-1123 label",
        id="bad-stage-name",
    ),
    pytest.param(
        lambda tree: tree.pipeline.update(name="Web"),
        f"{PIPELINE}: name: must be a DNS-1123 label",
        id="bad-pipeline-name",
    ),
    pytest.param(
        lambda tree: gate(tree, 1).update(name="digest check"),
        f"{PIPELINE}: stages[1].gates[1].name: must be a DNS-1123 label",
        id="bad-gate-name",
    ),
    pytest.param(
        lambda tree: tree.config.update(clusters={"Local": {}}),
        f"{CONFIG}: clusters.Local: the cluster name must be a DNS-1123 label",
        id="bad-cluster-name",
    ),
    pytest.param(
        lambda tree: tree.config["apps"].update(my_app=copy.deepcopy(tree.config["apps"]["web"])),
        f"{CONFIG}: apps.my_app: the app name must be a DNS-1123 label",
        id="bad-app-name",
    ),
    # files a config names
    pytest.param(
        lambda tree: tree.config["apps"]["web"].update(pipeline="pipelines/api.yaml"),
        f"{CONFIG}: apps.web.pipeline: config/pipelines/api.yaml does not exist",
        id="pipeline-file-missing",
    ),
    pytest.param(
        lambda tree: stages(tree)[0]["targets"][0].update(parameters="environments/nope.yaml"),
        f"{PIPELINE}: stages[0].targets[0].parameters: config/environments/nope.yaml does not "
        "exist",
        id="parameters-file-missing",
    ),
    pytest.param(
        lambda tree: tree.files.pop("environments/prod-us.yaml"),
        f"{PIPELINE}: stages[2].targets[1].parameters: config/environments/prod-us.yaml does not "
        "exist",
        id="default-parameters-file-missing",
    ),
    pytest.param(
        set_file("environments/dev.yaml", "- replicas\n- 1\n"),
        f"{PIPELINE}: stages[0].targets[0].parameters: config/environments/dev.yaml: a parameter "
        "file holds one mapping",
        id="parameters-not-a-mapping",
    ),
    pytest.param(
        set_file("environments/dev.yaml", "replicas: [1\n"),
        f"{PIPELINE}: stages[0].targets[0].parameters: config/environments/dev.yaml:2: invalid "
        "YAML",
        id="parameters-malformed",
    ),
    pytest.param(
        lambda tree: tree.config["apps"]["web"]["source"].update(path="../elsewhere"),
        f"{CONFIG}: apps.web.source.path: the path '../elsewhere' has a '..' component",
        id="source-path-escapes",
    ),
    pytest.param(
        lambda tree: tree.config.update(registry="http://localhost:5000"),
        f"{CONFIG}: registry: must be host[:port], optionally followed by /prefix, got "
        "'http://localhost:5000'",
        id="registry-with-scheme",
    ),
    # gates
    pytest.param(
        lambda tree: gate(tree, 0).update(type="smoke"),
        f"{PIPELINE}: stages[1].gates[0].type: must be one of tests, command, http, deployment, "
        "got 'smoke'",
        id="unknown-gate-type",
    ),
    pytest.param(
        lambda tree: gate(tree, 0).pop("type"),
        f"{PIPELINE}: stages[1].gates[0].type: must be one of tests, command, http, deployment, "
        "got null",
        id="gate-without-type",
    ),
    pytest.param(
        lambda tree: stages(tree)[1]["gates"].append("tests"),
        f"{PIPELINE}: stages[1].gates[5]: must be a mapping with a type, got 'tests'",
        id="gate-not-a-mapping",
    ),
    pytest.param(
        lambda tree: gate(tree, 1).pop("command"),
        f"{PIPELINE}: stages[1].gates[1].command: is required",
        id="command-gate-without-command",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).pop("url"),
        f"{PIPELINE}: stages[1].gates[2].url: is required",
        id="http-gate-without-url",
    ),
    pytest.param(
        lambda tree: gate(tree, 3).pop("deployment"),
        f"{PIPELINE}: stages[1].gates[3].deployment: is required",
        id="deployment-gate-without-deployment",
    ),
    pytest.param(
        lambda tree: gate(tree, 3).update(deployment="nightly"),
        f'{PIPELINE}: stages[1].gates[3].deployment: must be "flow-name/deployment-name", got '
        "'nightly'",
        id="deployment-without-flow",
    ),
    pytest.param(
        lambda tree: gate(tree, 3).update(deployment="a/b/c"),
        f'{PIPELINE}: stages[1].gates[3].deployment: must be "flow-name/deployment-name"',
        id="deployment-too-many-parts",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).update(url="ftp://web.example/"),
        f"{PIPELINE}: stages[1].gates[2].url: must be an http:// or https:// URL with a host",
        id="http-gate-bad-url",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).update(expectStatus=42),
        f"{PIPELINE}: stages[1].gates[2].expectStatus: must be between 100 and 599, got 42",
        id="http-gate-bad-status",
    ),
    pytest.param(
        lambda tree: gate(tree, 2).update(retries=-1),
        f"{PIPELINE}: stages[1].gates[2].retries: must be >= 0, got -1",
        id="http-gate-negative-retries",
    ),
    # freeze windows
    pytest.param(
        lambda tree: window(tree, 0).update(end="2025-12-19T00:00:00Z"),
        f"{PIPELINE}: stages[2].freezeWindows[0].end: must be after start (2025-12-20T00:00:00Z)",
        id="freeze-end-before-start",
    ),
    pytest.param(
        lambda tree: window(tree, 0).update(end="2025-12-20T01:00:00+01:00"),
        f"{PIPELINE}: stages[2].freezeWindows[0].end: must be after start",
        id="freeze-end-equals-start",
    ),
    pytest.param(
        lambda tree: window(tree, 0).update(start="2025-12-20T00:00:00"),
        f"{PIPELINE}: stages[2].freezeWindows[0].start: must be an RFC 3339 time with an offset",
        id="freeze-start-without-offset",
    ),
    pytest.param(
        lambda tree: window(tree, 0).update(start="next friday"),
        f"{PIPELINE}: stages[2].freezeWindows[0].start: must be an RFC 3339 time",
        id="freeze-start-not-a-time",
    ),
    pytest.param(
        lambda tree: window(tree, 0).pop("end"),
        f"{PIPELINE}: stages[2].freezeWindows[0].end: is required",
        id="freeze-start-without-end",
    ),
    pytest.param(
        lambda tree: window(tree, 1).pop("weekly"),
        f"{PIPELINE}: stages[2].freezeWindows[1]: gives neither start and end nor weekly",
        id="freeze-without-period-or-schedule",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].update(days=["sat", "saturday"]),
        f"{PIPELINE}: stages[2].freezeWindows[1].weekly.days[1]: must be one of mon, tue, wed, "
        "thu, fri, sat, sun, got 'saturday'",
        id="bad-weekday",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].update(days=["sat", "sat"]),
        f"{PIPELINE}: stages[2].freezeWindows[1].weekly.days[1]: 'sat' is listed twice",
        id="weekday-twice",
    ),
    pytest.param(
        lambda tree: window(tree, 1)["weekly"].update(days=[]),
        f"{PIPELINE}: stages[2].freezeWindows[1].weekly.days: must list at least one",
        id="no-weekdays",
    ),
    # parallelism
    pytest.param(
        lambda tree: stages(tree)[2].update(parallelism=0),
        f"{PIPELINE}: stages[2].parallelism: must be >= 1, got 0",
        id="parallelism-zero",
    ),
    # budget
    pytest.param(
        lambda tree: stages(tree)[2].update(budget={"name": "prod", "limit": 0}),
        f"{PIPELINE}: stages[2].budget.limit: must be >= 1, got 0",
        id="budget-limit-zero",
    ),
    pytest.param(
        lambda tree: stages(tree)[2].update(budget={"name": "prod", "slots": 2}),
        f"{PIPELINE}: stages[2].budget.slots: unknown key",
        id="budget-unknown-key",
    ),
]


@pytest.mark.parametrize(("edit", "fragment"), ERROR_CASES)
def test_an_invalid_configuration_names_the_file_and_key(
    isolated: Path, edit: Edit, fragment: str
) -> None:
    tree = Tree()
    edit(tree)

    with pytest.raises(ConfigError) as error:
        load(tree, isolated)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("allowed", "ref", "allows"),
    [
        ([], "anything", True),
        (["main"], "main", True),
        (["main"], "main2", False),
        (["main", "release/*"], "release/1.2", True),
        (["release/*"], "release", False),
        (["v*"], "v1.0.0", True),
        (["v*"], "refs/tags/v1", False),
    ],
)
def test_allowed_refs_are_exact_names_or_globs(
    isolated: Path, allowed: list[str], ref: str, allows: bool
) -> None:
    tree = Tree()
    source = tree.config["apps"]["web"]["source"]
    source["ref"] = allowed[0] if allowed else "main"
    if allowed:
        source["allowedRefs"] = allowed
    web = load(tree, isolated).app("web")
    assert web.source.allows(ref) is allows
    if allows:
        web.source.check_ref(ref)
    else:
        with pytest.raises(PromotionRefused, match=f"{ref!r} may not be released"):
            web.source.check_ref(ref)


@pytest.mark.parametrize(
    ("refs", "ref", "watched"),
    [(["main"], "main", True), (["main"], "main2", False), (["v*", "main"], "v2.1", True)],
)
def test_a_watch_names_branches_and_tags_exactly_or_by_glob(
    isolated: Path, refs: list[str], ref: str, watched: bool
) -> None:
    tree = Tree()
    tree.config["apps"]["web"]["source"]["watch"] = {"refs": refs}
    watch = load(tree, isolated).app("web").source.watch
    assert watch is not None and watch.interval == 60
    assert watch.matches(ref) is watched


@pytest.mark.parametrize(
    ("images", "refused"),
    [
        ({}, None),
        ({"registry.example/web": "1.4.2"}, None),
        ({"registry.example/web": "2.0.0"}, "registry.example/web:2.0.0 may not be released"),
        ({"registry.example/web": "latest"}, "allows '>=1.2 <2' for registry.example/web"),
        ({"registry.example/cache": "7"}, "may not choose the tag of registry.example/cache"),
    ],
)
def test_a_release_chooses_image_tags_only_within_the_watched_constraints(
    isolated: Path, images: dict[str, str], refused: str | None
) -> None:
    tree = Tree()
    tree.config["apps"]["web"]["source"]["watch"] = {
        "refs": ["main"],
        "images": [{"repository": "registry.example/web", "semver": ">=1.2 <2"}],
    }
    source = load(tree, isolated).app("web").source
    if refused is None:
        source.check_image_tags(images)
    else:
        with pytest.raises(PromotionRefused, match=re.escape(refused)):
            source.check_image_tags(images)


def test_an_app_watching_no_image_may_choose_any_tag_its_manifests_run(isolated: Path) -> None:
    load(Tree(), isolated).app("web").source.check_image_tags({"registry.example/web": "latest"})


def test_a_missing_config_file_says_how_to_point_at_one() -> None:
    with pytest.raises(ConfigError) as error:
        load_config()
    assert "config/conveyor.yaml: no such file" in str(error.value)
    assert "$CONVEYOR_CONFIG" in str(error.value)


# --- values and the environment -------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h5s", 7205.0),
        ("0s", 0.0),
        (45, 45.0),
        (0, 0.0),
    ],
)
def test_durations_are_read_as_seconds(isolated: Path, written: object, seconds: float) -> None:
    tree = Tree()
    stages(tree)[2]["soak"] = written

    assert load(tree, isolated).app("web").pipeline.stage("prod").soak == seconds


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("https://git.example.com/team/web.git", "https://git.example.com/team/web.git"),
        ("ssh://git@git.example.com/web.git", "ssh://git@git.example.com/web.git"),
        ("git@git.example.com:team/web.git", "git@git.example.com:team/web.git"),
        ("file:///srv/git/web.git", "file:///srv/git/web.git"),
        ("/srv/git/web.git", "/srv/git/web.git"),
        ("../state.git", "{root}/state.git"),
        ("repos/./web", "{root}/config/repos/web"),
    ],
)
def test_repositories_keep_urls_and_make_local_paths_absolute(
    isolated: Path, written: str, kept: str
) -> None:
    tree = Tree()
    tree.config["stateRepository"] = written
    tree.config["apps"]["web"]["source"]["repository"] = written

    config = load(tree, isolated)
    expected = kept.format(root=isolated)
    assert config.state_repository == expected
    assert config.app("web").source.repository == expected


@pytest.mark.parametrize(
    ("registry", "override", "location"),
    [
        ("", None, "oci:{state}/bundles/web"),
        ("", "", "oci:{state}/bundles/web"),
        ("registry.example.com/team", None, "registry.example.com/team/conveyor/web"),
        ("registry.example.com", "127.0.0.1:5000", "127.0.0.1:5000/conveyor/web"),
        ("", "[::1]:5000", "[::1]:5000/conveyor/web"),
    ],
)
def test_store_location_uses_the_registry_or_the_layout_folder(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry: str,
    override: str | None,
    location: str,
) -> None:
    if override is not None:
        monkeypatch.setenv("CONVEYOR_REGISTRY", override)
    tree = Tree()
    tree.config["registry"] = registry

    config = load(tree, isolated)
    state = isolated / "state"
    assert config.store_location("web", state) == location.format(state=state)


def test_the_layout_folder_defaults_to_the_state_folder(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_STATE", str(isolated / "elsewhere"))

    assert load(Tree(), isolated).store_location("web") == f"oci:{isolated}/elsewhere/bundles/web"


@pytest.mark.parametrize("registry", ["", "127.0.0.1:5000", "[::1]:5000"])
def test_the_bundle_and_cluster_commands_default_to_the_store_the_pipeline_uses(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, registry: str
) -> None:
    """`conveyor bundle build --app web` without --store writes where the pipeline reads."""
    monkeypatch.delenv("CONVEYOR_STORE", raising=False)
    monkeypatch.setenv("CONVEYOR_STATE", str(isolated / "state"))
    monkeypatch.setenv("CONVEYOR_REGISTRY", registry)
    pipeline_store = artifact.open_store(load(Tree(), isolated).store_location("web"))

    assert str(bundle_commands.open_store(None, "web")) == str(pipeline_store)


def test_a_bad_registry_override_names_the_variable(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_REGISTRY", "https://127.0.0.1:5000")

    with pytest.raises(ConfigError) as error:
        load(Tree(), isolated)
    assert "$CONVEYOR_REGISTRY: must be host[:port]" in str(error.value)


def test_conveyor_kubeconfig_fills_in_only_clusters_without_a_kubeconfig(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = Tree()
    tree.config["clusters"]["other"] = {"kubeconfig": None}
    tree.config["clusters"]["third"] = {}
    tree.write(isolated)

    assert load_config(isolated / "config" / "conveyor.yaml").clusters["other"].kubeconfig is None
    monkeypatch.setenv("CONVEYOR_KUBECONFIG", "shared/kubeconfig")
    clusters = load_config(isolated / "config" / "conveyor.yaml").clusters
    assert clusters["local"].kubeconfig == isolated / "config" / "kube" / "config"
    assert clusters["other"].kubeconfig == isolated / "shared" / "kubeconfig"
    assert clusters["third"].kubeconfig == isolated / "shared" / "kubeconfig"
    assert clusters["third"].context is None


def test_load_config_reads_conveyor_config_then_the_working_directory(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Tree().write(isolated)
    assert load_config().path == isolated / "config" / "conveyor.yaml"

    moved = isolated / "config" / "conveyor.yaml"
    moved.rename(isolated / "config" / "other.yaml")
    monkeypatch.setenv("CONVEYOR_CONFIG", "config/other.yaml")
    assert load_config().path == isolated / "config" / "other.yaml"


def test_apps_sharing_a_pipeline_file_share_one_pipeline(isolated: Path) -> None:
    tree = Tree()
    tree.config["apps"]["api"] = copy.deepcopy(tree.config["apps"]["web"])

    config = load(tree, isolated)
    assert config.app("api").pipeline is config.app("web").pipeline


# --- freeze windows -------------------------------------------------------------------------

DECEMBER = FreezeWindow(
    "year end",
    start=datetime(2025, 12, 20, tzinfo=UTC),
    end=datetime(2026, 1, 5, tzinfo=UTC),
    weekly=None,
)
WEEKEND = FreezeWindow("weekend", None, None, Weekly(frozenset({5, 6}), time(0), time(0)))
FRIDAY_NIGHT = FreezeWindow("night", None, None, Weekly(frozenset({4}), time(22), time(6)))
SUNDAY_NIGHT = FreezeWindow("night", None, None, Weekly(frozenset({6}), time(22), time(2)))
OFFICE_WEEKLY = Weekly(frozenset({0, 1, 2, 3, 4}), time(9), time(17, 30))
OFFICE_HOURS = FreezeWindow("office", None, None, OFFICE_WEEKLY)
DECEMBER_SATURDAYS = FreezeWindow(
    "december saturdays",
    start=datetime(2025, 12, 1, tzinfo=UTC),
    end=datetime(2026, 1, 1, tzinfo=UTC),
    weekly=Weekly(frozenset({5}), time(0), time(0)),
)
PLUS_TWO = timezone(timedelta(hours=2))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("freeze", "at", "active"),
    [
        pytest.param(DECEMBER, utc(2025, 12, 19, 23, 59, 59), False, id="before-start"),
        pytest.param(DECEMBER, utc(2025, 12, 20), True, id="at-start"),
        pytest.param(DECEMBER, utc(2025, 12, 25, 12), True, id="inside"),
        pytest.param(DECEMBER, utc(2026, 1, 4, 23, 59, 59), True, id="just-before-end"),
        pytest.param(DECEMBER, utc(2026, 1, 5), False, id="at-end"),
        pytest.param(DECEMBER, utc(2026, 2, 1), False, id="after-end"),
        pytest.param(
            DECEMBER, datetime(2025, 12, 20, 1, tzinfo=PLUS_TWO), False, id="offset-before"
        ),
        pytest.param(DECEMBER, datetime(2025, 12, 20, 2, tzinfo=PLUS_TWO), True, id="offset-in"),
        pytest.param(WEEKEND, utc(2026, 3, 6, 23, 59, 59), False, id="weekend-friday-night"),
        pytest.param(WEEKEND, utc(2026, 3, 7), True, id="weekend-saturday-midnight"),
        pytest.param(WEEKEND, utc(2026, 3, 8, 23, 59, 59), True, id="weekend-sunday-late"),
        pytest.param(WEEKEND, utc(2026, 3, 9), False, id="weekend-monday-midnight"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 6, 21, 59), False, id="night-before"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 6, 22), True, id="night-opens"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 7, 0), True, id="night-across-midnight"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 7, 5, 59, 59), True, id="night-before-close"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 7, 6), False, id="night-closes"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 7, 22, 30), False, id="night-not-saturday"),
        pytest.param(FRIDAY_NIGHT, utc(2026, 3, 6, 3), False, id="night-not-thursday-night"),
        pytest.param(SUNDAY_NIGHT, utc(2026, 3, 9, 1), True, id="across-the-week-boundary"),
        pytest.param(SUNDAY_NIGHT, utc(2026, 3, 9, 2), False, id="across-the-week-closes"),
        pytest.param(OFFICE_HOURS, utc(2026, 3, 11, 12), True, id="office-wednesday-noon"),
        pytest.param(OFFICE_HOURS, utc(2026, 3, 11, 17, 29), True, id="office-before-close"),
        pytest.param(OFFICE_HOURS, utc(2026, 3, 11, 17, 30), False, id="office-closes"),
        pytest.param(OFFICE_HOURS, utc(2026, 3, 14, 12), False, id="office-saturday"),
        pytest.param(
            OFFICE_HOURS, datetime(2026, 3, 11, 10, 30, tzinfo=PLUS_TWO), False, id="office-utc"
        ),
        pytest.param(
            OFFICE_HOURS, datetime(2026, 3, 11, 11, tzinfo=PLUS_TWO), True, id="office-utc-opens"
        ),
        pytest.param(DECEMBER_SATURDAYS, utc(2025, 12, 13, 12), True, id="both-match"),
        pytest.param(DECEMBER_SATURDAYS, utc(2025, 11, 29, 12), False, id="both-wrong-month"),
        pytest.param(DECEMBER_SATURDAYS, utc(2025, 12, 12, 12), False, id="both-wrong-day"),
    ],
)
def test_freeze_window_active(freeze: FreezeWindow, at: datetime, active: bool) -> None:
    assert freeze.active(at) is active


def test_freeze_window_refuses_a_time_without_a_timezone() -> None:
    for active in (WEEKEND.active, DECEMBER.active, OFFICE_WEEKLY.active):
        with pytest.raises(ValueError, match="timezone-aware"):
            active(datetime(2026, 3, 7, 12))


# --- where a target may write (namespaces, clusterScoped) -----------------------------------


def test_a_target_lists_other_namespaces_and_cluster_scoped_kinds(isolated: Path) -> None:
    tree = Tree()
    stages(tree)[0]["targets"][0].update(
        namespaces=["web-shared", "monitoring"],
        clusterScoped=[
            "ClusterRoleBinding",
            "ValidatingWebhookConfiguration.admissionregistration.k8s.io",
        ],
    )

    pipeline = load(tree, isolated).app("web").pipeline
    dev, prod = pipeline.target("dev"), pipeline.target("prod-eu")

    assert dev.namespaces == ("web-shared", "monitoring")
    assert dev.cluster_scoped == (
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io",
    )
    assert (prod.namespaces, prod.cluster_scoped) == ((), ()), "by default: none beyond its own"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"namespaces": "web-shared"}, "stages[0].targets[0].namespaces: must be a list"),
        ({"namespaces": ["Web"]}, "stages[0].targets[0].namespaces[0]: must be a DNS-1123"),
        ({"namespaces": [3]}, "stages[0].targets[0].namespaces[0]: must be a namespace name"),
        ({"namespaces": ["web-dev"]}, "namespaces[0]: 'web-dev' is already the target's"),
        ({"namespaces": ["a", "a"]}, "namespaces[1]: 'a' is already the target's namespace or"),
        ({"clusterScoped": ["clusterrolebinding"]}, "clusterScoped[0]: must be a kind"),
        ({"clusterScoped": ["ClusterRoleBinding.Rbac"]}, "clusterScoped[0]: must be a kind"),
        ({"clusterScoped": ["PriorityClass", "PriorityClass"]}, "clusterScoped[1]: 'Priority"),
        ({"clusterscoped": ["PriorityClass"]}, "stages[0].targets[0].clusterscoped: unknown key"),
    ],
    ids=[
        "ns-not-list",
        "ns-not-label",
        "ns-not-text",
        "ns-own",
        "ns-twice",
        "kind-lower",
        "kind-bad-group",
        "kind-twice",
        "key-typo",
    ],
)
def test_bad_target_confinement_settings_name_the_key(
    isolated: Path, settings: dict[str, Any], fragment: str
) -> None:
    tree = Tree()
    stages(tree)[0]["targets"][0].update(settings)

    with pytest.raises(ConfigError) as error:
        load(tree, isolated)
    assert f"{PIPELINE}: stages[0].targets[0]." in str(error.value)
    assert fragment in str(error.value)


def test_a_stage_may_require_signed_approvals(isolated: Path) -> None:
    tree = Tree()
    tree.files["signers/prod"] = "alice@example.com ssh-ed25519 AAAA\n"
    stages(tree)[2]["approval"] = {
        "required": True,
        "signatures": {"required": 2, "allowedSigners": "signers/prod", "forbidPromoter": True},
    }

    config = load(tree, isolated)
    rule = config.app("web").pipeline.stage("prod").approval.signatures
    assert rule is not None
    assert (rule.required, rule.forbid_promoter) == (2, True)
    assert rule.allowed_signers == isolated / "config" / "signers" / "prod"
    assert config.app("web").pipeline.stage("dev").approval.signatures is None

    before = config_digest(config)
    (isolated / "config" / "signers" / "prod").write_text("mallory@example.com ssh-ed25519 B\n")
    assert config_digest(load_config(isolated / "config" / "conveyor.yaml")) != before, (
        "who may sign is part of the configuration's digest"
    )


@pytest.mark.parametrize(
    ("approval", "fragment"),
    [
        (
            {"required": False, "signatures": {"allowedSigners": "signers/prod"}},
            "approval.required: signatures are configured but the approval is not required",
        ),
        (
            {"required": True, "signatures": {"allowedSigners": "signers/none"}},
            "approval.signatures.allowedSigners: config/signers/none does not exist",
        ),
        (
            {"required": True, "signatures": {"required": 0, "allowedSigners": "signers/prod"}},
            "approval.signatures.required: must be >= 1, got 0",
        ),
        (
            {"required": True, "signatures": {"allowedsigners": "signers/prod"}},
            "approval.signatures.allowedsigners: unknown key",
        ),
    ],
    ids=["not-required", "no-file", "zero", "typo"],
)
def test_bad_signature_settings_name_the_key(
    isolated: Path, approval: dict[str, Any], fragment: str
) -> None:
    tree = Tree()
    tree.files["signers/prod"] = "alice@example.com ssh-ed25519 AAAA\n"
    stages(tree)[2]["approval"] = approval

    with pytest.raises(ConfigError) as error:
        load(tree, isolated)
    assert f"{PIPELINE}: stages[2]." in str(error.value)
    assert fragment in str(error.value)
