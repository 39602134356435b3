"""The `conveyor` command line: one Typer app, one sub-app per area, one place that maps errors.

Every command prints tables for people and `--output json` for scripts. Exit codes come from the
error tree (conveyor.errors): 0 success, 1 a failure we report (a gate, a readiness check),
2 bad input (nothing changed), 3 integrity (content does not match its digest), 4 infrastructure.
"""

from __future__ import annotations

import sys

import typer

from conveyor.cli import bundle, cluster, pipeline, platform
from conveyor.cli.output import fail
from conveyor.errors import ConveyorError

app = typer.Typer(
    name="conveyor",
    help="Promote one immutable bundle of Kubernetes manifests from dev to prod.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(platform.app, name="platform")
app.add_typer(bundle.app, name="bundle")
app.command("apply")(cluster.apply_command)
app.command("wait")(cluster.wait_command)
app.command("diff")(cluster.diff_command)
app.command("prune")(cluster.prune_command)
app.command("release")(pipeline.release)
app.command("promote")(pipeline.promote)
app.command("approve")(pipeline.approve)
app.command("reject")(pipeline.reject)
app.command("rollback")(pipeline.rollback)
app.command("reconcile")(pipeline.reconcile)
app.command("reconcile-cluster")(pipeline.reconcile_cluster)
app.command("status")(pipeline.status)
app.command("stop-the-line")(pipeline.stop_the_line)
app.command("resume-the-line")(pipeline.resume_the_line)
app.command("serve")(pipeline.serve)


def main() -> None:
    """Console-script entry point: run the app and turn Conveyor errors into exit codes."""
    try:
        app()
    except ConveyorError as error:
        fail(str(error))
        sys.exit(error.exit_code)
