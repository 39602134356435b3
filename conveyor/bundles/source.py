"""An app's source: a folder with `bundle.yaml` and `manifests/`, read safely and hashed.

Why: a bundle is built once from its source and then promoted by digest, so what goes into it must
be exactly the regular files of the folder, read in a fixed order, with nothing that could point
outside it (symlinks, devices, `..`) and nothing unboundedly large. `tree_hash` names that content
independently of where it was checked out, its timestamps, modes and owners: "same source tree,
same hash" is how a later build finds and reuses the digest of an earlier one.

bundle.yaml (apiVersion, kind and name are required; unknown fields are refused):

    apiVersion: conveyor.dev/v1alpha1
    kind: Bundle
    name: web                       # a DNS-1123 label
    parameters: {type: object, properties: {...}, required: [...]}   # see schema.py
    tests: [manifests/smoke-job.yaml]   # manifests run as gate Jobs, not applied with the app
    allowPlaintextSecrets: false
    lint:
      accept:                       # lint findings a person judged fine, each with its reason
        - rule: environment-name    # environment-name or plaintext-secret
          file: manifests/issuer.yaml
          path: spec.acme.server    # the field path the finding names
          reason: Let's Encrypt's staging CA, the same for every target
    images: {fields: [...], unpinned: [...]}   # see images.py: images pinned by digest
    kustomize: kustomize/overlay    # a Kustomize overlay, built into manifests/ by the build
    helm: {chart: chart}            # a Helm chart rendered per target (see charts.py)

An acceptance hides exactly the findings of its rule, file and field path (in every document of
that file). Only judgement calls can be accepted: the other rules find manifests that would not
apply or render. An acceptance that matches no finding fails the build (lint.py says why).

Every file under `manifests/` is a `.yaml` or `.yml` manifest. Other files of the folder (a README,
a Kustomize overlay and its bases) are carried along in the bundle. Empty folders are not: a bundle
is a set of files. The build adds two files: images.lock.json (images.py) and, for a source that
names a Kustomize overlay, KUSTOMIZE_OUTPUT, the overlay built by `kubectl kustomize`; for a
chart of a repository, the chart's files under charts.VENDOR_FOLDER. A source may hold none of
them itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, NoReturn

from conveyor.bundles import charts
from conveyor.bundles.charts import HelmChart
from conveyor.bundles.images import (
    LOCK_FILE,
    ImageLock,
    ImageSettings,
    parse_image_settings,
    parse_lock,
)
from conveyor.bundles.schema import ParameterSchema, parse_parameter_schema, show
from conveyor.errors import SourceError
from conveyor.kit.strict_yaml import read_yaml
from conveyor.kit.syntax import DNS_LABEL, DNS_LABEL_RULE

BUNDLE_FILE = "bundle.yaml"
MANIFESTS_DIR = "manifests/"
MANIFEST_SUFFIXES = (".yaml", ".yml")
KUSTOMIZE_OUTPUT = "manifests/kustomize-build.yaml"
"""Where the build writes `kubectl kustomize`'s output for a source with a `kustomize` overlay."""
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
API_VERSION = "conveyor.dev/v1alpha1"
KIND = "Bundle"
DEFAULT_MAX_SOURCE_SIZE = 10 * 1024 * 1024
TREE_HASH_FORMAT = "conveyor.dev/tree/v1"

_BUNDLE_FIELDS = (
    "apiVersion",
    "kind",
    "name",
    "parameters",
    "tests",
    "allowPlaintextSecrets",
    "lint",
    "images",
    "kustomize",
    "helm",
)
_LINT_FIELDS = ("accept",)
_ACCEPT_FIELDS = ("rule", "file", "path", "reason")
ACCEPTABLE_RULES = ("environment-name", "plaintext-secret")
"""Lint rules a person may overrule in bundle.yaml; the others find what cannot be applied."""
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class SourceFile(NamedTuple):
    """One regular file of a source: its relative POSIX path and its bytes."""

    path: str
    content: bytes


@dataclass(frozen=True)
class AcceptedFinding:
    """A lint finding a person judged fine (bundle.yaml `lint.accept`): rule, file, path, why."""

    rule: str
    file: str
    path: str
    reason: str


@dataclass(frozen=True)
class BundleSpec:
    """The validated content of bundle.yaml."""

    name: str
    parameters: ParameterSchema
    tests: tuple[str, ...]
    allow_plaintext_secrets: bool
    accepted_findings: tuple[AcceptedFinding, ...]
    images: ImageSettings = dataclasses.field(default_factory=ImageSettings)
    kustomize: str | None = None
    """The folder of a Kustomize overlay the build renders into KUSTOMIZE_OUTPUT."""
    helm: HelmChart | None = None
    """The Helm chart each target renders (charts.py)."""


