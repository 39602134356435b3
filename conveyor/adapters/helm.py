"""The `helm` binary: how a Helm chart is vendored into a bundle and rendered for one target.

Why a binary and not a reimplementation: a chart means what Helm's template engine makes of it,
and only Helm's own code reproduces that (Sprig functions, `lookup`, subcharts, the values
schema). The platform builds Helm from its Go module at a pinned version (platform/binaries.py),
so every worker renders with the same code, and that version is part of the rendered hash.

Each run is shut in: a private temporary folder holding only the chart's files, Helm's cache,
config and data folders inside it, no kubeconfig (rendering never asks a cluster), a bounded time
and a bounded output. Messages name the bundle's files, never the temporary folder.

Which helm: $CONVEYOR_HELM (`conveyor platform env` exports the platform's), else the one on PATH.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from conveyor.errors import PlatformError, RenderError, SourceError
from conveyor.kit.paths import executable

TEMPLATE_TIMEOUT_SECONDS = 60.0
PULL_TIMEOUT_SECONDS = 120.0
_MAX_OUTPUT_BYTES = 20 * 1024 * 1024


def helm_path() -> str:
    """The helm to run: $CONVEYOR_HELM, else `helm` on PATH; PlatformError when there is none."""
    return executable("CONVEYOR_HELM", "helm", "rendering a Helm chart")


@functools.cache
def version(helm: str) -> str:
    """`helm version`'s semantic version (e.g. v4.3.2) of the binary at `helm`."""
    finished = _run([helm, "version", "--template", "{{.Version}}"], Path("/"), 15.0)
    text = finished.stdout.decode(errors="replace").strip()
    if finished.returncode != 0 or not text.startswith("v"):
        raise PlatformError(f"helm: `{helm} version` did not answer with a version: {text!r}")
    return text


def template(
    files: Mapping[str, bytes],
    chart: str,
    *,
    release: str,
    namespace: str,
    values: Mapping[str, object],
    where: str,
    helm: str,
) -> str:
    """What `helm template` prints for the chart in folder `chart` of `files` ({relative path:
    bytes}), as release `release` in `namespace`, with `values` (test hooks left out, CRDs
    included); RenderError naming `where` with Helm's message when the chart does not render
    (a value its values.schema.json refuses, a `required` value left out, a template error)."""
    with tempfile.TemporaryDirectory(prefix="conveyor-helm-") as folder:
        root = Path(folder)
        for path, content in files.items():
            if path == chart or path.startswith(chart + "/"):
                destination = root / "source" / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(content)
        values_file = root / "values.json"
        values_file.write_text(json.dumps(values))
        command = [
            helm,
            "template",
            release,
            str(root / "source" / chart),
            "--namespace",
            namespace,
            "--values",
            str(values_file),
            "--include-crds",
            "--skip-tests",
        ]
        finished = _run(command, root, TEMPLATE_TIMEOUT_SECONDS)
        if finished.returncode != 0:
            message = _message(finished.stderr, root)
            raise RenderError(
                f"{where}: helm template failed: {message}",
                hint="check the target's parameters against the chart's values "
                "(values.yaml, values.schema.json)",
            )
    if len(finished.stdout) > _MAX_OUTPUT_BYTES:
        raise RenderError(f"{where}: helm template printed over 20 MiB")
    return finished.stdout.decode(errors="replace")


def pull(
    repository: str,
    chart: str,
    chart_version: str,
    *,
    where: str,
    helm: str,
    credentials: tuple[str, str] | None = None,
    plain_http: bool = False,
) -> dict[str, bytes]:
    """The files of `chart` at `chart_version` from `repository` (`oci://host/path` or an HTTP
    chart repository's URL), as {path relative to the chart's folder: bytes}; SourceError naming
    `where` when Helm cannot fetch it. `credentials` (username, password) log in to an OCI
    registry first; an HTTP chart repository is read anonymously."""
    with tempfile.TemporaryDirectory(prefix="conveyor-helm-pull-") as folder:
        root = Path(folder)
        unpacked = root / "chart"
        if repository.startswith("oci://"):
            command = [helm, "pull", f"{repository.rstrip('/')}/{chart}"]
            if plain_http:
                command.append("--plain-http")
            if credentials:  # into the private config folder, the password through stdin
                host = repository.removeprefix("oci://").split("/")[0]
                login = [helm, "registry", "login", host, "--username", credentials[0]]
                login += ["--password-stdin"] + (["--plain-http"] if plain_http else [])
                _run(login, root, PULL_TIMEOUT_SECONDS, stdin=credentials[1].encode())
        else:
            command = [helm, "pull", chart, "--repo", repository]
        command += ["--version", chart_version, "--untar", "--untardir", str(unpacked)]
        finished = _run(command, root, PULL_TIMEOUT_SECONDS)
        if finished.returncode != 0:
            raise SourceError(
                f"{where}: helm pull of {chart} {chart_version} from {repository} failed: "
                f"{_message(finished.stderr, root)}",
                hint="check the repository, the chart's name and version, and the registry's "
                "credentials (CONVEYOR_REGISTRY_USERNAME/PASSWORD)",
            )
        folders = [entry for entry in unpacked.iterdir() if entry.is_dir()]
        if len(folders) != 1:
            raise SourceError(f"{where}: helm pull of {chart} gave no single chart folder")
        return {
            str(path.relative_to(folders[0])): path.read_bytes()
            for path in sorted(folders[0].rglob("*"))
            if path.is_file() and not path.is_symlink()
        }


def _run(
    command: list[str], root: Path, timeout: float, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    home = root / "home"
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": os.devnull,
    }
    try:
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=root,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PlatformError(
            f"helm: `{' '.join(command[:2])}` took over {timeout:.0f}s",
            hint="a chart repository that does not answer, or a template that loops?",
        ) from None
    except OSError as error:
        raise PlatformError(f"helm: cannot run {command[0]}: {error.strerror}") from None


def _message(stderr: bytes, root: Path) -> str:
    text = stderr.decode(errors="replace").strip()
    return text.replace(str(root / "source") + "/", "").replace(str(root) + "/", "")[-2000:]
