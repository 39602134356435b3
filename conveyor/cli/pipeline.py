"""`conveyor release | promote | approve | reject | rollback | reconcile | status | serve`.

The path to production from the command line. Flows run where Prefect runs them: through the
served deployments when a Prefect server has them (the run shows in the UI, its logs stream
here), else in a child process (`python -m flows`) against whatever Prefect is configured.
Arguments are validated against the configuration before any run is created.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.table import Table

from conveyor.adapters import sshsig
from conveyor.adapters.prefect_api import (
    PROMOTE_STAGE,
    RECONCILE,
    RECONCILE_CLUSTER,
    RELEASE,
    ROLLBACK,
    SERVED_DEPLOYMENT,
    FlowRun,
    PrefectAPI,
)
from conveyor.bundles import artifact, compare, render
from conveyor.bundles.parameters import restore_sensitive
from conveyor.bundles.source import Source
from conveyor.cli.bundle import show_comparison
from conveyor.cli.output import Output, OutputOption, add_row, console, note, print_json, say
from conveyor.cluster import apply, drift, health
from conveyor.cluster.health_rules import HealthRules
from conveyor.cluster.ordering import ObjectRef
from conveyor.config.binding import check_binding
from conveyor.config.model import App, Config, Target
from conveyor.config.reader import load_config
from conveyor.errors import ConveyorError, InputError
from conveyor.kit.digests import check_digest
from conveyor.kit.paths import state_dir
from conveyor.platform import process
from conveyor.promotion import signatures
from conveyor.records import halt, state

if TYPE_CHECKING:
    from conveyor.adapters import oci
    from conveyor.promotion.context import Connections

ConfigOption = typer.Option(
    None,
    "--config",
    envvar="CONVEYOR_CONFIG",
    help="conveyor.yaml [env: CONVEYOR_CONFIG; default config/conveyor.yaml]",
)
WaitOption = typer.Option(True, "--wait/--no-wait", help="follow the run until it ends")
ApproveAsOption = typer.Option(
    None, help="answer approval pauses as this approver while following (demos, scripts)"
)


@dataclass(frozen=True)
class _Following:
    """How a command runs its flow: whether it follows the run, how it shows it, and what it
    asks of a served run (answering approvals, a repeat-safe key)."""

    wait: bool
    output: Output
    approve_as: str | None = None
    idempotency_key: str | None = None

    def unusable_without_a_served_run(self) -> list[str]:
        """The options given that only a served run can honour."""
        return [
            option
            for option, given in (
                ("--approve-as", self.approve_as is not None),
                ("--idempotency-key", self.idempotency_key is not None),
                ("--no-wait", not self.wait),
                ("--output json", self.output is Output.json),
            )
            if given
        ]


def _run_flow(flow: str, parameters: dict[str, Any], config: Config, how: _Following) -> None:
    """Start `flow` through its served deployment, or in a child process when none is served.

    The run reads the same configuration as this command: the child process gets its path in
    $CONVEYOR_CONFIG; a served deployment must have been served with this very configuration
    (its digest tag, conveyor.config.binding), else the command refuses to start it.
    """
    api = _prefect_api()
    if api is None or not api.is_served(flow, SERVED_DEPLOYMENT):
        _run_in_child_process(flow, parameters, config, api, how)
    else:
        served = api.deployment(flow, SERVED_DEPLOYMENT)
        check_binding(config, served.get("tags") or [], f"{flow}/{SERVED_DEPLOYMENT}")
        _run_served(api, flow, parameters, how)


def _prefect_api() -> PrefectAPI | None:
    """The Prefect server $PREFECT_API_URL names, checked to answer; None when none is named."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    api = PrefectAPI()
    if not api.healthy():
        raise ConveyorError(
            f"the Prefect server at {api.url} does not answer",
            hint="`conveyor platform up` starts the local one",
        )
    return api


