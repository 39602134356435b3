"""Readiness of one Kubernetes object: has the cluster finished reconciling what we applied?

Why: a stage may promote a bundle only once everything it applied is running, and a rollout that
cannot succeed should stop the stage at once rather than at a timeout. This module answers, for one
object as the API server returns it (a plain JSON dict), whether it is Current, InProgress, Failed
or Terminating, with a short reason naming what is still missing. It is pure (no client, no I/O,
no clock), so every rule is tested from fixtures, without a cluster.

The rules follow kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), first match wins:

1. metadata.deletionTimestamp set: Terminating.
2. status.observedGeneration present and different from metadata.generation: InProgress.
3. A health rule the pipeline gives for the object's group and kind (CEL, in the shape of Flux's
   `healthCheckExprs`; see `conveyor.cluster.health_rules`) decides, in place of what follows.
4. DaemonSets must report observedGeneration at all (in STRICT, every kind in
   `_REPORTS_OBSERVED_GENERATION` must).
5. The first condition Reconciling=True (InProgress) or Stalled=True (Failed).
6. The kind's own rule: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, Pod,
   PersistentVolumeClaim, Service, CustomResourceDefinition, Namespace (see `_RULES`).
7. Any other kind with a Ready condition: True is Current, False or Unknown is InProgress.
8. Anything else (ConfigMap, Secret, ServiceAccount, RBAC, a custom resource that reports no
   conditions: no status at all, or a status without conditions) has nothing to wait for:
   Current. A custom resource that reports conditions but no Ready one is Current to kstatus
   and InProgress in STRICT.

Profiles. KSTATUS gives kstatus's verdicts. STRICT, the default, is what a promotion gate needs:
it refuses kstatus's false positives and fails fast where waiting can only end in a timeout.

    object                                          KSTATUS       STRICT
    Job started, no Complete condition yet          Current       InProgress
    Pod in phase Failed                             Current       Failed
    LoadBalancer Service without ingress            Current       InProgress
    custom resource reporting conditions, no Ready  Current       InProgress
    Ready condition older than metadata.generation  Current       InProgress
    PodDisruptionBudget without status yet (any
      kind whose controller always reports
      status.observedGeneration, when missing)      Current       InProgress
    StatefulSet with OnDelete updates, pods unready Current       InProgress
    Ready=False whose reason contains Fail or Error InProgress    Failed
    container waiting in ImagePullBackOff,
      ErrImagePull or CreateContainerConfigError    InProgress    Failed
    Pod PodScheduled=False, reason Unschedulable    InProgress    Failed

kstatus itself reports an Unschedulable pod Failed once it is 15 seconds old; this module has no
clock, so KSTATUS gives the verdict of that first window. kstatus has no Namespace rule; the one
here (phase Active, or Terminating) agrees with it on every namespace the API server returns.
A custom resource is a kind whose API group follows the naming convention for add-ons: it has a
dot and does not end in `.k8s.io` (or ends in `.x-k8s.io`). So the few add-on APIs published under
`.k8s.io` (the Gateway API, volume snapshots) count as built-in: without a Ready condition they
are Current, as kstatus has it. STRICT asks a custom resource for a Ready condition only when it
reports conditions at all (a `status.conditions` list, even empty): many custom resources have no
controller writing their status (Prometheus' ServiceMonitor, Istio's VirtualService, operators'
configuration resources), and waiting for one would only end at the timeout. A controller that
reports status.observedGeneration is still waited for until it has seen the latest generation.

A Deployment's status does not show why its pods do not become available; for that, give its pods
to `deployment_failure_from_pods`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard

from conveyor.cluster.health_rules import NO_RULES, HealthRule, HealthRules, Outcome
from conveyor.kit.syntax import object_path


class State(StrEnum):
    """Where an object stands; only CURRENT lets a promotion go on."""

    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    TERMINATING = "Terminating"


class Profile(StrEnum):
    """Which verdicts to give: kstatus's, or a promotion gate's (see the module docstring)."""

    KSTATUS = "kstatus"
    STRICT = "strict"


@dataclass(frozen=True)
class Readiness:
    """A verdict, the short sentence behind it, and the controller's own message if any."""

    state: State
    reason: str
    message: str | None = None


Object = Mapping[str, Any]
_Rule = Callable[[Object, Profile], Readiness]

