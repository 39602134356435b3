"""One digest on one target, as plain steps: render, apply, wait, gate, and roll back.

The flows compose these steps with Prefect (retries, logs, artifacts, locks); this module holds
what they do, so each step is testable, and usable from the CLI, without an orchestrator.
Each step after the render takes its `render.Rendered`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conveyor.adapters.kube import Kube
from conveyor.bundles import artifact, render
from conveyor.bundles.parameters import restore_sensitive, withhold_sensitive
from conveyor.bundles.render import Rendered
from conveyor.cluster import apply, confinement, drift, gates, wait
from conveyor.cluster.health_rules import NO_RULES, HealthRules
from conveyor.cluster.ordering import ObjectRef
from conveyor.config.model import Target
from conveyor.kit.digests import json_digest
from conveyor.kit.progress import ProgressNote


def parameters_hash(parameters: Mapping[str, Any]) -> str:
    return json_digest(dict(parameters))


def render_loaded(
    loaded: artifact.Loaded,
    *,
    app: str,
    target: str,
    namespace: str,
    parameters: Mapping[str, Any],
    namespaces: Sequence[str] = (),
    cluster_scoped: Sequence[str] = (),
) -> Rendered:
    """`loaded` (a bundle pulled and verified: one load serves every target of it) rendered
    with the target's parameters; `namespaces` and `cluster_scoped` are the target's
    confinement settings: an object outside them is refused here as far as its scope is known
    without a cluster (`confinement.OutsideTarget`), and by the apply in any case."""
    digest = loaded.digest
    resolved = render.resolve_for(loaded.source, parameters, f"parameters of target {target}")
    located = render.render_located(loaded.source, resolved, namespace=namespace)
    objects = [obj for _, obj in located]
    confinement.refuse_outside_rendered(
        objects,
        confinement.Confinement(namespace, tuple(namespaces), tuple(cluster_scoped)),
        target=target,
        origins=[where for where, _ in located],
    )
    return Rendered(
        app=app,
        target=target,
        namespace=namespace,
        digest=digest,
        # As recorded, logged and shown: a sensitive value (writeOnly) only as its hash.
        parameters=withhold_sensitive(loaded.source.spec.parameters, resolved),
        parameters_hash=parameters_hash(resolved),
        rendered_hash=render.rendered_hash(objects, render.renderer_of(loaded.source)),
        objects=objects,
        tests=render.render_tests(loaded.source, resolved),
        origins=tuple(where for where, _ in located),
        namespaces=tuple(namespaces),
        cluster_scoped=tuple(cluster_scoped),
    )


def render_for_target(
    loaded: artifact.Loaded,
    app: str,
    target: Target,
    recorded: Mapping[str, Any] | None = None,
) -> Rendered:
    """`render_loaded` as the configuration places `target`: with its parameters, or, to
    reproduce a recorded state, with the `recorded` ones (a sensitive value, recorded as its
    hash only, comes from the target's configuration, which must still hash the same)."""
    parameters = (
        target.parameters
        if recorded is None
        else restore_sensitive(
            recorded, target.parameters, f"recorded parameters of {app}/{target.name}"
        )
    )
    return render_loaded(
        loaded,
        app=app,
        target=target.name,
        namespace=target.namespace,
        parameters=dict(parameters),
        namespaces=target.namespaces,
        cluster_scoped=target.cluster_scoped,
    )


def placement(
    rendered: Rendered, *, force_conflicts: bool = False, prune_definitions: bool = False
) -> apply.Placement:
    """Where `rendered` goes: its app, target and namespace, and how it is applied there."""
    return apply.Placement(
        rendered.app,
        rendered.target,
        rendered.namespace,
        force_conflicts,
        prune_definitions,
        rendered.namespaces,
        rendered.cluster_scoped,
    )


def apply_target(
    kube: Kube,
    rendered: Rendered,
    *,
    force_conflicts: bool = False,
    prune_definitions: bool = False,
    dry_run: bool = False,
    progress: ProgressNote | None = None,
) -> apply.ApplyReport:
    return apply.apply_bundle(
        kube,
        rendered.objects,
        placement(rendered, force_conflicts=force_conflicts, prune_definitions=prune_definitions),
        digest=rendered.digest,
        dry_run=dry_run,
        progress=progress,
        origins=rendered.origins,
    )


def remove_target(kube: Kube, rendered: Rendered) -> list[ObjectRef]:
    """Delete every object the target's inventory holds (a first deploy undone); the namespace
    and objects other targets still ship stay, as with any prune."""
    return apply.prune(kube, [], placement(rendered), digest=rendered.digest)


def wait_target(
    kube: Kube,
    rendered: Rendered,
    *,
    timeout: float,
    rules: HealthRules = NO_RULES,
    progress: wait.ReadinessProgress | None = None,
) -> wait.WaitResult:
    """Watch what `rendered` applied until it is ready; `rules`: the target's health rules."""
    prepared = apply.prepare(kube, rendered.objects, placement(rendered), rendered.digest)
    return wait.wait_ready(kube, prepared, timeout=timeout, rules=rules, on_progress=progress)


def drift_target(kube: Kube, rendered: Rendered) -> list[drift.ObjectDrift]:
    """Fields Conveyor set whose live value differs from `rendered`, and objects deleted out
    of band."""
    prepared = apply.prepare(kube, rendered.objects, placement(rendered), rendered.digest)
    return drift.detect(kube, prepared, app=rendered.app, target=rendered.target)


def soak(
    kube: Kube,
    rendered: Rendered,
    *,
    seconds: float,
    interval: float = 1.0,
    rules: HealthRules = NO_RULES,
) -> gates.GateResult:
    """Readiness must stay green for `seconds`; the first object to slip fails the soak."""
    started = time.monotonic()
    prepared = apply.prepare(kube, rendered.objects, placement(rendered), rendered.digest)
    while True:
        result = wait.wait_ready(kube, prepared, timeout=interval, rules=rules)
        if not result.ready:
            return gates.GateResult(
                "soak",
                False,
                "readiness slipped during the soak: " + wait.describe_failure(result),
                time.monotonic() - started,
            )
        remaining = seconds - (time.monotonic() - started)
        if remaining <= 0:
            return gates.GateResult(
                "soak", True, f"ready for {seconds:.0f}s", time.monotonic() - started
            )
        time.sleep(min(interval, remaining))


def gate_environment(rendered: Rendered, *, stage: str, kubeconfig: Path | None) -> dict[str, str]:
    return gates.command_environment(
        app=rendered.app,
        kubeconfig=kubeconfig,
        namespace=rendered.namespace,
        digest=rendered.digest,
        target=rendered.target,
        stage=stage,
        parameters=rendered.parameters,
    )


def summary(results: Sequence[gates.GateResult]) -> str:
    """One line per gate, for failure messages and reports."""
    return "\n".join(
        f"{'passed' if r.passed else 'FAILED'} {r.name} ({r.duration:.1f}s): {r.reason}"
        for r in results
    )
