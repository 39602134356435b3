"""`conveyor platform up | down | status | env`: the local platform, from the command line."""

from __future__ import annotations

import shlex

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.output import Output, OutputOption, PlatformProgressPrinter, console, print_json
from conveyor.platform.local import EMBEDDED, PROFILES, LocalPlatform
from conveyor.platform.service import Health, describe

app = typer.Typer(help="Run the local platform: Kubernetes (KWOK), an OCI registry, Prefect.")


def _show(platform: LocalPlatform, healths: list[Health], output: Output) -> None:
    if output is Output.json:
        print_json(
            {
                "state": str(platform.state),
                "profile": platform.profile,
                "components": [describe(h) for h in healths],
                "environment": platform.environment(),
            }
        )
        return
    profile = "" if platform.profile == EMBEDDED else f", profile {platform.profile}"
    table = Table(title=f"Local platform ({platform.state}{profile})")
    for column in ("component", "health", "address", "processes", "detail"):
        table.add_column(column)
    for health in healths:
        dead = sorted(name for name, pid in health.processes.items() if pid is None)
        alive = len(health.processes) - len(dead)
        processes = f"{alive} running" + (f", dead: {', '.join(dead)}" if dead else "")
        verdict = Text("healthy", style="green") if health.healthy else Text("down", style="red")
        table.add_row(
            Text(health.component),
            verdict,
            Text(health.address),
            Text(processes),
            Text(health.detail),
        )
    console.print(table)


@app.command()
def up(
    clusters: int | None = typer.Option(
        None,
        min=1,
        max=9,
        help="KWOK clusters to run, on the first start [default: 2]; recorded afterwards",
    ),
    profile: str | None = typer.Option(
        None,
        help=f"{' or '.join(PROFILES)}: one Prefect server on SQLite (the default), or PostgreSQL, "
        "Redis, Prefect's API and services apart and process workers running "
        "deployments/prefect.yaml; recorded, so later commands use it",
    ),
    output: Output = OutputOption,
) -> None:
    """Start every component that is not healthy (builds binaries on first use) and show status."""
    platform = LocalPlatform(clusters=clusters, profile=profile)
    healths = platform.up(progress=PlatformProgressPrinter())
    _show(platform, healths, output)
    if output is Output.table:
        console.print('Use it from a shell with:  eval "$(conveyor platform env)"')


@app.command()
def down(
    purge: bool = typer.Option(False, help="also delete the cluster, registry and Prefect data"),
) -> None:
    """Stop the platform's own processes (by pid); keep its data unless --purge."""
    platform = LocalPlatform()
    platform.down(purge=purge)
    console.print("platform stopped" + (" and its state deleted" if purge else ""))


@app.command()
def status(output: Output = OutputOption) -> None:
    """Show each component with its address, processes and health; exit 1 if any is down."""
    platform = LocalPlatform()
    healths = platform.status()
    _show(platform, healths, output)
    if not all(health.healthy for health in healths):
        raise typer.Exit(1)


@app.command()
def env(output: Output = OutputOption) -> None:
    """Print shell exports (KUBECONFIG, CONVEYOR_KUBECONFIG_2, CONVEYOR_REGISTRY,
    CONVEYOR_IMAGE_MIRRORS, CONVEYOR_KUBECTL, CONVEYOR_HELM, PREFECT_API_URL,
    PREFECT_API_AUTH_STRING) for the platform."""
    environment = LocalPlatform().environment()
    if output is Output.json:
        print_json(environment)
        return
    for name, value in environment.items():
        typer.echo(f"export {name}={shlex.quote(value)}")
