"""`conveyor bundle build | push | pull | inspect | render | diff | tag`: bundles by hand.

A store is a registry repository (`127.0.0.1:5000/conveyor/web`) or an OCI layout folder
(`oci:.conveyor/bundles/web`): --store, else $CONVEYOR_STORE, else the store of the app named by
--app, which is where the pipeline keeps that app's bundles (`$CONVEYOR_REGISTRY/conveyor/APP`,
or the layout folder `.conveyor/bundles/APP` without a registry). A bundle is named by a tag or
digest in that store, or by a full reference that carries its own store, as skopeo, oras and flux
take it (`127.0.0.1:5000/conveyor/web@sha256:...`, `...:prod`). Credentials for a registry come
from $CONVEYOR_REGISTRY_USERNAME and $CONVEYOR_REGISTRY_PASSWORD, never from the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from conveyor.adapters import oci
from conveyor.bundles import artifact, charts, compare, render
from conveyor.bundles.parameters import load_values, parse_assignments
from conveyor.bundles.source import DEFAULT_MAX_SOURCE_SIZE, Source
from conveyor.cli.output import Output, OutputOption, add_row, console, note, print_json, say
from conveyor.config.model import bundle_store_location
from conveyor.errors import InputError, IntegrityError
from conveyor.kit.absent import ABSENT

app = typer.Typer(help="Build, inspect, render and move bundles (OCI artifacts).")

StoreOption = typer.Option(
    None,
    "--store",
    "-s",
    help="registry repository or oci:FOLDER [env: CONVEYOR_STORE; default: the --app's store]",
)
REFERENCE_HELP = (
    "tag or digest (sha256:...) in the chosen store, or a full reference: "
    "host[:port]/repo:tag, host[:port]/repo@sha256:..., oci:DIR:tag"
)
AppStoreOption = typer.Option(
    None, "--app", help="without --store: this app's store, where the pipeline keeps its bundles"
)


def open_store(location: str | None, app_name: str | None) -> oci.BundleStore:
    """The store at `location`, else at $CONVEYOR_STORE, else the store of app `app_name` (the
    one the pipeline uses: `bundle_store_location` with $CONVEYOR_REGISTRY)."""
    chosen = location or os.environ.get("CONVEYOR_STORE")
    if not chosen:
        if app_name is None:
            raise InputError(
                "no bundle store given",
                hint="pass --store, set $CONVEYOR_STORE, or name the app (--app) to use its store",
            )
        chosen = bundle_store_location(app_name, os.environ.get("CONVEYOR_REGISTRY", ""))
    return artifact.open_store(chosen)


def locate(reference: str, store: str | None, app_name: str | None) -> tuple[oci.BundleStore, str]:
    """The store and digest `reference` names: a tag or digest in the chosen store (see
    `open_store`), or a full reference (`host[:port]/repo:tag`, `...@sha256:...`, `oci:DIR:tag`)
    whose own store wins over $CONVEYOR_STORE and --app; a --store that names another store is
    refused rather than guessed between."""
    parsed = oci.parse_reference(reference)
    if parsed.location is None:
        opened = open_store(store, app_name)
    else:
        if store and str(oci.parse_location(store)) != str(oci.parse_location(parsed.location)):
            raise InputError(
                f"{reference!r} names the store {parsed.location}, but --store names {store}",
                hint="give the full reference or --store with a tag or digest, not both",
            )
        opened = artifact.open_store(parsed.location)
    return opened, artifact.resolve(opened, parsed)


def load_reference(reference: str, store: str | None, app_name: str | None) -> artifact.Loaded:
    """The verified bundle `reference` names (see `locate`)."""
    return artifact.load(*locate(reference, store, app_name))


@app.command()
def build(
    source: str = typer.Argument(..., help="git repository: a local path or a URL"),
    ref: str = typer.Option("HEAD", help="branch, tag or commit to build"),
    path: str = typer.Option(".", help="folder of the source inside the repository"),
    store: str | None = StoreOption,
    app_name: str | None = AppStoreOption,
    tag: list[str] = typer.Option([], help="also tag the bundle (repeatable)"),
    env_name: list[str] = typer.Option(
        ["dev", "test", "staging", "prod"], help="environment names a manifest must not hard-code"
    ),
    max_size: int = typer.Option(DEFAULT_MAX_SOURCE_SIZE, help="largest source, in bytes"),
    values: list[Path] = typer.Option(
        [],
        "--values",
        "-f",
        help="a target's parameter file (repeatable): the build pins the images each one "
        "renders (default: the bundle's defaults)",
    ),
    output: Output = OutputOption,
) -> None:
    """Build the bundle of SOURCE@REF:PATH, or reuse the one built from the same source tree
    and image digests."""
    target = open_store(store, app_name)
    parameter_sets = (
        {f"parameters of {path}": load_values(path) for path in values}
        if values
        else artifact.DEFAULTS_ONLY
    )
    built = artifact.build(
        source,
        ref,
        path,
        target,
        environment_names=env_name,
        parameter_sets=parameter_sets,
        max_size=max_size,
        tags=tag,
        progress=note,
    )
    if output is Output.json:
        print_json({**built.__dict__, "store": str(target)})
        return
    verb = "reused" if built.reused else f"pushed ({built.size} bytes)"
    say(
        f"{built.name} {built.digest} {verb}\n  store  {target}\n"
        f"  commit {built.commit}\n  tree   {built.tree_hash}"
    )


@app.command()
def inspect(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    store: str | None = StoreOption,
    app_name: str | None = AppStoreOption,
    output: Output = OutputOption,
) -> None:
    """Show a bundle's annotations, files, parameters, pinned and unpinned images and accepted
    lint findings (after verifying every byte)."""
    loaded = load_reference(reference, store, app_name)
    digest, annotations, source = loaded.digest, loaded.annotations, loaded.source
    parameters = [
        {
            "name": p.name,
            "type": p.schema.type,
            "required": p.required,
            "default": p.default,
            "description": p.description,
        }
        for p in source.spec.parameters.parameters
    ]
    files = [{"path": f.path, "size": len(f.content)} for f in source.files]
    accepted = [finding.__dict__ for finding in source.spec.accepted_findings]
    lock = source.image_lock.digests if source.image_lock else {}
    pinned = [{"image": image, "digest": lock[image]} for image in sorted(lock)]
    unpinned = [entry.__dict__ for entry in source.spec.images.unpinned]
    total = sum(len(f.content) for f in source.files)
    chart = _chart_summary(source)
    if output is Output.json:
        print_json(
            {
                "digest": digest,
                "annotations": annotations,
                "helm": chart,
                "parameters": parameters,
                "files": files,
                "tests": list(source.spec.tests),
                "accepted_findings": accepted,
                "images": pinned,
                "unpinned_images": unpinned,
            }
        )
        return
    say(f"{source.spec.name} {digest}")
    for key, value in sorted(annotations.items()):
        say(f"  {key}: {value}")
    if chart:
        say(
            f"Helm chart {chart['name']} {chart['version']} ({chart['origin']}), rendered per "
            f"target; its values.yaml keys are parameters too: {', '.join(chart['values'])}"
        )
    table = Table("parameter", "type", "required", "default", "description")
    for p in parameters:
        add_row(
            table,
            str(p["name"]),
            str(p["type"]),
            "yes" if p["required"] else "",
            json.dumps(p["default"]) if p["default"] is not None else "",
            str(p["description"]),
        )
    console.print(table)
    if pinned or unpinned:
        images_table = Table("image", "runs as")
        for entry in pinned:
            add_row(images_table, entry["image"], entry["digest"])
        for entry in unpinned:
            add_row(
                images_table, f"{entry['repository']} (any tag)", f"unpinned: {entry['reason']}"
            )
        console.print(images_table)
    if accepted:
        findings = Table("accepted rule", "file", "path", "reason")
        for finding in accepted:
            add_row(findings, finding["rule"], finding["file"], finding["path"], finding["reason"])
        console.print(findings)
    say(f"{len(files)} files, {total} bytes; tests: {', '.join(source.spec.tests) or 'none'}")


@app.command()
def pull(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    out: Path = typer.Option(..., "--out", help="empty or new folder to write the source into"),
    store: str | None = StoreOption,
    app_name: str | None = AppStoreOption,
) -> None:
    """Verify a bundle and write its source files into a folder."""
    loaded = load_reference(reference, store, app_name)
    digest, source = loaded.digest, loaded.source
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: not an empty folder; pull writes into an empty or new folder")
    for file in source.files:
        destination = out / file.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(file.content)
    say(f"{digest}: {len(source.files)} files written to {out}")


def collect_values(values_file: list[Path], assignments: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in values_file:
        values.update(load_values(path))
    values.update(parse_assignments(assignments))
    return values


def _chart_summary(source: Source) -> dict[str, Any] | None:
    """The Helm chart a bundle renders: name, version, where it came from, its values' keys."""
    spec = source.spec.helm
    if spec is None:
        return None
    name, version = charts.chart_metadata(spec, source.by_path, source.label)
    values = charts.default_values(spec, source.by_path, source.label)
    return {
        "name": name,
        "version": version,
        "origin": spec.origin,
        "folder": spec.folder,
        "releaseName": spec.release_name,
        "values": sorted(values),
    }


