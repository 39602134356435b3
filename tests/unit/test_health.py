"""Readiness rules, table-driven: one fixture case per rule, the two profiles side by side.

Cases live in tests/fixtures/health: status_*.yaml for `health.status`, rules.yaml for
`health.status` with per-kind health rules (CEL), deployment_pods.yaml for
`health.deployment_failure_from_pods`. A case's `expect` is one verdict for both profiles, or a
`kstatus:` and a `strict:` verdict where they differ (kstatus's false positives); a verdict may
also say what the controller's message must contain. The loader refuses unknown keys and
duplicate names, so a typo cannot turn a case into a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.cluster import health
from conveyor.cluster.health import Profile, Readiness, State
from conveyor.cluster.health_rules import HealthRule, HealthRules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "health"


@dataclass(frozen=True)
class Verdict:
    state: State
    reason_contains: str
    message_contains: str | None = None

    def mismatch(self, got: Readiness) -> str | None:
        message_ok = self.message_contains is None or self.message_contains in (got.message or "")
        if got.state is self.state and self.reason_contains in got.reason and message_ok:
            return None
        message = (
            ""
            if self.message_contains is None
            else f" and a message with {self.message_contains!r}"
        )
        return (
            f"expected {self.state} with a reason containing {self.reason_contains!r}{message}, "
            f"got {got.state}: {got.reason!r} (message {got.message!r})"
        )


@dataclass(frozen=True)
class StatusCase:
    name: str
    object: dict[str, Any]
    expect: dict[Profile, Verdict]


@dataclass(frozen=True)
class PodsCase:
    name: str
    deployment: dict[str, Any]
    pods: list[dict[str, Any]]
    expect: Verdict | None


def _keys(
    raw: dict[str, Any], where: str, required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    if not required <= set(raw) <= required | optional:
        raise ValueError(
            f"{where}: expected keys {sorted(required)} (and maybe {sorted(optional)}), "
            f"found {sorted(raw)}"
        )


def _verdict(raw: dict[str, Any], where: str) -> Verdict:
    _keys(raw, where, {"state", "reason_contains"}, frozenset({"message_contains"}))
    message = raw.get("message_contains")
    return Verdict(State(raw["state"]), str(raw["reason_contains"]), message)


def _cases(pattern: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, raw case) for every case in the files matching `pattern`; names are unique."""
    found: list[tuple[str, dict[str, Any]]] = []
    names: set[str] = set()
    for path in sorted(FIXTURES.glob(pattern)):
        for raw in yaml.safe_load(path.read_text()):
            where = f"{path.name}: {raw.get('name')}"
            if raw.get("name") in names:
                raise ValueError(f"{where}: a case with this name already exists")
            names.add(raw["name"])
            found.append((where, raw))
    if not found:
        raise ValueError(f"no cases in {FIXTURES}/{pattern}")
    return found


def _status_case(raw: dict[str, Any], where: str) -> StatusCase:
    _keys(raw, where, {"name", "object", "expect"})
    expect = raw["expect"]
    if "state" in expect:
        verdicts = dict.fromkeys(Profile, _verdict(expect, where))
    else:
        _keys(expect, where, {profile.value for profile in Profile})
        verdicts = {profile: _verdict(expect[profile.value], where) for profile in Profile}
    return StatusCase(raw["name"], raw["object"], verdicts)


def _status_cases() -> list[StatusCase]:
    return [_status_case(raw, where) for where, raw in _cases("status_*.yaml")]


def _rule(raw: dict[str, Any]) -> HealthRule:
    """A rule written as in a pipeline's healthChecks (Flux's keys)."""
    _keys(raw, "rules.yaml", {"apiVersion", "kind", "current"}, frozenset({"inProgress", "failed"}))
    return HealthRule(
        raw["apiVersion"], raw["kind"], raw["current"], raw.get("inProgress"), raw.get("failed")
    )