@dataclass(frozen=True)
class Source:
    """A checked source: its spec and its files, sorted by path.

    `label` says where it came from (the folder as given, or an artifact reference) and prefixes
    every message about it.
    """

    label: str
    spec: BundleSpec
    files: tuple[SourceFile, ...]
    image_lock: ImageLock | None = None
    """The digests the build pinned (its LOCK_FILE); None for a source not yet built."""

    def where(self, path: str) -> str:
        return f"{self.label}/{path}"

    @property
    def by_path(self) -> dict[str, bytes]:
        """The files as {relative path: bytes}."""
        return {file.path: file.content for file in self.files}

    @property
    def manifests(self) -> tuple[SourceFile, ...]:
        """Every manifest, the app's and the tests', in path order."""
        return tuple(file for file in self.files if file.path.startswith(MANIFESTS_DIR))

    @property
    def app_manifests(self) -> tuple[SourceFile, ...]:
        """The manifests applied with the app: every manifest that is not a test."""
        return tuple(file for file in self.manifests if file.path not in self.spec.tests)

    @property
    def test_manifests(self) -> tuple[SourceFile, ...]:
        """The manifests bundle.yaml lists under `tests`, in path order."""
        return tuple(file for file in self.manifests if file.path in self.spec.tests)


def path_problem(path: str) -> str | None:
    """Why `path` is not a safe relative POSIX path inside a bundle, or None when it is."""
    if not path:
        return "is empty"
    if path.startswith("/"):
        return "is absolute"
    if "\\" in path:
        return "contains a backslash"
    if _CONTROL_CHARACTERS.search(path):
        return "contains a control character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    parts = path.split("/")
    if ".." in parts:
        return "has a '..' component, which would escape the bundle"
    if "." in parts or "" in parts:
        return "is not in normal form (an empty or '.' component)"
    return None


