"""Desired state and evidence, recorded in the state git repository.

Why this module exists: git is where the control loop reads what each target should run, and
`git log` is the audit trail of who promoted what, when and why. So every change is one commit
with a message a person can read; `record` can write desired state and evidence in one commit
(the flows commit a promotion's evidence first and its desired state alone after it, so git never
holds desired state without evidence and a `git revert` of a promotion is clean); and every file
read back is validated: people edit this repository (a `git revert`, a fix by hand), and a bad
digest or a missing key must stop the loop with an error naming the file and the key, not deploy
something else.

Files (YAML, camelCase keys, times in RFC 3339, UTC):
- `apps/<app>/<target>.yaml`: the desired state of one target (`DesiredState`). A parameter the
  bundle marks sensitive is recorded as `{sensitive: sha256:<hex>}`, never as its value (see
  conveyor.bundles.parameters): a desired state is read by everyone who can read the repository.
- `evidence/<app>/<digest hex>/<stage>.yaml`: what stage `<stage>` proved about one digest: gate
  results per target, the approval and the stage's verdict (`Evidence`). Targets of one stage
  write it concurrently, so a write merges into what is there (see `merge_evidence`).

Serialization (`*_to_dict`, `*_from_dict`, `*_to_yaml`, `*_from_yaml`) is pure; the functions at
the end do the I/O through `conveyor.adapters.gitrepo.StateRepository`. Timestamps are fields the
caller sets from its own clock; nothing here reads the wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Literal, TypeGuard, cast, get_args

import yaml

from conveyor.adapters.gitrepo import Author, Change, StateRepository
from conveyor.bundles.parameters import SENSITIVE_KEY, is_withheld
from conveyor.errors import InputError, StateError
from conveyor.kit.digests import DIGEST, check_digest
from conveyor.kit.fields import Fields, Place, is_text
from conveyor.kit.redaction import SECRET_HASH
from conveyor.kit.strict_yaml import read_yaml
from conveyor.kit.syntax import DNS_LABEL, DNS_LABEL_RULE, parse_rfc3339

GateVerdict = Literal["passed", "failed"]
StageVerdict = Literal["pending", "passed", "failed"]
Decision = Literal["approved", "rejected"]

CONVEYOR_AUTHOR = Author("Conveyor", "conveyor@localhost")
DESIRED_ROOT = "apps"
EVIDENCE_ROOT = "evidence"

_FIX_HINT = "fix the file in the state repository, or revert the commit that broke it"


@dataclass(frozen=True)
class DesiredState:
    """What one target of an app should run, and who or what decided it."""

    app: str
    target: str
    stage: str
    digest: str
    parameters: Mapping[str, Any]  # the values rendered with: enough to reproduce the manifests
    parameters_hash: str
    rendered_hash: str
    promoted_by: str  # a person, or what acted: "flow-run release-web-3f2a1c"
    flow_run_id: str | None
    approved_by: str | None
    updated_at: datetime
    config: str | None = None
    """The digest of the configuration the promotion ran with (conveyor.config.binding)."""


@dataclass(frozen=True)
class GateRecord:
    """One gate's outcome on one target, as the evidence file records it."""

    name: str
    verdict: GateVerdict
    reason: str
    duration_seconds: float
    finished_at: datetime


@dataclass(frozen=True)
class ApprovalSignature:
    """One signer of an approval: the allowed-signers principal, the key's fingerprint and the
    armored SSH signature itself, so anyone can verify the record again."""

    principal: str
    fingerprint: str
    signature: str


@dataclass(frozen=True)
class Approval:
    """A person's decision on a digest, valid only for the rendered manifests it was given for;
    on a stage that requires signed approvals, with the signatures that made it."""

    decision: Decision
    approver: str
    reason: str
    rendered_hash: str
    at: datetime
    signatures: tuple[ApprovalSignature, ...] = ()


@dataclass(frozen=True)
class Evidence:
    """What one stage proved about one digest of an app."""

    app: str
    digest: str
    stage: str
    verdict: StageVerdict
    gates: Mapping[str, tuple[GateRecord, ...]]  # target -> its gate results
    approval: Approval | None


@dataclass(frozen=True)
class HistoryEntry:
    """One commit that changed a target's desired state, as `git log` tells it.

    `desired` is None when the commit deleted the file or left it unreadable (`problem` says why).
    """

    commit: str
    author: str
    date: datetime
    message: str
    desired: DesiredState | None
    problem: str | None


# --- Paths -----------------------------------------------------------------------------------