def _run_in_child_process(
    flow: str, parameters: dict[str, Any], config: Config, api: PrefectAPI | None, how: _Following
) -> NoReturn:
    unusable = how.unusable_without_a_served_run()
    if unusable:
        raise InputError(
            f"{', '.join(unusable)}: only work through a served {flow}/{SERVED_DEPLOYMENT} "
            "deployment, and none is served; without one the flow runs here, in a child "
            "process, and its output is its log",
            hint="start one with `conveyor serve --background`, or drop those options",
        )
    note(f"no served {flow}/{SERVED_DEPLOYMENT} deployment: running the flow in a child process")
    if api is not None:
        api.ensure_crash_automation()
    completed = subprocess.run(
        [sys.executable, "-m", "flows", flow, json.dumps(parameters)],
        env={**os.environ, "CONVEYOR_CONFIG": str(config.path)},
        check=False,
    )
    raise typer.Exit(completed.returncode)


def _run_served(api: PrefectAPI, flow: str, parameters: dict[str, Any], how: _Following) -> None:
    run = api.create_flow_run(
        flow, SERVED_DEPLOYMENT, parameters, idempotency_key=how.idempotency_key
    )
    url = f"{api.url.removesuffix('/api')}/runs/flow-run/{run.id}"
    if how.output is Output.json and not how.wait:
        print_json({"id": run.id, "name": run.name, "state": run.state_name, "url": url})
        return
    note(f"flow run {run.name}: {url}")
    if not how.wait:
        return
    final = api.follow(
        run.id,
        on_log=_show_log if how.output is Output.table else None,
        on_state=partial(_show_state, api, how.approve_as),
    )
    if how.output is Output.json:
        print_json(
            {
                "id": final.id,
                "name": final.name,
                "state": final.state_name,
                "message": final.message,
            }
        )
    if final.state_type != "COMPLETED":
        if how.output is Output.table:
            say(f"{final.name} ended {final.state_name}: {final.message}")
        raise typer.Exit(final.exit_code)


def _show_state(api: PrefectAPI, approve_as: str | None, current: FlowRun) -> None:
    """Say how a followed run stands; answer its approval pause as `approve_as` if given."""
    paused = current.state_type == "PAUSED"
    if paused and approve_as:
        verdict = api.resume(
            current.id,
            {
                "approve": True,
                "approver": approve_as,
                "reason": "approved up front with --approve-as",
            },
        )
        if not verdict.accepted:
            raise ConveyorError(f"Prefect did not resume {current.name}: {verdict}")
        note(f"{current.name}: paused for approval; approved as {approve_as!r} (--approve-as)")
        return
    hint = " (answer with `conveyor approve` or in the UI)" if paused else ""
    note(f"{current.name}: {current.state_name}{hint}")


def _show_log(line: str) -> None:
    if not line.startswith("Finished in state Completed"):
        say(f"  {line}")


def release(
    app: str = typer.Argument(..., help="app name from conveyor.yaml"),
    ref: str | None = typer.Option(
        None, help="git ref to build [default: the app's source.ref]; must fit source.allowedRefs"
    ),
    image: list[str] = typer.Option(
        [],
        "--image",
        help="REPOSITORY=TAG (repeatable): run this tag of the repository in every stage, "
        "whatever the manifests or parameters name",
    ),
    idempotency_key: str | None = typer.Option(None, help="repeat-safe key for API callers"),
    approve_as: str | None = ApproveAsOption,
    wait: bool = WaitOption,
    config: Path | None = ConfigOption,
    output: Output = OutputOption,
) -> None:
    """Build APP at REF (default: its source.ref) once and carry the digest from the first stage
    to the last."""
    loaded = load_config(config)
    source = loaded.app(app).source
    source.check_ref(ref or source.ref)
    images: dict[str, str] = {}
    for choice in image:
        repository, equals, tag = choice.rpartition("=")
        if not equals or not repository or not tag:
            raise InputError(
                f"--image {choice!r}: not REPOSITORY=TAG",
                hint="e.g. --image registry.example/web=1.2.0",
            )
        images[repository] = tag
    source.check_image_tags(images)
    how = _Following(wait, output, approve_as, idempotency_key)
    parameters: dict[str, object] = {"app": app, "ref": ref}
    if images:
        parameters["images"] = images
    _run_flow(RELEASE, parameters, loaded, how)