# Container waiting reasons a rollout does not recover from without a change (STRICT).
_FAILING_WAIT_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}
)
_CRASH_LOOP = frozenset({"CrashLoopBackOff"})
# Kinds whose controller always writes status.observedGeneration: its absence means "not seen".
_REPORTS_OBSERVED_GENERATION = frozenset(
    {
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("policy", "PodDisruptionBudget"),
    }
)
# A Ready=False reason that names a failure (ReconciliationFailed, InstallFailed, ReconcileError).
_FAILURE_REASON = re.compile(r"Fail|Error")
# The progressDeadlineSeconds value the Deployment controller reads as "no deadline".
_NO_PROGRESS_DEADLINE = 2**31 - 1
_RULE_STATES = {
    Outcome.CURRENT: State.CURRENT,
    Outcome.IN_PROGRESS: State.IN_PROGRESS,
    Outcome.FAILED: State.FAILED,
}


def status(
    obj: Object, profile: Profile = Profile.STRICT, rules: HealthRules = NO_RULES
) -> Readiness:
    """The readiness of `obj`, an object as the API server returns it, under `profile`; a rule
    of `rules` for the object's group and kind decides in place of the built-in rules."""
    group, kind = _group_kind(obj)
    deleted = _field(obj, "metadata", "deletionTimestamp")
    if deleted:
        return Readiness(State.TERMINATING, f"being deleted (deletionTimestamp {deleted})")
    lagging = _generation_lag(obj)
    if lagging is not None:
        return lagging
    health_rule = rules.for_object(_text(obj, "apiVersion"), kind)
    if health_rule is not None:
        return _by_health_rule(health_rule, obj)
    verdict = _unreported_generation(obj, (group, kind), profile) or _reconciling_or_stalled(obj)
    if verdict is not None:
        return verdict
    rule = _RULES.get((group, kind))
    if rule is not None:
        return rule(obj, profile)
    ready = _ready_condition(obj, profile)
    if ready is not None:
        return ready
    return _without_ready_condition(obj, group, kind or "object", profile)


def deployment_failure_from_pods(deployment: Object, pods: Iterable[Object]) -> Readiness | None:
    """Failed if one of a Deployment's pods cannot start without a change, else None.

    `pods` are the Deployment's pods (those its spec.selector selects). A pod cannot start when
    the scheduler finds no node for it (PodScheduled=False, reason Unschedulable) or a container
    waits in CrashLoopBackOff, ImagePullBackOff, ErrImagePull or CreateContainerConfigError.
    Pods being deleted are ignored: they belong to a rollout that is already over. The reason
    names the first failing pod by name; the message counts them.
    """
    live = [pod for pod in pods if not _field(pod, "metadata", "deletionTimestamp")]
    live.sort(key=lambda pod: _text(pod, "metadata", "name"))
    problems = [problem for pod in live if (problem := _pod_problem(pod)) is not None]
    if not problems:
        return None
    name = _text(deployment, "metadata", "name")
    return Readiness(
        State.FAILED,
        problems[0],
        f"{len(problems)} of {len(live)} pods of Deployment {name} cannot start",
    )


def summarize(readinesses: Mapping[str, Readiness]) -> tuple[int, int, list[str]]:
    """(how many are Current, how many in all, sorted "key: reason" for the others).

    Keys are the objects' `object_key`s, so a line reads "Deployment/shop/web: 2/3 replicas
    available".
    """
    waiting = sorted(
        f"{key}: {readiness.reason}"
        for key, readiness in readinesses.items()
        if readiness.state is not State.CURRENT
    )
    return len(readinesses) - len(waiting), len(readinesses), waiting


def object_key(obj: Object) -> str:
    """The key `summarize` expects: `Kind/namespace/name`, or `Kind/name` if cluster-scoped."""
    namespace = _text(obj, "metadata", "namespace")
    return object_path(_text(obj, "kind"), namespace, _text(obj, "metadata", "name"))


# Reading plain JSON objects, tolerating missing or mistyped fields.


def _field(obj: Object, *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _int_or_none(obj: Object, *path: str) -> int | None:
    value = _field(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(obj: Object, *path: str, default: int = 0) -> int:
    value = _int_or_none(obj, *path)
    return default if value is None else value


def _text(obj: Object, *path: str) -> str:
    value = _field(obj, *path)
    return value if isinstance(value, str) else ""


def _group_kind(obj: Object) -> tuple[str, str]:
    api_version = _text(obj, "apiVersion")
    group = api_version.rpartition("/")[0]
    return group, _text(obj, "kind")


def _is_custom(group: str) -> bool:
    builtin = "." not in group or (group.endswith(".k8s.io") and not group.endswith(".x-k8s.io"))
    return not builtin


def _conditions(obj: Object) -> list[Object]:
    items = _field(obj, "status", "conditions")
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping)]


