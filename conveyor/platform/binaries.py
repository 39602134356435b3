"""Build the local platform's Go binaries once per version and cache them outside the checkout.

No prebuilt Kubernetes, etcd, KWOK or Helm binary can be downloaded here, so each is compiled from
its Go module through the Go module proxy. The build recipes are small Go modules of ours under
`gomod/` (a `tool` block, pinned versions, and for Kubernetes a replace line for every staging
module). A set of binaries lives in `<cache>/bin/<set>-<version>-<recipe hash>/`, written to a
temporary folder first and renamed into place only when complete, so an interrupted build never
leaves a half set behind and a fresh clone on the same machine rebuilds nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import PlatformError
from conveyor.kit.paths import cache_root

RECIPES = Path(__file__).parent / "gomod"

PlatformProgress = Callable[[str, int, int], None]
"""Called as progress(message, done, total) while the platform builds its binaries or starts its
components; total 0 means unknown (`cli.output.PlatformProgressPrinter` shows it)."""


@dataclass(frozen=True)
class BinarySet:
    """Binaries built together from one recipe module, sharing one compilation."""

    name: str
    module: str
    executables: dict[str, str]
    """Executable name -> Go package that builds it."""
    ldflags_version_vars: tuple[str, ...] = ()

    @property
    def recipe(self) -> Path:
        return RECIPES / self.name

    @property
    def version(self) -> str:
        """The version pinned by the recipe's go.mod `require` line for `module`."""
        text = (self.recipe / "go.mod").read_text()
        match = re.search(rf"^(?:require\s+)?\s*{re.escape(self.module)}\s+(v\S+)", text, re.M)
        if not match:
            raise PlatformError(f"{self.recipe / 'go.mod'}: no version pinned for {self.module}")
        return match.group(1)

    def recipe_hash(self) -> str:
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((self.recipe / name).read_bytes())
        digest.update(repr(sorted(self.executables.items())).encode())
        digest.update(" ".join(self.ldflags_version_vars).encode())
        return digest.hexdigest()[:12]


KUBERNETES = BinarySet(
    name="k8s",
    module="k8s.io/kubernetes",
    executables={
        name: f"k8s.io/kubernetes/cmd/{name}"
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    },
    ldflags_version_vars=(
        "k8s.io/component-base/version.gitVersion",
        "k8s.io/client-go/pkg/version.gitVersion",
    ),
)
ETCD = BinarySet(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    executables={"etcd": "go.etcd.io/etcd/server/v3"},
)
KWOK = BinarySet(
    name="kwok",
    module="sigs.k8s.io/kwok",
    executables={name: f"sigs.k8s.io/kwok/cmd/{name}" for name in ("kwok", "kwokctl")},
)
HELM = BinarySet(
    name="helm",
    module="helm.sh/helm/v4",
    executables={"helm": "helm.sh/helm/v4/cmd/helm"},
    ldflags_version_vars=("helm.sh/helm/v4/internal/version.version",),
)


def set_folder(binary_set: BinarySet) -> Path:
    key = f"{binary_set.name}-{binary_set.version}-{binary_set.recipe_hash()}"
    return cache_root() / "bin" / key


def is_built(binary_set: BinarySet) -> bool:
    folder = set_folder(binary_set)
    return all((folder / exe).is_file() for exe in binary_set.executables)


def ensure_built(
    binary_set: BinarySet, progress: PlatformProgress | None = None
) -> dict[str, Path]:
    """Paths of the set's executables, building them first if the cache lacks them."""
    folder = set_folder(binary_set)
    if not is_built(binary_set):
        _build(binary_set, folder, progress)
    return {exe: folder / exe for exe in binary_set.executables}


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise PlatformError(
            "Go toolchain not found on PATH: the platform's binaries are built from Go modules",
            hint="install Go >= 1.26 (the `golang` package or go.dev) and run again",
        )
    return go


def _ldflags(binary_set: BinarySet) -> str:
    version = binary_set.version
    flags = ["-s", "-w"]
    for var in binary_set.ldflags_version_vars:
        flags.append(f"-X {var}={version}")
    if binary_set is KUBERNETES:
        major, minor = version.lstrip("v").split(".")[:2]
        flags += [
            f"-X k8s.io/component-base/version.gitMajor={major}",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
        ]
    return " ".join(flags)


def _build(binary_set: BinarySet, folder: Path, progress: PlatformProgress | None) -> None:
    go = _go()
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log_path = folder.with_name(folder.name + ".build.log")
    label = f"{binary_set.name} {binary_set.version}"

    packages = list(binary_set.executables.values())
    total = _count_packages(go, packages, binary_set.recipe, env)
    # With one package, -o names the file; with several, a folder where Go names each binary
    # after its package's last path element (which is why the executables are named so).
    (only_exe,) = binary_set.executables if len(packages) == 1 else (None,)
    output = f"{staging}/{only_exe}" if only_exe else f"{staging}/"
    command = [
        go,
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        _ldflags(binary_set),
        "-o",
        output,
        *packages,
    ]
    if progress:
        progress(f"building {label} (first time only; Go compiles ~{total} packages)", 0, total)
    done = 0
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            cwd=binary_set.recipe,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            # `go build -v` prints each package's import path as it compiles it.
            if not line.startswith("#") and ": " not in line:
                done += 1
                if progress:
                    progress(f"building {label}", min(done, total), total)
        returncode = proc.wait()
    if returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise PlatformError(
            f"building {label} failed: `{' '.join(command)}` in {binary_set.recipe} "
            f"exited {returncode}; log {log_path}:\n{tail}",
            hint="check that the Go module proxy is reachable and the disk has a few GB free",
        )
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    if progress:
        progress(f"built {label}", total, total)


def _count_packages(go: str, packages: list[str], recipe: Path, env: dict[str, str]) -> int:
    """How many packages the build may compile, for a progress bar; 0 when it cannot be told."""
    result = subprocess.run(
        [go, "list", "-deps", *packages],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return len(result.stdout.splitlines()) if result.returncode == 0 else 0