def promote(
    app: str = typer.Argument(..., help="app name from conveyor.yaml"),
    stage: str = typer.Argument(..., help="stage to promote into"),
    digest: str = typer.Option(..., help="bundle digest that passed the previous stage"),
    break_glass: str | None = typer.Option(
        None,
        "--break-glass",
        help="REASON: pass the stage's freeze windows; needs an approval, recorded in git",
    ),
    approve_as: str | None = ApproveAsOption,
    sign_with: Path | None = typer.Option(
        None,
        "--sign-with",
        help="KEY: sign the request with this SSH private key, so a stage that forbids the "
        "promoter's approval knows who you are",
    ),
    wait: bool = WaitOption,
    config: Path | None = ConfigOption,
    output: Output = OutputOption,
) -> None:
    """Promote DIGEST into STAGE (policy, approval, targets, soak, evidence)."""
    loaded = load_config(config)
    loaded.app(app).pipeline.stage(stage)
    parameters: dict[str, Any] = {
        "app": app,
        "digest": check_digest(digest, given_as="--digest"),
        "stage": stage,
    }
    if break_glass is not None:
        if not break_glass.strip():
            raise InputError("--break-glass needs a reason: why the freeze may be broken")
        parameters["break_glass"] = break_glass
    if sign_with is not None:
        statement = signatures.request_statement(app, stage, parameters["digest"])
        parameters["request_signature"] = sshsig.sign(statement, sign_with)
    _run_flow(PROMOTE_STAGE, parameters, loaded, _Following(wait, output, approve_as))


def rollback(
    app: str = typer.Argument(...),
    target: str = typer.Argument(...),
    to: str | None = typer.Option(None, help="a digest this target ran before (default: the last)"),
    wait: bool = WaitOption,
    config: Path | None = ConfigOption,
    output: Output = OutputOption,
) -> None:
    """Put the previous (or a named) recorded digest back on TARGET."""
    loaded = load_config(config)
    loaded.app(app).pipeline.target(target)
    parameters = {"app": app, "target": target, "to": to}
    _run_flow(ROLLBACK, parameters, loaded, _Following(wait, output))


def reconcile(
    app: str = typer.Argument(...),
    target: str = typer.Argument(...),
    wait: bool = WaitOption,
    config: Path | None = ConfigOption,
    output: Output = OutputOption,
) -> None:
    """Compare TARGET with its desired state in git now; correct drift if self-heal is on."""
    loaded = load_config(config)
    loaded.app(app).pipeline.target(target)
    parameters = {"app": app, "target": target}
    _run_flow(RECONCILE, parameters, loaded, _Following(wait, output))


def reconcile_cluster(
    cluster: str = typer.Argument(..., help="cluster name from conveyor.yaml"),
    wait: bool = WaitOption,
    config: Path | None = ConfigOption,
    output: Output = OutputOption,
) -> None:
    """Check every target on CLUSTER against git at once (one LIST per kind) and reconcile each
    that drifted: one cycle of the control loop, now."""
    loaded = load_config(config)
    loaded.cluster(cluster)
    _run_flow(RECONCILE_CLUSTER, {"cluster": cluster}, loaded, _Following(wait, output))


_FORM_DIGEST = re.compile(r"Digest: `(sha256:[0-9a-f]{64})`")