def _condition(obj: Object, kind: str) -> Object | None:
    return next((c for c in _conditions(obj) if c.get("type") == kind), None)


def _is_true(condition: Object | None) -> TypeGuard[Object]:
    return condition is not None and condition.get("status") == "True"


def _describe(condition: Object) -> str:
    """The condition as kubectl shows it: `Type=Status: Reason`."""
    text = f"{condition.get('type')}={condition.get('status')}"
    reason = condition.get("reason")
    return f"{text}: {reason}" if reason else text


def _message(condition: Object) -> str | None:
    message = condition.get("message")
    return message if isinstance(message, str) and message else None


def _from_condition(state: State, condition: Object) -> Readiness:
    return Readiness(state, _describe(condition), _message(condition))


def _waiting_for(condition: Object | None, kind: str) -> Readiness:
    """InProgress because condition `kind` is missing or not True."""
    if condition is None:
        return Readiness(State.IN_PROGRESS, f"{kind} condition not reported yet")
    return _from_condition(State.IN_PROGRESS, condition)


def _in_progress(reason: str) -> Readiness:
    return Readiness(State.IN_PROGRESS, reason)


def _first_shortfall(*steps: tuple[bool, str]) -> Readiness | None:
    """InProgress for the first of a rollout's (still short, reason) steps that is short, in
    the order given; None when none is."""
    return next((_in_progress(reason) for short, reason in steps if short), None)


def _count_below(
    obj: Object, want: int, noun: str, counts: Iterable[tuple[str, str]]
) -> Readiness | None:
    """InProgress for the first of the status `counts` (field, what) below `want`, saying
    `count/want <noun> <what>`; None when none is."""
    return _first_shortfall(
        *(
            (count < want, f"{count}/{want} {noun} {what}")
            for count, what in ((_int(obj, "status", field), what) for field, what in counts)
        )
    )


# Generic rules, before the kind's own.


def _generation_lag(obj: Object) -> Readiness | None:
    """InProgress if status.observedGeneration is reported and not metadata.generation."""
    observed = _int_or_none(obj, "status", "observedGeneration")
    generation = _int_or_none(obj, "metadata", "generation")
    if observed is None or generation is None or generation == observed:
        return None
    return _in_progress(
        f"generation {generation} not observed yet (status.observedGeneration is {observed})"
    )


def _unreported_generation(
    obj: Object, group_kind: tuple[str, str], profile: Profile
) -> Readiness | None:
    """InProgress if a kind whose controller always reports observedGeneration has not yet."""
    if _int_or_none(obj, "status", "observedGeneration") is not None:
        return None
    must_report = group_kind == ("apps", "DaemonSet") or (
        profile is Profile.STRICT and group_kind in _REPORTS_OBSERVED_GENERATION
    )
    return _in_progress("status.observedGeneration not reported yet") if must_report else None


def _by_health_rule(rule: HealthRule, obj: Object) -> Readiness:
    verdict = rule.evaluate(obj)
    return Readiness(_RULE_STATES[verdict.outcome], verdict.reason)


def _without_ready_condition(obj: Object, group: str, kind: str, profile: Profile) -> Readiness:
    """Custom resources reporting conditions wait for Ready in STRICT; the rest are Current."""
    reported = _field(obj, "status", "conditions")
    if isinstance(reported, list):
        if profile is Profile.STRICT and _is_custom(group):
            return _in_progress("Ready condition not reported yet")
        return Readiness(State.CURRENT, f"{kind} has no Ready condition")
    if isinstance(_field(obj, "status"), Mapping):
        return Readiness(State.CURRENT, f"{kind} reports no conditions to wait for")
    return Readiness(State.CURRENT, f"{kind} has no status to wait for")


def _reconciling_or_stalled(obj: Object) -> Readiness | None:
    for condition in _conditions(obj):
        if not _is_true(condition):
            continue
        if condition.get("type") == "Reconciling":
            return _from_condition(State.IN_PROGRESS, condition)
        if condition.get("type") == "Stalled":
            return _from_condition(State.FAILED, condition)
    return None