@app.command("render")
def render_command(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    store: str | None = StoreOption,
    app_name: str | None = AppStoreOption,
    values: list[Path] = typer.Option([], "--values", "-f", help="parameter file (repeatable)"),
    set_: list[str] = typer.Option([], "--set", help="name=value (repeatable, wins over files)"),
    tests: bool = typer.Option(False, help="render the test Jobs instead of the app"),
    namespace: str = typer.Option(
        "default", "--namespace", "-n", help="the namespace a Helm chart is rendered for"
    ),
    json_output: bool = typer.Option(False, "--json", help="a JSON list instead of YAML"),
) -> None:
    """Print the bundle's objects rendered with the given parameters (and their hash)."""
    loaded = load_reference(reference, store, app_name)
    digest, source = loaded.digest, loaded.source
    parameters = collect_values(values, set_)
    if tests:
        objects = render.render_tests(source, parameters)
    else:
        objects = render.render(source, parameters, namespace=namespace)
    if json_output:
        print_json(objects)
    else:
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
    note(
        f"rendered {len(objects)} objects from {digest}; "
        f"rendered hash {render.rendered_hash(objects, render.renderer_of(source))}"
    )


@app.command()
def diff(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    a: Path = typer.Option(..., "--a", help="parameter file of the first target"),
    b: Path = typer.Option(..., "--b", help="parameter file of the second target"),
    store: str | None = StoreOption,
    app_name: str | None = AppStoreOption,
    output: Output = OutputOption,
) -> None:
    """What differs between two renders of one bundle: parameters, then rendered fields."""
    loaded = load_reference(reference, store, app_name)
    digest, source = loaded.digest, loaded.source
    result = compare.compare(source, load_values(a), load_values(b), labels=(str(a), str(b)))
    show_comparison(result, digest, (str(a), str(b)), source.spec.name, output)