def _check_name(value: str, what: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise InputError(f"{what} {value!r} is not a valid name", hint=DNS_LABEL_RULE)
    return value


def desired_path(app: str, target: str) -> str:
    """`apps/<app>/<target>.yaml`."""
    return f"{DESIRED_ROOT}/{_check_name(app, 'app')}/{_check_name(target, 'target')}.yaml"


def evidence_path(app: str, digest: str, stage: str) -> str:
    """`evidence/<app>/<digest hex>/<stage>.yaml`."""
    hex_digest = check_digest(digest).removeprefix("sha256:")
    return (
        f"{EVIDENCE_ROOT}/{_check_name(app, 'app')}/{hex_digest}/{_check_name(stage, 'stage')}.yaml"
    )


# --- Serialization (pure) --------------------------------------------------------------------


def _rfc3339(value: datetime, key: str) -> str:
    if value.tzinfo is None:
        raise InputError(
            f"{key}: {value.isoformat()} has no time zone",
            hint="pass an aware datetime, such as datetime.now(UTC)",
        )
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _InStateFile(Place):
    """A place in a state file: errors read `file: key 'path' problem` (`file: the file ...` of
    the whole file) and say how to repair it; every key is written, so null is a value."""

    null_is_absent: ClassVar[bool] = False
    missing: ClassVar[str] = "is missing"

    def error(self, problem: str, hint: str | None = None) -> StateError:
        what = f"key {self.path!r}" if self.path else "the file"
        return StateError(f"{self.file}: {what} {problem}", hint=hint or _FIX_HINT)

    def got(self, value: object) -> str:
        return f"not {_kind(value)}"

    def unknown_key(self, known: Sequence[str]) -> StateError:
        return self.error("is not a known key (a typo?)")


def _is_filled_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _is_parameter_mapping(value: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


class _StateFields(Fields):
    """A mapping of a state file, with the value types state files hold."""

    def string(self, key: str) -> str:
        return self.expect(key, "a non-empty string", _is_filled_text)

    def text(self, key: str) -> str:
        return self.expect(key, "a string", is_text)

    def optional_string(self, key: str) -> str | None:
        return None if self.get(key) is None else self.string(key)

    def name(self, key: str) -> str:
        value = self.string(key)
        if not DNS_LABEL.fullmatch(value):
            raise self.error(key, f"is {value!r}, not a valid name ({DNS_LABEL_RULE})")
        return value

    def digest(self, key: str) -> str:
        value = self.string(key)
        if not DIGEST.fullmatch(value):
            raise self.error(key, f"is {value!r}, not a sha256 digest (sha256:<64 lowercase hex>)")
        return value

    def time(self, key: str) -> datetime:
        value = self.string(key)
        moment = parse_rfc3339(value)
        if moment is None:
            raise self.error(key, f"is {value!r}, not an RFC 3339 time (2024-05-01T12:00:00Z)")
        return moment

    def seconds(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.error(key, f"must be a number of seconds >= 0, not {value!r}")
        return float(value)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.string(key)
        if value not in allowed:
            raise self.error(key, f"is {value!r}; expected one of {', '.join(allowed)}")
        return value

    def parameters(self, key: str) -> dict[str, Any]:
        """Parameter values; a mapping among them must be a withheld sensitive value."""
        values = dict(self.expect(key, "a mapping of parameter names", _is_parameter_mapping))
        for name, value in values.items():
            if isinstance(value, dict) and not (
                is_withheld(value) and SECRET_HASH.fullmatch(str(value[SENSITIVE_KEY]))
            ):
                raise self.error(
                    key,
                    f"holds {name!r} as a mapping; the only mapping a parameter is recorded as "
                    f"is {{{SENSITIVE_KEY}: sha256:<64 lowercase hex>}} (a sensitive value)",
                )
        return values

    def optional_section(self, key: str, known: Sequence[str]) -> _StateFields | None:
        return None if self.get(key) is None else self.section(key, known)


_DESIRED_KEYS = (
    "app",
    "target",
    "stage",
    "digest",
    "parameters",
    "parametersHash",
    "renderedHash",
    "promotedBy",
    "flowRunId",
    "approvedBy",
    "updatedAt",
    "config",
)
_EVIDENCE_KEYS = ("app", "digest", "stage", "verdict", "gates", "approval")
_GATE_KEYS = ("name", "verdict", "reason", "durationSeconds", "finishedAt")
_APPROVAL_KEYS = ("decision", "approver", "reason", "renderedHash", "at", "signatures")
_SIGNATURE_KEYS = ("principal", "fingerprint", "signature")


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def desired_to_dict(desired: DesiredState) -> dict[str, Any]:
    return {
        "app": desired.app,
        "target": desired.target,
        "stage": desired.stage,
        "digest": desired.digest,
        "parameters": dict(desired.parameters),
        "parametersHash": desired.parameters_hash,
        "renderedHash": desired.rendered_hash,
        "promotedBy": desired.promoted_by,
        "flowRunId": desired.flow_run_id,
        "approvedBy": desired.approved_by,
        "updatedAt": _rfc3339(desired.updated_at, "updatedAt"),
    } | ({"config": desired.config} if desired.config else {})


def desired_from_dict(data: object, where: str) -> DesiredState:
    fields = _StateFields(data, _InStateFile(where), _DESIRED_KEYS)
    return DesiredState(
        app=fields.name("app"),
        target=fields.name("target"),
        stage=fields.name("stage"),
        digest=fields.digest("digest"),
        parameters=fields.parameters("parameters"),
        parameters_hash=fields.digest("parametersHash"),
        rendered_hash=fields.digest("renderedHash"),
        promoted_by=fields.string("promotedBy"),
        flow_run_id=fields.optional_string("flowRunId"),
        approved_by=fields.optional_string("approvedBy"),
        updated_at=fields.time("updatedAt"),
        config=fields.digest("config") if fields.given("config") else None,
    )


def _gate_to_dict(gate: GateRecord) -> dict[str, Any]:
    return {
        "name": gate.name,
        "verdict": gate.verdict,
        "reason": gate.reason,
        "durationSeconds": gate.duration_seconds,
        "finishedAt": _rfc3339(gate.finished_at, "finishedAt"),
    }


def _gate_from_fields(fields: _StateFields) -> GateRecord:
    return GateRecord(
        name=fields.string("name"),
        verdict=cast(GateVerdict, fields.choice("verdict", get_args(GateVerdict))),
        reason=fields.text("reason"),
        duration_seconds=fields.seconds("durationSeconds"),
        finished_at=fields.time("finishedAt"),
    )


def evidence_to_dict(evidence: Evidence) -> dict[str, Any]:
    approval = evidence.approval
    return {
        "app": evidence.app,
        "digest": evidence.digest,
        "stage": evidence.stage,
        "verdict": evidence.verdict,
        "gates": {
            target: [_gate_to_dict(gate) for gate in evidence.gates[target]]
            for target in sorted(evidence.gates)
        },
        "approval": None
        if approval is None
        else {
            "decision": approval.decision,
            "approver": approval.approver,
            "reason": approval.reason,
            "renderedHash": approval.rendered_hash,
            "at": _rfc3339(approval.at, "approval.at"),
            **(
                {
                    "signatures": [
                        {
                            "principal": signed.principal,
                            "fingerprint": signed.fingerprint,
                            "signature": signed.signature,
                        }
                        for signed in approval.signatures
                    ]
                }
                if approval.signatures
                else {}
            ),
        },
    }


def _signature_from(fields: _StateFields) -> ApprovalSignature:
    return ApprovalSignature(
        fields.string("principal"), fields.string("fingerprint"), fields.text("signature")
    )


def evidence_from_dict(data: object, where: str) -> Evidence:
    fields = _StateFields(data, _InStateFile(where), _EVIDENCE_KEYS)
    app = fields.name("app")
    digest = fields.digest("digest")
    stage = fields.name("stage")
    verdict = cast(StageVerdict, fields.choice("verdict", get_args(StageVerdict)))
    by_target = fields.section("gates", known=None)
    gates: dict[str, tuple[GateRecord, ...]] = {}
    for target in by_target.values:
        if not DNS_LABEL.fullmatch(target):
            raise by_target.error(target, f"is not a valid target name ({DNS_LABEL_RULE})")
        gates[target] = tuple(
            _gate_from_fields(_StateFields(item, at, _GATE_KEYS))
            for item, at in by_target.items(target)
        )
    approval_fields = fields.optional_section("approval", _APPROVAL_KEYS)
    approval = None
    if approval_fields is not None:
        approval = Approval(
            decision=cast(Decision, approval_fields.choice("decision", get_args(Decision))),
            approver=approval_fields.string("approver"),
            reason=approval_fields.text("reason"),
            rendered_hash=approval_fields.digest("renderedHash"),
            at=approval_fields.time("at"),
            signatures=tuple(
                _signature_from(_StateFields(item, at, _SIGNATURE_KEYS))
                for item, at in approval_fields.items("signatures", default=[])
            ),
        )
    return Evidence(app, digest, stage, verdict, gates, approval)


def _dump(data: dict[str, Any]) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


def _unreadable(message: str, *, hint: str | None = None) -> StateError:
    """A state file that is not UTF-8 or not YAML: fixing or reverting it is what to do."""
    return StateError(message, hint=_FIX_HINT)


def _load(content: bytes, where: str) -> object:
    documents = read_yaml(content, where, _unreadable)
    if len(documents) != 1:
        raise StateError(
            f"{where}: holds {len(documents)} YAML documents; expected one mapping", hint=_FIX_HINT
        )
    return documents[0]


def _check_place(path: str, expected: str, fields: tuple[str, ...]) -> None:
    if path != expected:
        raise StateError(
            f"{path}: keys {', '.join(map(repr, fields))} say the file belongs at {expected}",
            hint="a file's place names what it is about: move it, or correct those keys",
        )


def desired_from_yaml(content: bytes, path: str) -> DesiredState:
    """The desired state in file `path`, validated, and checked to be about that path's target."""
    desired = desired_from_dict(_load(content, path), path)
    _check_place(path, desired_path(desired.app, desired.target), ("app", "target"))
    return desired


def desired_to_yaml(desired: DesiredState) -> bytes:
    """The file content; refuses (InputError) what `desired_from_yaml` would refuse."""
    content = _dump(desired_to_dict(desired))
    try:
        desired_from_yaml(content, desired_path(desired.app, desired.target))
    except StateError as error:
        raise InputError(f"refusing to write desired state: {error.message}") from None
    return content


def evidence_from_yaml(content: bytes, path: str) -> Evidence:
    """The evidence in file `path`, validated, and checked to be about that path's digest."""
    evidence = evidence_from_dict(_load(content, path), path)
    expected = evidence_path(evidence.app, evidence.digest, evidence.stage)
    _check_place(path, expected, ("app", "digest", "stage"))
    return evidence


def evidence_to_yaml(evidence: Evidence) -> bytes:
    """The file content; refuses (InputError) what `evidence_from_yaml` would refuse."""
    content = _dump(evidence_to_dict(evidence))
    try:
        evidence_from_yaml(content, evidence_path(evidence.app, evidence.digest, evidence.stage))
    except StateError as error:
        raise InputError(f"refusing to write evidence: {error.message}") from None
    return content


def merge_evidence(existing: Evidence | None, new: Evidence) -> Evidence:
    """`new` written over `existing`: gate results replace those of the same targets (other
    targets' stay), the approval stays unless `new` has one, the verdict is `new`'s."""
    if existing is None:
        return new
    return replace(
        new,
        gates={**existing.gates, **new.gates},
        approval=new.approval if new.approval is not None else existing.approval,
    )


def _short(digest: str) -> str:
    return digest[: len("sha256:") + 12] + "…"


def desired_message(desired: DesiredState, action: str, reason: str | None) -> str:
    """`web/prod-eu: promote sha256:3f2a1c4d5e6f… (staging passed; approved by alice)`."""
    notes = [reason] if reason else []
    if desired.approved_by:
        notes.append(f"approved by {desired.approved_by}")
    detail = "; ".join(notes)
    subject = f"{desired.app}/{desired.target}: {action} {_short(desired.digest)}"
    return f"{subject} ({detail})" if detail else subject


def desired_summary(targets: Sequence[DesiredState], action: str, reason: str | None) -> str:
    """`web/prod-eu, prod-us: promote sha256:3f2a1c4d5e6f… (prod gates passed)`: the subject
    of a commit that records several targets (each one's own line follows)."""
    digests = {_short(d.digest) for d in targets}
    names = ", ".join(d.target for d in targets)
    subject = f"{targets[0].app}/{names}: {action} {' and '.join(sorted(digests))}"
    return f"{subject} ({reason})" if reason else subject


def evidence_message(evidence: Evidence) -> str:
    """`web sha256:3f2a1c4d5e6f…: staging evidence (pending; prod-eu: 2/2 gates passed)`."""
    notes: list[str] = [evidence.verdict]
    for target in sorted(evidence.gates):
        results = evidence.gates[target]
        passed = sum(gate.verdict == "passed" for gate in results)
        notes.append(f"{target}: {passed}/{len(results)} gates passed")
    if evidence.approval is not None:
        notes.append(f"{evidence.approval.decision} by {evidence.approval.approver}")
    return (
        f"{evidence.app} {_short(evidence.digest)}: {evidence.stage} evidence ({'; '.join(notes)})"
    )


# --- Reading and writing the repository ------------------------------------------------------


def _merged_evidence(new: Evidence, path: str, current: bytes | None) -> bytes:
    existing = None if current is None else evidence_from_yaml(current, path)
    return evidence_to_yaml(merge_evidence(existing, new))


def record(
    repo: StateRepository,
    *,
    desired: DesiredState | Sequence[DesiredState] = (),
    evidence: Evidence | None = None,
    action: str = "promote",
    reason: str | None = None,
    author: Author = CONVEYOR_AUTHOR,
) -> str:
    """Commit desired state (of one or several targets of one app), evidence, or both in ONE
    commit; return the commit (or the tip when nothing changed). The evidence is merged into
    what the file holds when the commit is made."""
    targets = [desired] if isinstance(desired, DesiredState) else list(desired)
    changes: dict[str, Change] = {}
    messages = [desired_message(d, action, reason) for d in targets]
    if len(targets) > 1:
        messages.insert(0, desired_summary(targets, action, reason))
    for value in targets:
        path = desired_path(value.app, value.target)
        if path in changes:
            raise InputError(f"one commit records {value.app}/{value.target} twice")
        changes[path] = desired_to_yaml(value)
    if evidence is not None:
        evidence_to_yaml(evidence)  # refuse bad evidence before any git work
        path = evidence_path(evidence.app, evidence.digest, evidence.stage)
        changes[path] = partial(_merged_evidence, evidence, path)
        messages.append(evidence_message(evidence))
    if not changes:
        raise InputError("record() needs desired state, evidence or both")
    apps = {d.app for d in targets} | ({evidence.app} if evidence is not None else set())
    if len(apps) > 1:
        raise InputError(f"one commit records one app, not {', '.join(sorted(apps))}")
    return repo.commit_files(changes, "\n\n".join(messages), author)


def read_desired(repo: StateRepository, app: str, target: str) -> DesiredState | None:
    """The desired state at the tip of `main`, or None when the target has none."""
    path = desired_path(app, target)
    content = repo.read(path)
    return None if content is None else desired_from_yaml(content, path)


def read_desired_many(
    repo: StateRepository, targets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], DesiredState | None]:
    """The desired state of each (app, target) at one tip of `main` (one fetch for all)."""
    paths = {key: desired_path(*key) for key in targets}
    found = repo.read_many(list(paths.values()))
    desired: dict[tuple[str, str], DesiredState | None] = {}
    for key, path in paths.items():
        content = found[path]
        desired[key] = None if content is None else desired_from_yaml(content, path)
    return desired


def read_evidence(repo: StateRepository, app: str, digest: str, stage: str) -> Evidence | None:
    """What `stage` proved about `digest` so far, or None when it has recorded nothing."""
    return read_evidence_of(repo, app, digest, [stage])[stage]


def read_evidence_of(
    repo: StateRepository, app: str, digest: str, stages: Sequence[str]
) -> dict[str, Evidence | None]:
    """What each of `stages` proved about `digest`, read at one tip of `main`."""
    paths = {stage: evidence_path(app, digest, stage) for stage in stages}
    found = repo.read_many(list(paths.values()))
    evidence: dict[str, Evidence | None] = {}
    for stage, path in paths.items():
        content = found[path]
        evidence[stage] = None if content is None else evidence_from_yaml(content, path)
    return evidence


def history(repo: StateRepository, app: str, target: str) -> list[HistoryEntry]:
    """Every commit that changed the target's desired state, newest first."""
    path = desired_path(app, target)
    entries = []
    for commit in repo.log(path):
        content = repo.read(path, commit.commit)
        desired, problem = None, None
        if content is not None:
            try:
                desired = desired_from_yaml(content, path)
            except StateError as error:
                problem = error.message
        entries.append(
            HistoryEntry(
                commit.commit, commit.author, commit.date, commit.message, desired, problem
            )
        )
    return entries


def previous_desired(
    current: DesiredState, entries: Sequence[HistoryEntry], to: str | None = None
) -> DesiredState | None:
    """What a rollback from `current` returns to, from the target's history (newest first, as
    `history` lists it), skipping versions that cannot be read: the newest whose digest is `to`
    (or starts with it), else the newest with a digest other than the current one (commits that
    kept the same digest are skipped). None when there is none."""
    for entry in entries:
        found = entry.desired
        if found is None:
            continue
        if to is not None and found.digest.startswith(to):
            return found
        if to is None and found.digest != current.digest:
            return found
    return None