def _ready_condition(obj: Object, profile: Profile) -> Readiness | None:
    ready = _condition(obj, "Ready")
    if ready is None:
        return None
    if profile is Profile.STRICT:
        seen = ready.get("observedGeneration")
        generation = _int_or_none(obj, "metadata", "generation")
        if isinstance(seen, int) and generation is not None and seen < generation:
            return _in_progress(
                f"Ready condition is from generation {seen}; generation {generation} "
                "not reported yet"
            )
    if _is_true(ready):
        return _from_condition(State.CURRENT, ready)
    reason = ready.get("reason")
    if (
        profile is Profile.STRICT
        and ready.get("status") == "False"
        and isinstance(reason, str)
        and _FAILURE_REASON.search(reason)
    ):
        return _from_condition(State.FAILED, ready)
    return _from_condition(State.IN_PROGRESS, ready)


# The kinds' own rules.


def _deployment(obj: Object, profile: Profile) -> Readiness:
    """Replicas created, updated, old ones gone, available, ready; then its conditions."""
    progressing = _condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return _from_condition(State.FAILED, progressing)
    want = _int(obj, "spec", "replicas", default=1)
    replicas = _int(obj, "status", "replicas")
    updated = _int(obj, "status", "updatedReplicas")
    available = _int(obj, "status", "availableReplicas")
    ready = _int(obj, "status", "readyReplicas")
    rolling = _first_shortfall(
        (replicas < want, f"{replicas}/{want} replicas created"),
        (updated < want, f"{updated}/{want} replicas updated"),
        (replicas > want, f"{replicas - want} old replicas still terminating"),
        (available < updated, f"{available}/{updated} replicas available"),
        (ready < want, f"{ready}/{want} replicas ready"),
    )
    if rolling is not None:
        return rolling
    deadline = _int(obj, "spec", "progressDeadlineSeconds", default=_NO_PROGRESS_DEADLINE)
    rolled_out = _is_true(progressing) and progressing.get("reason") == "NewReplicaSetAvailable"
    if deadline != _NO_PROGRESS_DEADLINE and not rolled_out:
        if progressing is None:
            return _in_progress("Progressing condition not reported yet")
        return Readiness(
            State.IN_PROGRESS,
            f"{_describe(progressing)}, not NewReplicaSetAvailable yet",
            _message(progressing),
        )
    available_condition = _condition(obj, "Available")
    if not _is_true(available_condition):
        return _waiting_for(available_condition, "Available")
    return Readiness(State.CURRENT, f"{available}/{want} replicas available")


def _statefulset(obj: Object, profile: Profile) -> Readiness:
    """Replicas created and ready; then updated above the partition, or at the update revision.

    With the OnDelete strategy pods change only when someone deletes them: kstatus calls such a
    StatefulSet Current at once; STRICT still waits for its replicas to be ready.
    """
    on_delete = _text(obj, "spec", "updateStrategy", "type") == "OnDelete"
    if on_delete and profile is Profile.KSTATUS:
        return Readiness(State.CURRENT, "OnDelete update strategy: no rollout to wait for")
    want = _int(obj, "spec", "replicas", default=1)
    replicas = _int(obj, "status", "replicas")
    ready = _int(obj, "status", "readyReplicas")
    rolling = _first_shortfall(
        (replicas < want, f"{replicas}/{want} replicas created"),
        (ready < want, f"{ready}/{want} replicas ready"),
        (replicas > want, f"{replicas - want} extra replicas still terminating"),
    )
    if rolling is not None:
        return rolling
    if on_delete:
        return Readiness(State.CURRENT, f"{ready}/{want} replicas ready (OnDelete updates)")
    updated = _int(obj, "status", "updatedReplicas")
    partition = _int_or_none(obj, "spec", "updateStrategy", "rollingUpdate", "partition")
    if partition is not None:
        target = want - partition
        if updated < target:
            return _in_progress(f"{updated}/{target} replicas updated (partition {partition})")
        return Readiness(State.CURRENT, f"{updated} replicas updated (partition {partition})")
    current = _int(obj, "status", "currentReplicas")
    if current < want:
        return _in_progress(f"{current}/{want} replicas at the current revision")
    current_revision = _text(obj, "status", "currentRevision")
    update_revision = _text(obj, "status", "updateRevision")
    if current_revision != update_revision:
        return _in_progress(
            f"currentRevision {current_revision} has not reached updateRevision {update_revision}"
        )
    return Readiness(State.CURRENT, f"{ready}/{want} replicas ready at the update revision")