def show_comparison(
    result: compare.Comparison, digest: str, labels: tuple[str, str], title: str, output: Output
) -> None:
    """Print what differs between two renders: a table, or JSON keyed "a"/"b" plus labels."""
    if output is Output.json:
        print_json(
            {
                "digest": digest,
                "labels": {"a": labels[0], "b": labels[1]},
                "parameters": [
                    {"name": d.name, "a": _plain(d.a), "b": _plain(d.b)} for d in result.parameters
                ],
                "fields": [
                    {"object": d.object, "path": d.path, "a": _plain(d.a), "b": _plain(d.b)}
                    for d in result.fields
                ],
            }
        )
        return
    table = Table("object", "field", *labels, title=f"{title} {digest[:19]}")
    for p in result.parameters:
        add_row(table, "(parameter)", p.name, _show(p.a), _show(p.b))
    for f in result.fields:
        add_row(table, f.object, f.path, _show(f.a), _show(f.b))
    if result.parameters or result.fields:
        console.print(table)
    else:
        say(f"{labels[0]} and {labels[1]} render {digest[:19]} identically")


def _plain(value: Any) -> Any:
    return None if value is ABSENT else value


def _show(value: Any) -> str:
    return "(absent)" if value is ABSENT else json.dumps(value)


@app.command()
def tag(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    new_tag: str = typer.Argument(..., help="tag to point at the bundle (e.g. a stage name)"),
    store: str | None = StoreOption,
    app_name: str | None = AppStoreOption,
) -> None:
    """Point a tag at a bundle: the manifest's exact bytes, nothing re-uploaded."""
    opened, digest = locate(reference, store, app_name)
    opened.tag(digest, new_tag)
    say(f"{new_tag} -> {digest}")


@app.command()
def push(
    reference: str = typer.Argument(..., help=REFERENCE_HELP),
    from_store: str | None = typer.Option(
        None, "--from", help="store to read [env: CONVEYOR_STORE]"
    ),
    app_name: str | None = AppStoreOption,
    to_store: str = typer.Option(..., "--to", help="store to write"),
    tag_: list[str] = typer.Option([], "--tag", help="tag in the destination (repeatable)"),
) -> None:
    """Copy a verified bundle to another store; the digest must come out the same."""
    loaded = load_reference(reference, from_store, app_name)
    digest, annotations = loaded.digest, loaded.annotations
    copied = artifact.open_store(to_store).push(
        loaded.data,
        oci.BundleAnnotations.from_dict(annotations),
        tag_,
    )
    if copied != digest:
        raise IntegrityError(f"copying {digest} to {to_store} produced {copied}")
    say(f"{digest} copied to {to_store}")
