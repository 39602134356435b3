"""Helm-chart sources: what bundle.yaml's `helm` says, and a chart rendered for one target.

Why here and like this: a team with a Helm chart should not have to rewrite it to promote it, and
a promotion must still be "the same bundle, different validated parameters". So the chart goes
into the bundle as files (a chart of the source, or one pulled from a chart repository at build
time, so that the bundle needs no repository afterwards), and each target renders it with
`helm template`, its parameters as the chart's values:

    helm:
      chart: chart                  # a folder of the source holding Chart.yaml
      releaseName: web              # optional; the bundle's name by default

    helm:                           # or a chart from a repository, vendored by the build
      repository: oci://registry.example/charts     # or an https:// chart repository
      chart: metrics-server
      version: 3.12.2               # exact: a rebuild must vendor the same chart

A parameter is either one bundle.yaml declares (checked by its schema, as for manifests) or a
top-level key of the chart's values.yaml; anything else is refused, where Helm would silently
ignore a misspelt value. Helm itself checks the values against the chart's values.schema.json.
The rendered objects are not substituted again (Helm has templated them); their images are pinned
like every other manifest's. Helm's version is part of the rendered hash: the same bundle rendered
by another Helm is another rendering, so an approval of one does not cover the other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.adapters import helm
from conveyor.bundles.schema import show
from conveyor.errors import SourceError
from conveyor.kit.strict_yaml import JsonValue, read_yaml

VENDOR_FOLDER = "helm-vendored"
"""Where the build writes a chart pulled from a repository: `helm-vendored/<chart>/`."""
CHART_FILE = "Chart.yaml"
VALUES_FILE = "values.yaml"
_FIELDS = ("chart", "releaseName", "repository", "version")
_EXACT_VERSION = re.compile(r"v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
_CHART_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?")
_SOURCE_COMMENT = "# Source: "


@dataclass(frozen=True)
class HelmChart:
    """bundle.yaml's `helm`: a chart folder of the source, or a chart of a repository."""

    chart: str
    """The source's chart folder; for a repository's chart, the chart's name."""
    release_name: str
    repository: str | None = None
    version: str | None = None

    @property
    def folder(self) -> str:
        """The chart's folder in the bundle (a repository's chart: where the build put it)."""
        return f"{VENDOR_FOLDER}/{self.chart}" if self.repository else self.chart

    @property
    def origin(self) -> str:
        if self.repository:
            return f"{self.chart} {self.version} from {self.repository}"
        return f"folder {self.chart}"


