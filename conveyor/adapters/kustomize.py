"""`kubectl kustomize` over a source's files: how a Kustomize overlay becomes plain manifests.

Why at build time and through kubectl: a bundle holds plain manifests so that every stage renders
the same objects from the same digest, with nothing left to a tool's version at deploy time.
kubectl embeds Kustomize, and the local platform already builds and caches kubectl by version,
so no second binary is needed. The overlay is built in a private temporary folder holding only the
source's files (read from git), with the default load restrictions (no file outside that folder)
and a bounded time; its output goes into the bundle, and Flux-style `${name}` placeholders in it
are substituted per target as in any manifest.

Which kubectl: $CONVEYOR_KUBECTL (`conveyor platform env` exports the platform's), else the one
on PATH.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from conveyor.errors import PlatformError, SourceError
from conveyor.kit.paths import executable

TIMEOUT_SECONDS = 60.0
_MAX_OUTPUT_BYTES = 10 * 1024 * 1024


def kubectl_path() -> str:
    """The kubectl to run: $CONVEYOR_KUBECTL, else `kubectl` on PATH; PlatformError when none."""
    return executable("CONVEYOR_KUBECTL", "kubectl", "building a Kustomize overlay")


def build(files: Mapping[str, bytes], overlay: str, where: str, kubectl: str) -> bytes:
    """The manifests `kubectl kustomize <overlay>` prints for the source `files` ({relative
    path: bytes}); SourceError naming `where` (bundle.yaml's field) with kubectl's message when
    the overlay does not build."""
    with tempfile.TemporaryDirectory(prefix="conveyor-kustomize-") as folder:
        root = Path(folder)
        for path, content in files.items():
            destination = root / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(content)
        try:
            finished = subprocess.run(
                [kubectl, "kustomize", str(root / overlay)],
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                cwd=root,
                env={"PATH": os.environ.get("PATH", ""), "HOME": folder},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SourceError(
                f"{where}: kubectl kustomize {overlay} took over {TIMEOUT_SECONDS:.0f}s",
                hint="a remote base that does not answer? vendor it into the source",
            ) from None
        except OSError as error:
            raise PlatformError(f"kustomize: cannot run {kubectl}: {error.strerror}") from None
    if finished.returncode != 0:
        message = finished.stderr.decode(errors="replace").strip().replace(folder + "/", "")
        raise SourceError(f"{where}: kubectl kustomize {overlay} failed: {message}")
    if len(finished.stdout) > _MAX_OUTPUT_BYTES:
        raise SourceError(f"{where}: kubectl kustomize {overlay} printed over 10 MiB")
    return finished.stdout