def _daemonset(obj: Object, profile: Profile) -> Readiness:
    """Pods scheduled, updated, available and ready on every node that should run one."""
    desired = _int_or_none(obj, "status", "desiredNumberScheduled")
    if desired is None:
        return _in_progress("status.desiredNumberScheduled not reported yet")
    short = _count_below(
        obj,
        desired,
        "pods",
        (
            ("currentNumberScheduled", "scheduled"),
            ("updatedNumberScheduled", "updated"),
            ("numberAvailable", "available"),
            ("numberReady", "ready"),
        ),
    )
    return short or Readiness(State.CURRENT, f"{desired}/{desired} pods available")


def _replicaset(obj: Object, profile: Profile) -> Readiness:
    """No ReplicaFailure; replicas labelled, available and ready; surplus ones gone."""
    failure = _condition(obj, "ReplicaFailure")
    if _is_true(failure):
        return _from_condition(State.IN_PROGRESS, failure)
    want = _int(obj, "spec", "replicas", default=1)
    short = _count_below(
        obj,
        want,
        "replicas",
        (
            ("fullyLabeledReplicas", "fully labelled"),
            ("availableReplicas", "available"),
            ("readyReplicas", "ready"),
        ),
    )
    if short is not None:
        return short
    replicas = _int(obj, "status", "replicas")
    if replicas > want:
        return _in_progress(f"{replicas - want} extra replicas still terminating")
    return Readiness(State.CURRENT, f"{want}/{want} replicas available")


def _job(obj: Object, profile: Profile) -> Readiness:
    """Complete=True is Current, Failed=True is Failed; a suspended Job has nothing to wait for.

    A Job that has started but not completed is Current to kstatus, InProgress in STRICT.
    """
    parallelism = _int(obj, "spec", "parallelism", default=1)
    completions = _int(obj, "spec", "completions", default=parallelism)
    succeeded = _int(obj, "status", "succeeded")
    for condition in _conditions(obj):
        if not _is_true(condition):
            continue
        kind = condition.get("type")
        if kind == "Complete":
            return Readiness(State.CURRENT, f"Complete=True: {succeeded}/{completions} succeeded")
        if kind == "Failed":
            return _from_condition(State.FAILED, condition)
        if kind == "Suspended" and _field(obj, "spec", "suspend") is True:
            return Readiness(State.CURRENT, "suspended (spec.suspend is true)")
    if not _text(obj, "status", "startTime"):
        return _in_progress("not started yet (no status.startTime)")
    counts = (
        f"{succeeded}/{completions} succeeded, {_int(obj, 'status', 'active')} active, "
        f"{_int(obj, 'status', 'failed')} failed"
    )
    if profile is Profile.STRICT:
        return _in_progress(f"Complete condition not reported yet: {counts}")
    return Readiness(State.CURRENT, f"started: {counts}")


def _pod(obj: Object, profile: Profile) -> Readiness:
    """Succeeded, or Running and Ready; a pod that cannot start is Failed.

    kstatus calls a pod in phase Failed Current (it has finished) and, among the reasons a pod
    cannot start, knows only CrashLoopBackOff in a Running pod; STRICT knows them all.
    """
    name = _text(obj, "metadata", "name")
    phase = _text(obj, "status", "phase")
    if phase == "Succeeded":
        return Readiness(State.CURRENT, "phase Succeeded: pod completed")
    if phase == "Failed":
        why = _text(obj, "status", "reason")
        reason = f"pod {name} phase is Failed" + (f": {why}" if why else "")
        message = _text(obj, "status", "message") or None
        if profile is Profile.STRICT:
            return Readiness(State.FAILED, reason, message)
        return Readiness(State.CURRENT, f"{reason} (finished)", message)
    if profile is Profile.STRICT:
        problem = _pod_problem(obj)
        if problem is not None:
            return Readiness(State.FAILED, problem)
    if phase == "Running":
        ready = _condition(obj, "Ready")
        if _is_true(ready):
            return Readiness(State.CURRENT, "phase Running, Ready=True")
        crashing = _waiting_containers(obj, ("containerStatuses",), _CRASH_LOOP)
        if crashing:
            return Readiness(State.FAILED, crashing[0])
        return _waiting_for(ready, "Ready")
    if phase == "Pending":
        scheduled = _condition(obj, "PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            return Readiness(
                State.IN_PROGRESS,
                f"pod {name} not scheduled yet: {_describe(scheduled)}",
                _message(scheduled),
            )
        return _in_progress(f"pod {name} is Pending")
    if not phase:
        return _in_progress("status.phase not reported yet")
    return _in_progress(f"pod {name} phase is {phase}")


