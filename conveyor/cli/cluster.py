"""`conveyor apply | wait | diff --live | prune`: one bundle against one target, by hand.

Each command stands alone with a kubeconfig (no pipeline needed): the bundle comes from a store by
digest or tag, parameters from files and --set, and the target is named by --app, --target and
--namespace. The kubeconfig's credentials are never printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from conveyor.adapters.kube import Kube
from conveyor.bundles import render
from conveyor.cli.bundle import REFERENCE_HELP, StoreOption, collect_values, load_reference
from conveyor.cli.output import Output, OutputOption, add_row, console, note, print_json, say
from conveyor.cluster import apply, drift, wait
from conveyor.errors import InputError

KubeconfigOption = typer.Option(
    None, "--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file [env: KUBECONFIG]"
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context")
AppOption = typer.Option(..., "--app", help="app name (labels and inventory)")
TargetOption = typer.Option(..., "--target", help="target name (labels and inventory)")
NamespaceOption = typer.Option(..., "--namespace", "-n", help="target namespace")
ValuesOption = typer.Option([], "--values", "-f", help="parameter file (repeatable)")
SetOption = typer.Option([], "--set", help="name=value (repeatable, wins over files)")
TimeoutOption = typer.Option(300.0, "--timeout", help="seconds to wait for readiness")
AllowNamespaceOption = typer.Option(
    [], "--allow-namespace", help="another namespace the bundle may write to (repeatable)"
)
AllowClusterScopedOption = typer.Option(
    [],
    "--allow-cluster-scoped",
    help="a cluster-scoped kind the bundle may apply beyond CustomResourceDefinition, "
    "ClusterRole and its own Namespace: Kind or Kind.group (repeatable)",
)


@dataclass(frozen=True)
class _Prepared:
    digest: str
    objects: list[dict[str, Any]]
    origins: tuple[str, ...]
    """The file each of `objects` came from, for messages."""
    kube: Kube


def _prepared(
    reference: str,
    app: str,
    namespace: str,
    store: str | None,
    values: list[Path],
    set_: list[str],
    kubeconfig: Path | None,
    context: str | None,
) -> _Prepared:
    loaded = load_reference(reference, store, app)
    located = render.render_located(
        loaded.source, collect_values(values, set_), namespace=namespace
    )
    # $KUBECONFIG may list several files; like kubectl's default, use the first.
    first = str(kubeconfig).split(os.pathsep)[0] if kubeconfig else None
    return _Prepared(
        loaded.digest,
        [obj for _, obj in located],
        tuple(where for where, _ in located),
        Kube(Path(first) if first else None, context),
    )


def _wait_progress(ready: int, total: int, waiting: list[str]) -> None:
    detail = (
        f" — waiting for {waiting[0]}"
        + (f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else "")
        if waiting
        else ""
    )
    note(f"ready {ready}/{total}{detail}")


def _wait(
    kube: Kube, objects: list[dict[str, Any]], timeout: float, output: Output
) -> wait.WaitResult:
    result = wait.wait_ready(
        kube,
        objects,
        timeout=timeout,
        on_progress=_wait_progress if output is Output.table else None,
    )
    return result


def _states(result: wait.WaitResult) -> list[dict[str, str]]:
    return [
        {"object": key, "state": r.state.value, "reason": r.reason}
        for key, r in sorted(result.states.items())
    ]


def apply_command(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    app: str = AppOption,
    target: str = TargetOption,
    namespace: str = NamespaceOption,
    store: str | None = StoreOption,
    values: list[Path] = ValuesOption,
    set_: list[str] = SetOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
    force_conflicts: bool = typer.Option(False, help="take over fields other managers own"),
    allow_namespace: list[str] = AllowNamespaceOption,
    allow_cluster_scoped: list[str] = AllowClusterScopedOption,
    prune: bool = typer.Option(True, help="delete objects the bundle no longer has"),
    wait_ready: bool = typer.Option(True, "--wait/--no-wait", help="wait for readiness"),
    timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Server-side apply a bundle to a target, prune, and wait until it is ready. The bundle
    writes only to NAMESPACE and the default cluster-scoped kinds unless --allow-* say more
    (as a target's `namespaces` and `clusterScoped` do in a pipeline)."""
    ready = _prepared(reference, app, namespace, store, values, set_, kubeconfig, context)
    digest, objects, kube = ready.digest, ready.objects, ready.kube
    spec = apply.Placement(
        app,
        target,
        namespace,
        force_conflicts=force_conflicts,
        namespaces=tuple(allow_namespace),
        cluster_scoped=tuple(allow_cluster_scoped),
    )
    report = apply.apply_bundle(
        kube,
        objects,
        spec,
        digest=digest,
        prune=prune,
        progress=note if output is Output.table else None,
        origins=ready.origins,
    )
    result = (
        _wait(kube, apply.prepare(kube, objects, spec, digest), timeout, output)
        if wait_ready
        else None
    )
    if output is Output.json:
        print_json(
            {
                "digest": digest,
                "applied": [str(r) for r in report.applied],
                "pruned": [str(r) for r in report.pruned],
                "notes": report.notes,
                "applySeconds": round(report.elapsed, 3),
                "ready": result.ready if result else None,
                "states": _states(result) if result else [],
            }
        )
    else:
        say(
            f"applied {len(report.applied)} object(s), pruned {len(report.pruned)} "
            f"in {report.elapsed:.2f}s ({digest[:19]})"
        )
        for line in report.notes:
            note(f"warning: {line}")
        if result:
            _print_result(result)
    if result and not result.ready:
        raise typer.Exit(1)