def parse_helm(raw: object, bundle_name: str, where: str) -> HelmChart | None:
    """The checked `helm` mapping of bundle.yaml (None when it has none)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: helm: must be a mapping, got {show(raw)}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise SourceError(
            f"{where}: helm: unknown field(s) {', '.join(map(repr, unknown))}",
            hint=f"helm takes {', '.join(_FIELDS)}",
        )
    chart, release = raw.get("chart"), raw.get("releaseName", bundle_name)
    if not isinstance(chart, str) or not chart.strip("/"):
        raise SourceError(
            f"{where}: helm.chart: must be a folder or a chart name, got {show(chart)}"
        )
    if not isinstance(release, str) or not _CHART_NAME.fullmatch(release) or len(release) > 53:
        raise SourceError(
            f"{where}: helm.releaseName: must be a DNS-style name of at most 53 characters, "
            f"got {show(release)}"
        )
    repository, version = raw.get("repository"), raw.get("version")
    if repository is None:
        if version is not None:
            raise SourceError(
                f"{where}: helm.version: only a chart from a repository has a version here",
                hint="the chart folder's Chart.yaml says its version; drop helm.version",
            )
        return HelmChart(chart.rstrip("/"), release)
    if not isinstance(repository, str) or not repository.startswith(
        ("oci://", "https://", "http://")
    ):
        raise SourceError(
            f"{where}: helm.repository: must be an oci://, https:// or http:// URL, "
            f"got {show(repository)}"
        )
    if not _CHART_NAME.fullmatch(chart):
        raise SourceError(
            f"{where}: helm.chart: a repository's chart is named, not a path; got {chart!r}"
        )
    if not isinstance(version, str) or not _EXACT_VERSION.fullmatch(version):
        raise SourceError(
            f"{where}: helm.version: must be an exact chart version (like 1.2.3), "
            f"got {show(version)}",
            hint="a range would let a rebuild of the same commit vendor another chart",
        )
    return HelmChart(chart, release, repository, version)


def check_chart(spec: HelmChart, files: Mapping[str, bytes], where: str) -> None:
    """Refuse a chart folder that is not one: no Chart.yaml, or under manifests/."""
    if spec.folder == "manifests" or spec.folder.startswith("manifests/"):
        raise SourceError(
            f"{where}: helm.chart: {spec.folder!r} is under manifests/, which holds plain "
            "manifests",
            hint="keep the chart outside manifests/ (e.g. chart/)",
        )
    if f"{spec.folder}/{CHART_FILE}" not in files:
        if spec.repository:
            raise SourceError(
                f"{where}: helm: the chart {spec.origin} is not in the bundle",
                hint="the build vendors it; build the bundle (`conveyor bundle build`)",
            )
        raise SourceError(
            f"{where}: helm.chart: {spec.folder!r} holds no {CHART_FILE}",
            hint="name the chart's folder, relative to bundle.yaml",
        )


def default_values(spec: HelmChart, files: Mapping[str, bytes], label: str) -> dict[str, JsonValue]:
    """The chart's values.yaml (empty when it has none)."""
    path = f"{spec.folder}/{VALUES_FILE}"
    if path not in files:
        return {}
    documents = read_yaml(files[path], f"{label}/{path}", SourceError)
    if not documents or documents[0] is None:
        return {}
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise SourceError(f"{label}/{path}: must hold one YAML mapping")
    return documents[0]


def chart_metadata(spec: HelmChart, files: Mapping[str, bytes], label: str) -> tuple[str, str]:
    """The chart's name and version, as its Chart.yaml says."""
    path = f"{spec.folder}/{CHART_FILE}"
    documents = read_yaml(files[path], f"{label}/{path}", SourceError)
    chart = documents[0] if documents else None
    if not isinstance(chart, dict):
        raise SourceError(f"{label}/{path}: must hold one YAML mapping")
    return str(chart.get("name", "?")), str(chart.get("version", "?"))


def render(
    spec: HelmChart,
    files: Mapping[str, bytes],
    *,
    label: str,
    namespace: str,
    values: Mapping[str, object],
) -> list[tuple[str, str]]:
    """The chart rendered by `helm template`, cut into its templates: (path in the bundle, the
    YAML Helm made of that template), in Helm's order."""
    check_chart(spec, files, f"{label}/bundle.yaml")
    printed = helm.template(
        files,
        spec.folder,
        release=spec.release_name,
        namespace=namespace,
        values=values,
        where=f"{label}/{spec.folder}",
        helm=helm.helm_path(),
    )
    return split_by_template(printed, spec.folder)


def renderer() -> str:
    """What renders charts, as it goes into the rendered hash: `helm <version>`."""
    path = helm.helm_path()
    return f"helm {helm.version(path)}"


def split_by_template(printed: str, folder: str) -> list[tuple[str, str]]:
    """`helm template`'s output cut at its `# Source: <chart>/<path>` comments into (the
    template's path under `folder`, its text); a template that renders several documents
    stays one piece, so document numbers count within the template."""
    pieces: dict[str, list[str]] = {}
    current = f"{folder}/(rendered)"
    for document in re.split(r"^---[ \t]*$", printed, flags=re.M):
        for line in document.splitlines():
            if line.startswith(_SOURCE_COMMENT):
                # `<chart name>/templates/x.yaml`: the chart's name, not its folder, comes first
                _, _, rest = line[len(_SOURCE_COMMENT) :].strip().partition("/")
                current = f"{folder}/{rest}"
                break
        if document.strip():
            pieces.setdefault(current, []).append(document.strip("\n"))
    return [(path, "\n---\n".join(texts) + "\n") for path, texts in pieces.items()]