def _pod_problem(pod: Object) -> str | None:
    """Why `pod` cannot start without a change (STRICT), or None."""
    name = _text(pod, "metadata", "name")
    scheduled = _condition(pod, "PodScheduled")
    if (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        message = _message(scheduled)
        return f"pod {name} is Unschedulable" + (f": {message}" if message else "")
    waiting = _waiting_containers(
        pod, ("initContainerStatuses", "containerStatuses"), _FAILING_WAIT_REASONS
    )
    return waiting[0] if waiting else None


def _waiting_containers(pod: Object, fields: tuple[str, ...], reasons: frozenset[str]) -> list[str]:
    """A sentence for each container, listed in status `fields`, waiting for one of `reasons`."""
    name = _text(pod, "metadata", "name")
    found: list[str] = []
    for field in fields:
        statuses = _field(pod, "status", field)
        for container in statuses if isinstance(statuses, list) else []:
            if not isinstance(container, Mapping):
                continue
            reason = _text(container, "state", "waiting", "reason")
            if reason in reasons:
                message = _text(container, "state", "waiting", "message")
                found.append(
                    f"pod {name} container {_text(container, 'name')} is in {reason}"
                    + (f": {message}" if message else "")
                )
    return found


def _persistent_volume_claim(obj: Object, profile: Profile) -> Readiness:
    """Bound to a volume."""
    phase = _text(obj, "status", "phase")
    if phase == "Bound":
        return Readiness(State.CURRENT, "phase Bound")
    if not phase:
        return _in_progress("status.phase not reported yet, not Bound")
    return _in_progress(f"phase {phase}, not Bound")


def _service(obj: Object, profile: Profile) -> Readiness:
    """A LoadBalancer needs a cluster IP; in STRICT, also an ingress point from its provider."""
    service_type = _text(obj, "spec", "type") or "ClusterIP"
    if service_type != "LoadBalancer":
        return Readiness(State.CURRENT, f"type {service_type} has nothing to provision")
    if not _text(obj, "spec", "clusterIP"):
        return _in_progress("spec.clusterIP not assigned yet")
    ingress = _field(obj, "status", "loadBalancer", "ingress")
    if isinstance(ingress, list) and ingress:
        first = ingress[0] if isinstance(ingress[0], Mapping) else {}
        address = _text(first, "ip") or _text(first, "hostname") or "an address"
        return Readiness(State.CURRENT, f"load balancer ingress at {address}")
    if profile is Profile.STRICT:
        return _in_progress("status.loadBalancer.ingress not assigned yet")
    return Readiness(State.CURRENT, "cluster IP assigned (load balancer ingress not checked)")


def _custom_resource_definition(obj: Object, profile: Profile) -> Readiness:
    """Established; NamesAccepted=False, or Established=False other than Installing, fails."""
    names = _condition(obj, "NamesAccepted")
    if names is not None and names.get("status") == "False":
        return _from_condition(State.FAILED, names)
    established = _condition(obj, "Established")
    if _is_true(established):
        return _from_condition(State.CURRENT, established)
    if (
        established is not None
        and established.get("status") == "False"
        and established.get("reason") != "Installing"
    ):
        return _from_condition(State.FAILED, established)
    return _waiting_for(established, "Established")


def _namespace(obj: Object, profile: Profile) -> Readiness:
    """Phase Active; phase Terminating while its contents are deleted."""
    phase = _text(obj, "status", "phase")
    if phase == "Active":
        return Readiness(State.CURRENT, "phase Active")
    if phase == "Terminating":
        return Readiness(State.TERMINATING, "phase Terminating: its objects are being deleted")
    return _in_progress("status.phase not reported yet, not Active")


_RULES: dict[tuple[str, str], _Rule] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("apps", "ReplicaSet"): _replicaset,
    ("batch", "Job"): _job,
    ("", "Pod"): _pod,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "Service"): _service,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _custom_resource_definition,
    ("", "Namespace"): _namespace,
}