def _answer(
    app: str,
    stage: str,
    approve: bool,
    approver: str,
    reason: str,
    config: Path | None,
    digest: str | None,
    signing: _Signing | None = None,
) -> None:
    """Answer the one run waiting for an approval of `stage` (of `digest`, when given), after
    printing the form it shows: the digest, where it was built from, what it changes; with
    `signing`, the answer carries SSH signatures of what the form asks to be signed."""
    load_config(config).app(app).pipeline.stage(stage)
    if not approver.strip():
        raise InputError("--approver is empty: an approval is recorded with who gave it")
    api = PrefectAPI()
    forms = {run: api.pause_form(run) for run in api.awaiting_approval(app, stage)}
    waiting = {
        run: form for run, form in forms.items() if digest is None or _form_digest(form) == digest
    }
    if not waiting:
        raise InputError(
            f"no run of {app} is waiting for an approval of {stage}"
            + (f" of {digest}" if digest else ""),
            hint="`conveyor status` shows what is deployed where",
        )
    if len(waiting) > 1:
        listed = "; ".join(f"{run.name}: {_form_digest(form)}" for run, form in waiting.items())
        raise InputError(
            f"{len(waiting)} runs of {app} wait for an approval of {stage} ({listed})",
            hint="name the one you mean with --digest",
        )
    [(run, form)] = waiting.items()
    say(form.rstrip())
    answer: dict[str, Any] = {"approve": approve, "approver": approver, "reason": reason}
    if signing is not None:
        answer["signatures"] = signing.signatures(app, stage, form)
    verdict = api.resume(run.id, answer)
    if not verdict.accepted:
        raise ConveyorError(f"Prefect did not resume {run.name}: {verdict}")
    shown = _form_digest(form) or "(digest not shown)"
    answered = "approved" if approve else "rejected"
    say(f"{answered} {stage} of {app} ({shown}) in {run.name} as {approver}")


def _form_digest(form: str) -> str | None:
    found = _FORM_DIGEST.search(form)
    return found.group(1) if found else None


@dataclass(frozen=True)
class _Signing:
    """Signatures an approval carries: made now with a key, or made before (files)."""

    key: Path | None
    files: tuple[Path, ...]

    def signatures(self, app: str, stage: str, form: str) -> list[str]:
        digest, rendered_hash = _form_digest(form), signatures.rendered_hash_in(form)
        if digest is None or rendered_hash is None:
            raise InputError(
                f"the run waiting at {stage} asks for no signed approval (its form names no "
                "rendered hash to sign)",
                hint="approve it without --sign-with/--signature",
            )
        made = []
        if self.key is not None:
            statement = signatures.approval_statement(app, stage, digest, rendered_hash)
            made.append(sshsig.sign(statement, self.key))
        for file in self.files:
            try:
                made.append(file.read_text())
            except OSError as error:
                raise InputError(f"--signature {file}: {error.strerror}") from error
        return made


DigestAnswerOption = typer.Option(
    None, "--digest", help="the digest the waiting run promotes (needed when several wait)"
)


