"""Desired state and evidence files: round trips, the exact file format, and the errors a
hand-edited file gets (each naming the file and the key), table-driven."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
import yaml

from conveyor.errors import InputError, StateError
from conveyor.records import state
from conveyor.records.state import (
    Approval,
    ApprovalSignature,
    DesiredState,
    Evidence,
    GateRecord,
)

DIGEST = "sha256:" + "3f2a1c" + "0" * 58
OTHER = "sha256:" + "b" * 64
PARAMS = "sha256:" + "1" * 64
RENDERED = "sha256:" + "2" * 64
WHEN = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DESIRED_PATH = "apps/web/prod-eu.yaml"
EVIDENCE_PATH = f"evidence/web/{DIGEST.removeprefix('sha256:')}/staging.yaml"


def desired(**changes: Any) -> DesiredState:
    base = DesiredState(
        app="web",
        target="prod-eu",
        stage="prod",
        digest=DIGEST,
        parameters={"replicas": 3, "greeting": "hello"},
        parameters_hash=PARAMS,
        rendered_hash=RENDERED,
        promoted_by="flow-run release-web-3f2a1c",
        flow_run_id="0f6c2e9a-4d1b-4c57-9a57-5d1c1d2e3f40",
        approved_by="alice",
        updated_at=WHEN,
    )
    return replace(base, **changes)


def gate(name: str, verdict: state.GateVerdict = "passed") -> GateRecord:
    return GateRecord(name, verdict, f"{name} {verdict}", 12.5, WHEN + timedelta(minutes=1))


def evidence(**changes: Any) -> Evidence:
    base = Evidence(
        app="web",
        digest=DIGEST,
        stage="staging",
        verdict="passed",
        gates={"staging-eu": (gate("smoke"), gate("http")), "staging-us": (gate("smoke"),)},
        approval=Approval("approved", "alice", "looks right", RENDERED, WHEN),
    )
    return replace(base, **changes)


def test_desired_state_file_format() -> None:
    assert state.desired_to_yaml(desired()).decode() == (
        "app: web\n"
        "target: prod-eu\n"
        "stage: prod\n"
        f"digest: {DIGEST}\n"
        "parameters:\n"
        "  replicas: 3\n"
        "  greeting: hello\n"
        f"parametersHash: {PARAMS}\n"
        f"renderedHash: {RENDERED}\n"
        "promotedBy: flow-run release-web-3f2a1c\n"
        "flowRunId: 0f6c2e9a-4d1b-4c57-9a57-5d1c1d2e3f40\n"
        "approvedBy: alice\n"
        "updatedAt: '2024-05-01T12:00:00Z'\n"
    )


def test_evidence_file_format() -> None:
    one_target = evidence(gates={"staging-eu": (gate("smoke", "failed"),)}, verdict="failed")
    assert state.evidence_to_yaml(one_target).decode() == (
        "app: web\n"
        f"digest: {DIGEST}\n"
        "stage: staging\n"
        "verdict: failed\n"
        "gates:\n"
        "  staging-eu:\n"
        "  - name: smoke\n"
        "    verdict: failed\n"
        "    reason: smoke failed\n"
        "    durationSeconds: 12.5\n"
        "    finishedAt: '2024-05-01T12:01:00Z'\n"
        "approval:\n"
        "  decision: approved\n"
        "  approver: alice\n"
        "  reason: looks right\n"
        f"  renderedHash: {RENDERED}\n"
        "  at: '2024-05-01T12:00:00Z'\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        desired(),
        desired(flow_run_id=None, approved_by=None),
        desired(
            updated_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        ),
    ],
    ids=["full", "no-run-no-approval", "offset-and-microseconds"],
)
def test_desired_state_round_trips(value: DesiredState) -> None:
    assert state.desired_from_yaml(state.desired_to_yaml(value), DESIRED_PATH) == value


SIGNATURE = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"


@pytest.mark.parametrize(
    "value",
    [
        evidence(),
        evidence(approval=None, verdict="pending"),
        evidence(gates={}),
        evidence(
            approval=Approval(
                "approved",
                "bob@example.com, carol@example.com",
                "",
                RENDERED,
                WHEN,
                (
                    ApprovalSignature("bob@example.com", "SHA256:b", SIGNATURE),
                    ApprovalSignature("carol@example.com", "SHA256:c", SIGNATURE),
                ),
            )
        ),
    ],
    ids=["full", "pending-without-approval", "no-gates-yet", "signed"],
)
def test_evidence_round_trips(value: Evidence) -> None:
    assert state.evidence_from_yaml(state.evidence_to_yaml(value), EVIDENCE_PATH) == value


def test_a_hand_written_file_with_an_unquoted_time_reads() -> None:
    text = (
        state.desired_to_yaml(desired())
        .decode()
        .replace("'2024-05-01T12:00:00Z'", "2024-05-01t12:00:00z")
    )
    assert state.desired_from_yaml(text.encode(), DESIRED_PATH) == desired()


def _yaml(data: dict[str, Any]) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


def _read_error(
    read: Callable[[bytes, str], object], data: dict[str, Any], path: str
) -> StateError:
    """The StateError `read` raises for `data` as the file at `path`, whose message starts with
    that path."""
    with pytest.raises(StateError, match=f"^{path}: ") as raised:
        read(_yaml(data), path)
    return raised.value


def _desired_dict() -> dict[str, Any]:
    return state.desired_to_dict(desired())


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _setting(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_without("digest"), "key 'digest' is missing"),
        (
            _setting("digest", "sha256:3f2a1c"),
            "key 'digest' is 'sha256:3f2a1c', not a sha256 digest",
        ),
        (_setting("digest", DIGEST.upper()), "key 'digest' is 'SHA256:3F2A1C"),
        (_setting("renderedHash", 42), "key 'renderedHash' must be a non-empty string, not a int"),
        (_setting("promotedBy", " "), "key 'promotedBy' must be a non-empty string"),
        (_setting("flowRunId", 7), "key 'flowRunId' must be a non-empty string, not a int"),
        (
            _setting("updatedAt", "2024-05-01T12:00:00"),
            "key 'updatedAt' is '2024-05-01T12:00:00', not an RFC 3339",
        ),
        (
            _setting("updatedAt", "2024-13-01T12:00:00Z"),
            "key 'updatedAt' is '2024-13-01T12:00:00Z'",
        ),
        (_setting("updatedAt", "yesterday"), "key 'updatedAt' is 'yesterday', not an RFC 3339"),
        (_setting("stage", "Prod_EU"), "key 'stage' is 'Prod_EU', not a valid name"),
        (_setting("digets", DIGEST), "key 'digets' is not a known key"),
        (
            _setting("app", "api"),
            "keys 'app', 'target' say the file belongs at apps/api/prod-eu.yaml",
        ),
        (_setting("target", "prod-us"), "say the file belongs at apps/web/prod-us.yaml"),
    ],
    ids=[
        "missing-key",
        "short-digest",
        "uppercase-digest",
        "hash-not-string",
        "blank-promoted-by",
        "run-id-number",
        "time-without-zone",
        "month-13",
        "not-a-time",
        "bad-name",
        "unknown-key",
        "other-app",
        "other-target",
    ],
)
def test_bad_desired_state_files_name_the_file_and_key(
    edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = _desired_dict()
    edit(data)
    error = _read_error(state.desired_from_yaml, data, DESIRED_PATH)
    assert message in error.message
    assert error.hint, "every error says what to do"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"digest: [\n", f"{DESIRED_PATH}:2: invalid YAML"),
        (b"app: web\napp: web\n", "found the key 'app' twice"),
        (b"- app: web\n", "the file must be a mapping, not a list"),
        (b"~\n", "the file must be a mapping, not null"),
        (b"", "holds 0 YAML documents; expected one mapping"),
        (b"app: web\n---\napp: web\n", "holds 2 YAML documents; expected one mapping"),
        (b"app: \xff\n", "not UTF-8 text"),
    ],
    ids=["broken-yaml", "duplicate-key", "list", "null", "empty", "two-documents", "not-utf8"],
)
def test_unreadable_files_name_the_file(content: bytes, message: str) -> None:
    with pytest.raises(StateError, match=DESIRED_PATH) as raised:
        state.desired_from_yaml(content, DESIRED_PATH)
    assert message in raised.value.message


def _evidence_dict() -> dict[str, Any]:
    return state.evidence_to_dict(evidence())


def _gate_setting(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["gates"]["staging-eu"][1].__setitem__(key, value)


def _approval_setting(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["approval"].__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _setting("verdict", "done"),
            "key 'verdict' is 'done'; expected one of pending, passed, failed",
        ),
        (_setting("gates", ["smoke"]), "key 'gates' must be a mapping, not a list"),
        (lambda d: d["gates"].__setitem__("EU", []), "key 'gates.EU' is not a valid target name"),
        (lambda d: d["gates"].__setitem__("eu", {}), "key 'gates.eu' must be a list, not a dict"),
        (
            lambda d: d["gates"]["staging-eu"].append("smoke"),
            "key 'gates.staging-eu[2]' must be a mapping",
        ),
        (
            _gate_setting("verdict", "ok"),
            "key 'gates.staging-eu[1].verdict' is 'ok'; expected one of passed, failed",
        ),
        (
            _gate_setting("durationSeconds", -1),
            "key 'gates.staging-eu[1].durationSeconds' must be a number of seconds >= 0",
        ),
        (
            _gate_setting("durationSeconds", True),
            "durationSeconds' must be a number of seconds >= 0, not True",
        ),
        (
            _gate_setting("reason", None),
            "key 'gates.staging-eu[1].reason' must be a string, not null",
        ),
        (_gate_setting("extra", 1), "key 'gates.staging-eu[1].extra' is not a known key"),
        (
            _approval_setting("decision", "maybe"),
            "key 'approval.decision' is 'maybe'; expected one of approved, rejected",
        ),
        (lambda d: d["approval"].pop("renderedHash"), "key 'approval.renderedHash' is missing"),
        (_approval_setting("at", "now"), "key 'approval.at' is 'now', not an RFC 3339"),
        (_setting("approval", "alice"), "key 'approval' must be a mapping, not a str"),
        (
            _setting("digest", OTHER),
            "keys 'app', 'digest', 'stage' say the file belongs at evidence/web/bbbb",
        ),
    ],
    ids=[
        "stage-verdict",
        "gates-not-mapping",
        "bad-target-name",
        "target-not-list",
        "gate-not-mapping",
        "gate-verdict",
        "negative-duration",
        "boolean-duration",
        "null-reason",
        "unknown-gate-key",
        "decision",
        "approval-without-hash",
        "approval-time",
        "approval-not-mapping",
        "other-digest",
    ],
)
def test_bad_evidence_files_name_the_file_and_key(
    edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = _evidence_dict()
    edit(data)
    error = _read_error(state.evidence_from_yaml, data, EVIDENCE_PATH)
    assert message in error.message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: state.desired_to_yaml(desired(digest="latest")),
            "refusing to write desired state: apps/web/prod-eu.yaml: key 'digest'",
        ),
        (
            lambda: state.desired_to_yaml(desired(promoted_by="")),
            "key 'promotedBy' must be a non-empty string",
        ),
        (
            lambda: state.desired_to_yaml(desired(updated_at=datetime(2024, 5, 1))),
            "updatedAt: 2024-05-01T00:00:00 has no time zone",
        ),
        (
            lambda: state.desired_to_yaml(desired(target="prod_eu")),
            "target 'prod_eu' is not a valid name",
        ),
        (
            lambda: state.evidence_to_yaml(evidence(digest="sha256:abc")),
            "'sha256:abc' is not a sha256 digest",
        ),
        (
            lambda: state.evidence_to_yaml(
                evidence(gates={"eu": (gate("smoke", cast(state.GateVerdict, "ok")),)})
            ),
            "key 'gates.eu[0].verdict' is 'ok'",
        ),
        (
            lambda: state.evidence_path("web", DIGEST, "../prod"),
            "stage '../prod' is not a valid name",
        ),
    ],
    ids=[
        "bad-digest",
        "blank-promoted-by",
        "naive-time",
        "bad-target",
        "evidence-digest",
        "gate-verdict",
        "escaping-stage",
    ],
)
def test_what_would_not_read_back_is_not_written(build: Callable[[], object], message: str) -> None:
    with pytest.raises(InputError) as raised:
        build()
    assert message in raised.value.message


def test_paths() -> None:
    assert state.desired_path("web", "prod-eu") == DESIRED_PATH
    assert state.evidence_path("web", DIGEST, "staging") == EVIDENCE_PATH


def test_merging_evidence_keeps_other_targets_and_the_approval() -> None:
    existing = evidence(verdict="pending")
    new = evidence(
        gates={"staging-us": (gate("smoke", "failed"),), "staging-ap": (gate("smoke"),)},
        approval=None,
        verdict="failed",
    )
    merged = state.merge_evidence(existing, new)
    assert merged.gates == {
        "staging-eu": existing.gates["staging-eu"],
        "staging-us": (gate("smoke", "failed"),),
        "staging-ap": (gate("smoke"),),
    }
    assert merged.approval == existing.approval
    assert merged.verdict == "failed"
    rejection = Approval("rejected", "bob", "not now", RENDERED, WHEN)
    assert state.merge_evidence(existing, evidence(approval=rejection)).approval == rejection
    assert state.merge_evidence(None, new) == new


@pytest.mark.parametrize(
    ("value", "action", "reason", "message"),
    [
        (
            desired(),
            "promote",
            "staging passed",
            "web/prod-eu: promote sha256:3f2a1c000000… (staging passed; approved by alice)",
        ),
        (desired(approved_by=None), "promote", None, "web/prod-eu: promote sha256:3f2a1c000000…"),
        (
            desired(approved_by=None),
            "roll back to",
            "gate smoke failed",
            "web/prod-eu: roll back to sha256:3f2a1c000000… (gate smoke failed)",
        ),
    ],
    ids=["reason-and-approval", "bare", "rollback"],
)
def test_desired_state_commit_messages(
    value: DesiredState, action: str, reason: str | None, message: str
) -> None:
    assert state.desired_message(value, action, reason) == message


def test_evidence_commit_message() -> None:
    value = evidence(
        gates={"staging-eu": (gate("smoke"), gate("http", "failed"))}, verdict="failed"
    )
    assert state.evidence_message(value) == (
        "web sha256:3f2a1c000000…: staging evidence (failed; staging-eu: 1/2 gates passed; "
        "approved by alice)"
    )


def test_the_configuration_digest_is_recorded_when_known() -> None:
    config = "sha256:" + "c" * 64
    with_config = desired(config=config)
    written = yaml.safe_load(state.desired_to_yaml(with_config))
    assert written["config"] == config
    assert state.desired_from_yaml(state.desired_to_yaml(with_config), "apps/web/prod-eu.yaml") == (
        with_config
    )
    assert "config" not in yaml.safe_load(state.desired_to_yaml(desired()))