def _rule_cases() -> tuple[HealthRules, list[StatusCase]]:
    document = yaml.safe_load((FIXTURES / "rules.yaml").read_text())
    _keys(document, "rules.yaml", {"rules", "cases"})
    rules = HealthRules(tuple(_rule(raw) for raw in document["rules"]))
    cases = [_status_case(raw, f"rules.yaml: {raw.get('name')}") for raw in document["cases"]]
    if len({case.name for case in cases}) != len(cases):
        raise ValueError("rules.yaml: two cases share a name")
    return rules, cases


def _pods_cases() -> list[PodsCase]:
    cases: list[PodsCase] = []
    for where, raw in _cases("deployment_pods.yaml"):
        _keys(raw, where, {"name", "deployment", "pods", "expect"})
        expect = None if raw["expect"] is None else _verdict(raw["expect"], where)
        cases.append(PodsCase(raw["name"], raw["deployment"], raw["pods"], expect))
    return cases


STATUS_CASES = _status_cases()
RULES, RULE_CASES = _rule_cases()
PODS_CASES = _pods_cases()


def _wrong(case: StatusCase, rules: HealthRules) -> list[str]:
    return [
        f"{profile}: {problem}"
        for profile, verdict in case.expect.items()
        if (problem := verdict.mismatch(health.status(case.object, profile, rules))) is not None
    ]


@pytest.mark.parametrize("case", STATUS_CASES, ids=[case.name for case in STATUS_CASES])
def test_status(case: StatusCase) -> None:
    wrong = _wrong(case, HealthRules())
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("case", RULE_CASES, ids=[case.name for case in RULE_CASES])
def test_status_with_health_rules(case: StatusCase) -> None:
    wrong = _wrong(case, RULES)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("case", PODS_CASES, ids=[case.name for case in PODS_CASES])
def test_deployment_failure_from_pods(case: PodsCase) -> None:
    got = health.deployment_failure_from_pods(case.deployment, case.pods)
    if case.expect is None:
        assert got is None
    else:
        assert got is not None, "expected a failure, got None"
        assert case.expect.mismatch(got) is None, case.expect.mismatch(got)


def test_every_kstatus_false_positive_has_a_case() -> None:
    """The false positives the module docstring lists are each pinned by a fixture case."""
    differing = {
        case.name
        for case in STATUS_CASES
        if case.expect[Profile.KSTATUS].state is State.CURRENT
        and case.expect[Profile.STRICT].state is not State.CURRENT
    }
    assert differing == {
        "false-positive-custom-resource-with-conditions-but-no-ready",
        "false-positive-custom-resource-with-empty-conditions",
        "false-positive-job-started-not-complete",
        "false-positive-load-balancer-without-ingress",
        "false-positive-observed-generation-missing-where-always-reported",
        "false-positive-pod-phase-failed",
        "false-positive-ready-condition-older-than-generation",
        "false-positive-statefulset-on-delete-with-unready-pods",
    }


def test_strict_is_the_default_profile() -> None:
    job = next(c for c in STATUS_CASES if c.name == "false-positive-job-started-not-complete")
    assert health.status(job.object) == health.status(job.object, Profile.STRICT)


def test_summarize_counts_current_and_lists_the_rest_sorted() -> None:
    readinesses = {
        "Service/shop/web": Readiness(State.CURRENT, "type ClusterIP has nothing to provision"),
        "Deployment/shop/web": Readiness(State.IN_PROGRESS, "2/3 replicas available"),
        "Job/shop/migrate": Readiness(State.FAILED, "Failed=True: BackoffLimitExceeded"),
    }
    assert health.summarize(readinesses) == (
        1,
        3,
        [
            "Deployment/shop/web: 2/3 replicas available",
            "Job/shop/migrate: Failed=True: BackoffLimitExceeded",
        ],
    )
    assert health.summarize({}) == (0, 0, [])


def test_object_key_names_kind_namespace_and_name() -> None:
    deployment = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}}
    namespace = {"kind": "Namespace", "metadata": {"name": "shop"}}
    assert health.object_key(deployment) == "Deployment/shop/web"
    assert health.object_key(namespace) == "Namespace/shop"