def approve(
    app: str = typer.Argument(...),
    stage: str = typer.Argument(...),
    approver: str = typer.Option(getpass.getuser(), help="who approves (recorded in git)"),
    reason: str = typer.Option("", help="why (recorded in git)"),
    digest: str | None = DigestAnswerOption,
    sign_with: Path | None = typer.Option(
        None,
        "--sign-with",
        help="KEY: sign the approval (digest and rendered hash) with this SSH private key, "
        "for stages that require signed approvals",
    ),
    signature: list[Path] = typer.Option(
        [],
        "--signature",
        help="FILE: an armored SSH signature someone made of this approval (repeatable)",
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Approve the run waiting at STAGE: bound to its digest and rendered manifests."""
    signing = _Signing(sign_with, tuple(signature)) if sign_with or signature else None
    _answer(app, stage, True, approver, reason, config, digest, signing)


def reject(
    app: str = typer.Argument(...),
    stage: str = typer.Argument(...),
    reason: str = typer.Option(..., help="why (recorded in git)"),
    approver: str = typer.Option(getpass.getuser(), help="who rejects (recorded in git)"),
    digest: str | None = DigestAnswerOption,
    config: Path | None = ConfigOption,
) -> None:
    """Reject the run waiting at STAGE; it stops and records the rejection."""
    _answer(app, stage, False, approver, reason, config, digest)


def status(
    app: str | None = typer.Argument(None, help="one app (default: all)"),
    config: Path | None = ConfigOption,
    output: Output = OutputOption,
) -> None:
    """Every app and target: desired digest, live health, drift, last promotion."""
    from conveyor.promotion.context import Connections

    loaded = load_config(config)
    connections = Connections()  # one client (and discovery) per cluster
    repo = connections.state_repository(loaded.state_repository)
    stopped = halt.read_halt(repo)
    if stopped is not None:
        note(f"STOPPED: {stopped.explain()}")
    live = _LiveStatus(connections)
    rows: list[dict[str, str]] = []
    for spec in [loaded.app(app)] if app else list(loaded.apps.values()):
        store = connections.store(loaded.store_location(spec.name))
        for target in spec.pipeline.targets():
            desired = state.read_desired(repo, spec.name, target.name)
            row = {
                "app": spec.name,
                "stage": target.stage,
                "target": target.name,
                "cluster": target.cluster.name,
                "digest": desired.digest if desired else "",
                "health": "-",
                "drift": "-",
                "promoted": _promoted(desired),
            }
            if desired:
                row.update(live.judge(store, spec, target, desired))
            rows.append(row)
    if output is Output.json:
        print_json(rows)
        return
    table = Table(
        "app", "stage", "target", "cluster", "digest", "health", "drift", "last promotion"
    )
    for row in rows:
        digest = (row["digest"] or "-")[:19]
        where = (row["app"], row["stage"], row["target"], row["cluster"])
        add_row(table, *where, digest, row["health"], row["drift"], row["promoted"])
    console.print(table)


def stop_the_line(
    reason: str = typer.Option(..., "--reason", help="why every promotion must wait"),
    by: str = typer.Option(getpass.getuser(), "--by", help="who stops it (recorded in git)"),
    config: Path | None = ConfigOption,
) -> None:
    """Halt every promotion of every app (a commit in the state repository) until resumed."""
    from conveyor.promotion.context import Connections

    repo = Connections().state_repository(load_config(config).state_repository)
    commit = halt.stop_the_line(repo, by=by, reason=reason, now=datetime.now(UTC))
    say(f"the line is stopped ({commit[:12]}): no promotion starts or applies until resumed")


def resume_the_line(
    reason: str = typer.Option("", "--reason", help="why promotions may go on"),
    by: str = typer.Option(getpass.getuser(), "--by", help="who resumes it (recorded in git)"),
    config: Path | None = ConfigOption,
) -> None:
    """Lift the halt: promotions go on."""
    from conveyor.promotion.context import Connections

    repo = Connections().state_repository(load_config(config).state_repository)
    commit = halt.resume_the_line(repo, by=by, reason=reason)
    say(f"the line runs again ({commit[:12]})")


class _LiveStatus:
    """The health and drift of targets against their desired state, each digest pulled and
    verified once."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._sources: dict[str, Source] = {}

    def judge(
        self, store: oci.BundleStore, app: App, target: Target, desired: state.DesiredState
    ) -> dict[str, str]:
        """The `health` and `drift` cells of the target's status row."""
        try:
            kube = self._connections.kube(target.cluster)
            key = f"{store}@{desired.digest}"
            if key not in self._sources:
                self._sources[key] = artifact.load(store, desired.digest).source
            parameters = restore_sensitive(
                desired.parameters, target.parameters, f"recorded parameters of {target.name}"
            )
            objects = render.render(self._sources[key], parameters, namespace=target.namespace)
            placement = apply.Placement(app.name, target.name, target.namespace)
            prepared = apply.prepare(kube, objects, placement, desired.digest)
            live = drift.read_live(kube, prepared, app=app.name, target=target.name)
            found = drift.detect(kube, prepared, app=app.name, target=target.name, live=live)
        except ConveyorError as error:
            return {"health": f"unknown: {error.message[:60]}"}
        return {
            "health": _health(prepared, live, target.health_checks),
            "drift": f"{len(found)} object(s)" if found else "none",
        }


def _promoted(desired: state.DesiredState | None) -> str:
    if desired is None:
        return "never"
    return f"{desired.updated_at:%m-%d %H:%M} {desired.promoted_by.removeprefix('flow-run ')}"


def _health(
    prepared: list[dict[str, Any]],
    live: Mapping[ObjectRef, Mapping[str, Any] | None],
    rules: HealthRules,
) -> str:
    states = {}
    for obj in prepared:
        found = live.get(ObjectRef.of(obj))
        states[health.object_key(obj)] = (
            health.status(found, rules=rules)
            if found
            else health.Readiness(health.State.IN_PROGRESS, "not found")
        )
    ready, total, waiting = health.summarize(states)
    return "healthy" if ready == total else f"{ready}/{total} ready: {waiting[0]}"


def diff_targets(
    app: str,
    target_a: str,
    target_b: str,
    digest: str | None,
    config: Path | None,
    output: Output,
) -> None:
    """One digest rendered for two targets: which parameters and rendered fields differ."""
    from conveyor.adapters import gitrepo

    loaded = load_config(config)
    spec = loaded.app(app)
    first, second = spec.pipeline.target(target_a), spec.pipeline.target(target_b)
    if digest is None:
        repo = gitrepo.open_state_repository(loaded.state_repository)
        desired = state.read_desired(repo, app, target_a)
        if desired is None:
            raise InputError(f"{app}/{target_a} has no desired digest yet; pass --digest")
        digest = desired.digest
    source = artifact.load(artifact.open_store(loaded.store_location(app)), digest).source
    result = compare.compare(
        source,
        first.parameters,
        second.parameters,
        labels=(target_a, target_b),
        namespaces=(first.namespace, second.namespace),
    )
    show_comparison(result, digest, (target_a, target_b), app, output)


SERVE_NAME = "serve"


def serve(
    background: bool = typer.Option(False, help="detach; logs in .conveyor/logs/serve.log"),
    stop: bool = typer.Option(False, help="stop a background serve started from here"),
) -> None:
    """Serve every Conveyor deployment (release, promote, reconcile schedules...) to Prefect."""
    pidfile = state_dir() / "run" / "serve.pid"
    logfile = state_dir() / "logs" / "serve.log"
    record = process.read_pidfile(pidfile)
    if stop:
        if record:
            process.stop(record, grace_seconds=15)
        pidfile.unlink(missing_ok=True)
        say("serve stopped")
        return
    command = [sys.executable, "-m", "deployments.serve"]
    environment = {"PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    PrefectAPI()  # a served deployment needs a server to register with
    if not background:
        os.execve(sys.executable, command, {**os.environ, **environment})
    if record and process.is_running(record):
        say(f"already serving (pid {record.pid}); log: {logfile}")
        return
    started = process.spawn(SERVE_NAME, command, pidfile=pidfile, logfile=logfile, env=environment)
    api = PrefectAPI()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if api.is_served(RELEASE, SERVED_DEPLOYMENT):
            say(f"serving Conveyor's deployments (pid {started.pid}); log: {logfile}")
            return
        if not process.is_running(started):
            raise ConveyorError(
                f"serve exited; last lines of {logfile}:\n{process.log_tail(logfile)}"
            )
        time.sleep(0.5)
    raise ConveyorError(f"serve did not register its deployments in 90s; see {logfile}")