def tree_hash(files: Iterable[SourceFile]) -> str:
    """sha256 of a canonical listing of (path, kind, content sha256): the build-reuse key.

    Paths are sorted, so the order of `files` does not matter; timestamps, modes and owners are
    not part of a source, so they do not count either.
    """
    listing = [
        [file.path, "file", hashlib.sha256(file.content).hexdigest()]
        for file in sorted(files, key=lambda file: file.path)
    ]
    canonical = json.dumps([TREE_HASH_FORMAT, listing], ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_source(folder: str | Path, *, max_size: int = DEFAULT_MAX_SOURCE_SIZE) -> Source:
    """Read and check the source in `folder`; SourceError names the file and field at fault."""
    label = str(Path(folder))
    files = read_tree(folder, max_size=max_size)
    return source_from_files({file.path: file.content for file in files}, label)


def read_tree(folder: str | Path, *, max_size: int = DEFAULT_MAX_SOURCE_SIZE) -> list[SourceFile]:
    """Every regular file under `folder`, sorted by path, at most `max_size` bytes in total.

    Refuses symlinks (they could point outside the folder), FIFOs, sockets and devices.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SourceError(
            f"{root}: not a folder", hint="give the folder that holds bundle.yaml and manifests/"
        )
    files: list[SourceFile] = []
    remaining = max_size
    folders = [""]
    while folders:
        relative_folder = folders.pop()
        try:
            with os.scandir(root / relative_folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            raise SourceError(f"{root / relative_folder}: cannot list: {error.strerror}") from None
        for entry in entries:
            relative = f"{relative_folder}/{entry.name}" if relative_folder else entry.name
            where = f"{root}/{relative}"
            problem = path_problem(relative)
            if problem:
                raise SourceError(f"{where}: the path {problem}", hint="rename it")
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                folders.append(relative)
            elif stat.S_ISREG(mode):
                content = _read_regular_file(entry.path, where, remaining, max_size)
                remaining -= len(content)
                files.append(SourceFile(relative, content))
            else:
                _refuse_file_type(where, mode)
    return sorted(files, key=lambda file: file.path)


def _read_regular_file(path: str, where: str, remaining: int, max_size: int) -> bytes:
    # O_NOFOLLOW and the fstat check close the gap between scanning and opening; O_NONBLOCK keeps
    # a FIFO swapped in meanwhile from blocking the open.
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if not stat.S_ISREG(mode):
                _refuse_file_type(where, mode)
            content = stream.read(remaining + 1)
    except OSError as error:
        raise SourceError(f"{where}: cannot read: {error.strerror}") from None
    if len(content) > remaining:
        raise SourceError(
            f"{where}: the source grows past its size limit of {max_size} bytes here",
            hint="keep large files out of the source folder, or raise the limit",
        )
    return content


def _refuse_file_type(where: str, mode: int) -> NoReturn:
    if stat.S_ISLNK(mode):
        raise SourceError(
            f"{where}: is a symlink; a bundle holds regular files only",
            hint="replace the link with a copy of the file it points to",
        )
    kind = next((kind for is_kind, kind in _SPECIAL_KINDS if is_kind(mode)), "not a regular file")
    raise SourceError(
        f"{where}: is {kind}; a bundle holds regular files only",
        hint="remove it from the source folder",
    )


def source_from_files(files: Mapping[str, bytes], label: str) -> Source:
    """Check a source given as {relative path: bytes} (a folder's files, or an archive's)."""
    for path in files:
        problem = path_problem(path)
        if problem:
            raise SourceError(f"{label}/{path}: the path {problem}")
    if BUNDLE_FILE not in files:
        raise SourceError(
            f"{label}: has no {BUNDLE_FILE}",
            hint="a source folder holds bundle.yaml and manifests/",
        )
    ordered = tuple(SourceFile(path, files[path]) for path in sorted(files))
    manifest_paths = [path for path in sorted(files) if path.startswith(MANIFESTS_DIR)]
    for path in manifest_paths:
        if not path.endswith(MANIFEST_SUFFIXES):
            raise SourceError(
                f"{label}/{path}: not a manifest; only .yaml and .yml files go under manifests/",
                hint="move the file out of manifests/ or rename it",
            )
    where = f"{label}/{BUNDLE_FILE}"
    spec = parse_bundle_spec(files[BUNDLE_FILE], where, manifest_paths)
    if spec.kustomize is not None and spec.helm is not None:
        raise SourceError(
            f"{where}: names both a Kustomize overlay and a Helm chart; a source renders one way",
            hint="keep kustomize or helm",
        )
    if spec.kustomize is not None:
        _check_kustomize(spec.kustomize, files, where)
    elif spec.helm is not None:
        vendored = any(path.startswith(f"{charts.VENDOR_FOLDER}/") for path in files)
        if spec.helm.repository is None or vendored:  # the build vendors a repository's chart
            charts.check_chart(spec.helm, files, where)
    elif not manifest_paths:
        raise SourceError(
            f"{label}: no manifests",
            hint="put the app's .yaml manifests under manifests/, or name a Kustomize overlay "
            "(kustomize: FOLDER) or a Helm chart (helm: {chart: FOLDER}) in bundle.yaml",
        )
    lock = parse_lock(files[LOCK_FILE], f"{label}/{LOCK_FILE}") if LOCK_FILE in files else None
    return Source(label=label, spec=spec, files=ordered, image_lock=lock)


def _check_kustomize(folder: str, files: Mapping[str, bytes], where: str) -> None:
    if not any(f"{folder}/{name}" in files for name in KUSTOMIZATION_FILES):
        raise SourceError(
            f"{where}: kustomize: {folder!r} holds no kustomization.yaml",
            hint="name the folder of the overlay to build, relative to bundle.yaml",
        )
    if folder == MANIFESTS_DIR.rstrip("/") or folder.startswith(MANIFESTS_DIR):
        raise SourceError(
            f"{where}: kustomize: {folder!r} is under manifests/, which holds plain manifests",
            hint="keep the overlay and its bases outside manifests/ (e.g. kustomize/)",
        )


def parse_bundle_spec(data: bytes, where: str, manifest_paths: Iterable[str]) -> BundleSpec:
    """The checked content of bundle.yaml; `manifest_paths` are what `tests` may name."""
    documents = read_yaml(data, where, SourceError)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise SourceError(f"{where}: must hold exactly one YAML mapping")
    raw = documents[0]
    _refuse_unknown_fields(raw, _BUNDLE_FIELDS, where, "")
    for field, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if raw.get(field) != expected:
            raise SourceError(f"{where}: {field}: must be {expected!r}, got {show(raw.get(field))}")
    name = raw.get("name")
    if not isinstance(name, str) or not DNS_LABEL.fullmatch(name):
        raise SourceError(f"{where}: name: must be {DNS_LABEL_RULE}, got {show(name)}")
    allow_plaintext_secrets = raw.get("allowPlaintextSecrets", False)
    if not isinstance(allow_plaintext_secrets, bool):
        raise SourceError(
            f"{where}: allowPlaintextSecrets: must be true or false, "
            f"got {show(allow_plaintext_secrets)}"
        )
    manifests = frozenset(manifest_paths)
    return BundleSpec(
        name=name,
        parameters=parse_parameter_schema(raw.get("parameters"), where),
        tests=_tests(raw.get("tests", []), where, manifests),
        allow_plaintext_secrets=allow_plaintext_secrets,
        accepted_findings=_accepted_findings(raw.get("lint", {}), where, manifests),
        images=parse_image_settings(raw.get("images"), where),
        kustomize=_kustomize_folder(raw.get("kustomize"), where),
        helm=charts.parse_helm(raw.get("helm"), name, where),
    )


def _kustomize_folder(raw: object, where: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise SourceError(f"{where}: kustomize: must be a folder path, got {show(raw)}")
    folder = raw.rstrip("/")
    problem = path_problem(folder)
    if problem:
        raise SourceError(f"{where}: kustomize: the path {raw!r} {problem}")
    return folder


def _tests(raw: object, where: str, manifest_paths: frozenset[str]) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise SourceError(f"{where}: tests: must be a list of manifest paths, got {show(raw)}")
    for index, path in enumerate(raw):
        field = f"tests[{index}]"
        if not isinstance(path, str):
            raise SourceError(f"{where}: {field}: must be a path, got {show(path)}")
        problem = path_problem(path)
        if problem:
            raise SourceError(f"{where}: {field}: the path {path!r} {problem}")
        if path not in manifest_paths:
            raise SourceError(
                f"{where}: {field}: {path!r} is not a manifest of this source",
                hint="tests name files under manifests/, e.g. manifests/smoke-job.yaml",
            )
        if raw.index(path) != index:
            raise SourceError(f"{where}: {field}: {path!r} is listed twice")
    return tuple(sorted(raw))


def _accepted_findings(
    raw: object, where: str, manifest_paths: frozenset[str]
) -> tuple[AcceptedFinding, ...]:
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: lint: must be a mapping (accept: [...]), got {show(raw)}")
    _refuse_unknown_fields(raw, _LINT_FIELDS, where, "lint.")
    accepts = raw.get("accept", [])
    if not isinstance(accepts, list):
        raise SourceError(
            f"{where}: lint.accept: must be a list of {{{', '.join(_ACCEPT_FIELDS)}}}, "
            f"got {show(accepts)}"
        )
    accepted: list[AcceptedFinding] = []
    for index, entry in enumerate(accepts):
        field = f"lint.accept[{index}]"
        finding = _accepted_finding(entry, where, field, manifest_paths)
        if any(
            (earlier.rule, earlier.file, earlier.path) == (finding.rule, finding.file, finding.path)
            for earlier in accepted
        ):
            raise SourceError(
                f"{where}: {field}: {finding.rule} at {finding.file} {finding.path} is "
                "accepted twice",
                hint="keep one entry, with one reason",
            )
        accepted.append(finding)
    return tuple(accepted)


def _accepted_finding(
    entry: object, where: str, field: str, manifest_paths: frozenset[str]
) -> AcceptedFinding:
    if not isinstance(entry, dict):
        raise SourceError(
            f"{where}: {field}: must be a mapping of {', '.join(_ACCEPT_FIELDS)}, got {show(entry)}"
        )
    _refuse_unknown_fields(entry, _ACCEPT_FIELDS, where, f"{field}.")
    for key in _ACCEPT_FIELDS:
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            problem = (
                "is missing"
                if key not in entry
                else f"must be a non-empty string, got {show(value)}"
            )
            raise SourceError(
                f"{where}: {field}.{key}: {problem}",
                hint="an acceptance names the rule, the file, the field path and the reason",
            )
    rule, file, path, reason = (str(entry[key]) for key in _ACCEPT_FIELDS)
    if rule not in ACCEPTABLE_RULES:
        raise SourceError(
            f"{where}: {field}.rule: {rule!r} cannot be accepted; "
            f"acceptable: {', '.join(ACCEPTABLE_RULES)}",
            hint="the other rules find manifests that would not render or apply: fix them",
        )
    if file not in manifest_paths:
        raise SourceError(
            f"{where}: {field}.file: {file!r} is not a manifest of this source",
            hint="name the file as lint reports it, e.g. manifests/ingress.yaml",
        )
    return AcceptedFinding(rule=rule, file=file, path=path, reason=reason.strip())


def _refuse_unknown_fields(
    raw: Mapping[str, object], known: tuple[str, ...], where: str, prefix: str
) -> None:
    for key in raw:
        if key not in known:
            raise SourceError(f"{where}: {prefix}{key}: unknown field; known: {', '.join(known)}")
