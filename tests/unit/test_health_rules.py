"""Health rules in a pipeline: compiled at load, and a target's rule wins over its stage's.

The verdicts rules give are pinned in tests/fixtures/health/rules.yaml (test_health.py); here,
how the configuration reader turns `healthChecks` into each target's rules, and how it refuses
a rule it cannot use, naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.cluster.health_rules import HealthRule, HealthRules, InvalidExpression
from conveyor.config.reader import load_config
from conveyor.errors import ConfigError

API = "conveyor.dev/v1alpha1"
PIPELINE = "config/pipelines/web.yaml"
INDEX = {"apiVersion": "search.example.com/v1", "kind": "Index"}


def _write(root: Path, stage_checks: list[Any], target_checks: list[Any]) -> Path:
    config = {
        "apiVersion": API,
        "kind": "Config",
        "stateRepository": "../state.git",
        "clusters": {"local": {}},
        "apps": {"web": {"source": {"repository": ".."}, "pipeline": "pipelines/web.yaml"}},
    }
    dev = {"name": "dev", "cluster": "local", "namespace": "web-dev"}
    own = {"name": "own", "cluster": "local", "namespace": "web-own"}
    if target_checks:
        own["healthChecks"] = target_checks
    pipeline = {
        "apiVersion": API,
        "kind": "Pipeline",
        "name": "web",
        "stages": [
            {"name": "first", "targets": [{**dev, "name": "other", "namespace": "web-o"}]},
            {"name": "dev", "targets": [dev, own], "healthChecks": stage_checks},
        ],
    }
    files = {
        "conveyor.yaml": yaml.safe_dump(config),
        "pipelines/web.yaml": yaml.safe_dump(pipeline, sort_keys=False),
        "environments/dev.yaml": "",
        "environments/own.yaml": "",
        "environments/other.yaml": "",
    }
    for relative, text in files.items():
        path = root / "config" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "config" / "conveyor.yaml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONVEYOR_CONFIG", "CONVEYOR_REGISTRY", "CONVEYOR_KUBECONFIG", "CONVEYOR_STATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_targets_rule_wins_over_its_stages_for_the_same_group_and_kind(isolated: Path) -> None:
    bucket = {"apiVersion": "storage.example.com/v1", "kind": "Bucket", "current": "status.ok"}
    stage = [{**INDEX, "current": "status.ready", "failed": "status.broken"}, bucket]
    target = [{**INDEX, "apiVersion": "search.example.com/v2", "current": "status.green"}]

    pipeline = load_config(_write(isolated, stage, target)).apps["web"].pipeline

    stage_rule = HealthRule("search.example.com/v1", "Index", "status.ready", None, "status.broken")
    bucket_rule = HealthRule("storage.example.com/v1", "Bucket", "status.ok")
    assert pipeline.target("dev").health_checks == HealthRules((stage_rule, bucket_rule))
    own = pipeline.target("own").health_checks
    assert own == HealthRules(
        (bucket_rule, HealthRule("search.example.com/v2", "Index", "status.green"))
    )
    assert pipeline.target("other").health_checks == HealthRules()


BAD = [
    pytest.param(
        [{**INDEX, "current": "status.readyShards =="}],
        [],
        f"{PIPELINE}: stages[1].healthChecks[0].current: not a valid CEL expression: "
        "Failed to parse expression",
        id="current-does-not-compile",
    ),
    pytest.param(
        [],
        [{**INDEX, "current": "true", "inProgress": "status.?phase.orValue('x') == 'x'"}],
        f"{PIPELINE}: stages[1].targets[1].healthChecks[0].inProgress: not a valid CEL expression",
        id="optional-syntax-in-a-target",
    ),
    pytest.param(
        [{**INDEX, "current": "  "}],
        [],
        f"{PIPELINE}: stages[1].healthChecks[0].current: not a valid CEL expression: must not be "
        "empty",
        id="blank-current",
    ),
    pytest.param(
        [{**INDEX, "failed": "status.broken"}],
        [],
        f"{PIPELINE}: stages[1].healthChecks[0].current: is required",
        id="current-missing",
    ),
    pytest.param(
        [{**INDEX, "apiVersion": "search.example.com", "current": "true"}],
        [],
        f"{PIPELINE}: stages[1].healthChecks[0].apiVersion: must be group/version, or a core "
        "version such as v1; got 'search.example.com'",
        id="api-version-without-version",
    ),
    pytest.param(
        [{**INDEX, "current": "true", "ready": "true"}],
        [],
        f"{PIPELINE}: stages[1].healthChecks[0].ready: unknown key; known: apiVersion, kind, "
        "current, inProgress, failed",
        id="unknown-key",
    ),
    pytest.param(
        [
            {**INDEX, "current": "true"},
            {**INDEX, "apiVersion": "search.example.com/v2", "current": "false"},
        ],
        [],
        f"{PIPELINE}: stages[1].healthChecks[1]: stages[1].healthChecks[0] already gives a rule "
        "for Index of search.example.com/v2",
        id="two-rules-for-one-kind",
    ),
]


@pytest.mark.parametrize(("stage", "target", "fragment"), BAD)
def test_a_rule_that_cannot_be_used_is_a_config_error_at_load(
    isolated: Path, stage: list[Any], target: list[Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write(isolated, stage, target))
    assert fragment in str(error.value)


def test_a_rule_refuses_an_expression_that_does_not_compile() -> None:
    with pytest.raises(InvalidExpression) as error:
        HealthRule("example.com/v1", "Widget", "status.ok", failed="status.(")
    assert error.value.key == "failed"


def test_two_rules_for_one_group_and_kind_are_refused() -> None:
    first = HealthRule("example.com/v1", "Widget", "status.ok")
    with pytest.raises(ValueError, match=r"more than one health rule for example\.com/Widget"):
        HealthRules((first, HealthRule("example.com/v2", "Widget", "true")))