def _print_result(result: wait.WaitResult) -> None:
    if result.ready:
        say(f"ready after {result.elapsed:.2f}s")
        return
    table = Table("object", "state", "reason", title="not ready")
    for row in _states(result):
        if row["state"] != "Current":
            add_row(table, row["object"], row["state"], row["reason"])
    console.print(table)


def wait_command(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    app: str = AppOption,
    target: str = TargetOption,
    namespace: str = NamespaceOption,
    store: str | None = StoreOption,
    values: list[Path] = ValuesOption,
    set_: list[str] = SetOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
    timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Wait (by watching) until the bundle's objects on a target are ready; exit 1 if not."""
    ready = _prepared(reference, app, namespace, store, values, set_, kubeconfig, context)
    digest, objects, kube = ready.digest, ready.objects, ready.kube
    prepared = apply.prepare(kube, objects, apply.Placement(app, target, namespace), digest)
    result = _wait(kube, prepared, timeout, output)
    if output is Output.json:
        print_json(
            {"ready": result.ready, "elapsed": round(result.elapsed, 3), "states": _states(result)}
        )
    else:
        _print_result(result)
    if not result.ready:
        raise typer.Exit(1)


def diff_command(
    arguments: list[str] = typer.Argument(
        ..., help="APP TARGET_A TARGET_B (two targets), or REF with --live (one target's drift)"
    ),
    live: bool = typer.Option(False, "--live", help="compare REF with the cluster"),
    digest: str | None = typer.Option(None, help="APP mode: digest (default: TARGET_A's)"),
    app: str | None = typer.Option(None, "--app", help="--live: app name"),
    target: str | None = typer.Option(None, "--target", help="--live: target name"),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="--live: namespace"),
    store: str | None = StoreOption,
    values: list[Path] = ValuesOption,
    set_: list[str] = SetOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
    config: Path | None = typer.Option(None, "--config", envvar="CONVEYOR_CONFIG"),
    output: Output = OutputOption,
) -> None:
    """What differs: between two targets of an app, or (--live) between a bundle and a cluster."""
    if not live:
        if len(arguments) != 3:
            raise InputError("diff takes APP TARGET_A TARGET_B, or REF --live")
        from conveyor.cli.pipeline import diff_targets

        app_name, target_a, target_b = arguments
        diff_targets(app_name, target_a, target_b, digest, config, output)
        return
    if len(arguments) != 1 or not (app and target and namespace):
        raise InputError("diff --live takes one REF and --app, --target and --namespace")
    _live_diff(
        arguments[0], app, target, namespace, store, values, set_, kubeconfig, context, output
    )


def _live_diff(
    reference: str,
    app: str,
    target: str,
    namespace: str,
    store: str | None,
    values: list[Path],
    set_: list[str],
    kubeconfig: Path | None,
    context: str | None,
    output: Output,
) -> None:
    ready = _prepared(reference, app, namespace, store, values, set_, kubeconfig, context)
    digest, objects, kube = ready.digest, ready.objects, ready.kube
    prepared = apply.prepare(kube, objects, apply.Placement(app, target, namespace), digest)
    found = drift.detect(kube, prepared, app=app, target=target)
    if output is Output.json:
        print_json({"digest": digest, "drift": [d.as_dict() for d in found]})
    elif not found:
        say(f"no drift: {len(prepared)} object(s) match {digest[:19]}")
    else:
        table = Table(*drift.DRIFT_COLUMNS, title=f"drift from {digest[:19]}")
        for row in (row for d in found for row in d.rows()):
            add_row(table, *(row[column] for column in drift.DRIFT_COLUMNS))
        console.print(table)
    if found:
        raise typer.Exit(1)


def prune_command(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    app: str = AppOption,
    target: str = TargetOption,
    namespace: str = NamespaceOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="only show what would be deleted"),
    store: str | None = StoreOption,
    values: list[Path] = ValuesOption,
    set_: list[str] = SetOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
    output: Output = OutputOption,
) -> None:
    """Delete what a target's inventory holds that the bundle no longer has."""
    ready = _prepared(reference, app, namespace, store, values, set_, kubeconfig, context)
    digest, objects, kube = ready.digest, ready.objects, ready.kube
    pruned = apply.prune(
        kube, objects, apply.Placement(app, target, namespace), digest=digest, dry_run=dry_run
    )
    if output is Output.json:
        print_json({"dryRun": dry_run, "pruned": [str(r) for r in pruned]})
        return
    verb = "would delete" if dry_run else "deleted"
    for ref in pruned:
        say(f"{verb} {ref}")
    if not pruned:
        say("nothing to prune")
