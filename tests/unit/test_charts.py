"""bundle.yaml's `helm`, a chart source's parameters, and Helm's output cut into its templates
(pure: no helm binary)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.adapters import helm
from conveyor.bundles import charts
from conveyor.bundles.charts import HelmChart, parse_helm, split_by_template
from conveyor.bundles.render import rendered_hash, resolve_for
from conveyor.bundles.source import source_from_files
from conveyor.errors import PlatformError, RenderError, SourceError

WHERE = "app/bundle.yaml"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ({"chart": "chart"}, HelmChart("chart", "web")),
        ({"chart": "deploy/chart/", "releaseName": "ledger"}, HelmChart("deploy/chart", "ledger")),
        (
            {"repository": "oci://127.0.0.1:5000/charts", "chart": "rocket", "version": "2.3.0"},
            HelmChart("rocket", "web", "oci://127.0.0.1:5000/charts", "2.3.0"),
        ),
        (
            {"repository": "https://charts.example/", "chart": "ledger", "version": "v1.0.0-rc.1"},
            HelmChart("ledger", "web", "https://charts.example/", "v1.0.0-rc.1"),
        ),
    ],
)
def test_a_helm_mapping_is_read(raw: object, expected: HelmChart | None) -> None:
    assert parse_helm(raw, "web", WHERE) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("chart", "helm: must be a mapping"),
        ({"chart": "chart", "values": {}}, "unknown field(s) 'values'"),
        ({}, "helm.chart: must be a folder or a chart name"),
        ({"chart": "chart", "releaseName": "Web_App"}, "helm.releaseName: must be a DNS-style"),
        ({"chart": "chart", "releaseName": "r" * 54}, "at most 53 characters"),
        ({"chart": "chart", "version": "1.0.0"}, "only a chart from a repository has a version"),
        (
            {"repository": "ftp://charts", "chart": "a", "version": "1.0.0"},
            "helm.repository: must be an oci://",
        ),
        (
            {"repository": "oci://r/charts", "chart": "../a", "version": "1.0.0"},
            "a repository's chart is named, not a path",
        ),
        (
            {"repository": "oci://r/charts", "chart": "a", "version": "^1.0.0"},
            "helm.version: must be an exact chart version",
        ),
        ({"repository": "oci://r/charts", "chart": "a"}, "helm.version: must be an exact"),
    ],
)
def test_a_wrong_helm_mapping_is_refused_naming_the_field(raw: object, message: str) -> None:
    with pytest.raises(SourceError) as raised:
        parse_helm(raw, "web", WHERE)
    assert raised.value.message.startswith(f"{WHERE}: helm")
    assert message in raised.value.message


def test_a_repository_chart_lives_in_the_vendored_folder() -> None:
    chart = HelmChart("rocket", "web", "oci://r/charts", "2.3.0")
    assert chart.folder == f"{charts.VENDOR_FOLDER}/rocket"
    assert chart.origin == "rocket 2.3.0 from oci://r/charts"


def _files(bundle: str, **extra: str) -> dict[str, bytes]:
    files = {"bundle.yaml": bundle.encode()}
    files.update({path.replace("__", "/"): text.encode() for path, text in extra.items()})
    return files


BUNDLE = "apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: web\n"


@pytest.mark.parametrize(
    ("bundle", "files", "message"),
    [
        (BUNDLE + "helm: {chart: chart}\n", {}, "'chart' holds no Chart.yaml"),
        (
            BUNDLE + "helm: {chart: manifests/chart}\n",
            {"manifests__chart__Chart.yaml": "name: a\n"},
            "is under manifests/",
        ),
        (
            BUNDLE + "helm: {chart: chart}\nkustomize: k\n",
            {"chart__Chart.yaml": "name: a\n", "k__kustomization.yaml": "{}\n"},
            "names both a Kustomize overlay and a Helm chart",
        ),
    ],
)
def test_a_chart_source_that_cannot_render_is_refused(
    bundle: str, files: dict[str, str], message: str
) -> None:
    with pytest.raises(SourceError) as raised:
        source_from_files(_files(bundle, **files), "app")
    assert message in raised.value.message


def test_a_repository_chart_not_yet_vendored_is_a_source_and_needs_no_manifests() -> None:
    bundle = BUNDLE + "helm: {repository: oci://r/c, chart: rocket, version: 1.0.0}\n"
    source = source_from_files(_files(bundle), "app")
    assert source.spec.helm is not None and source.manifests == ()


CHART_SOURCE = _files(
    BUNDLE
    + "helm: {chart: chart}\n"
    + "parameters: {type: object, properties: {tier: {type: string, default: gold}}}\n",
    **{
        "chart__Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        "chart__values.yaml": "replicas: 1\nimage: {repository: a, tag: b}\n",
    },
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"tier": "gold"}),
        ({"replicas": 3}, {"tier": "gold", "replicas": 3}),
        ({"image": {"tag": "c"}, "tier": "iron"}, {"tier": "iron", "image": {"tag": "c"}}),
    ],
)
def test_a_chart_takes_its_values_and_the_declared_parameters(
    given: dict[str, object], expected: dict[str, object]
) -> None:
    source = source_from_files(CHART_SOURCE, "app")
    assert resolve_for(source, given, "target dev") == expected


def test_a_misspelt_value_is_refused_where_helm_would_ignore_it() -> None:
    source = source_from_files(CHART_SOURCE, "app")
    with pytest.raises(RenderError) as raised:
        resolve_for(source, {"replicaCount": 3}, "target dev")
    assert "target dev: unknown parameter(s) 'replicaCount'" in raised.value.message
    assert "the chart's values.yaml has: image, replicas" in raised.value.message


def test_helm_output_is_cut_into_its_templates() -> None:
    printed = (
        "---\n# Source: web-chart/templates/configmap.yaml\nkind: ConfigMap\n"
        "---\n# Source: web-chart/templates/two.yaml\nkind: A\n"
        "---\n# Source: web-chart/templates/two.yaml\nkind: B\n"
        "---\n# Source: web-chart/charts/db/templates/db.yaml\nkind: StatefulSet\n"
        "---\n"
    )
    pieces = split_by_template(printed, "chart")
    assert [path for path, _ in pieces] == [
        "chart/templates/configmap.yaml",
        "chart/templates/two.yaml",
        "chart/charts/db/templates/db.yaml",
    ]
    two = pieces[1][1]
    assert two.count("---") == 1 and "kind: A" in two and "kind: B" in two


def test_the_renderer_is_part_of_the_rendered_hash() -> None:
    objects = [{"kind": "ConfigMap", "metadata": {"name": "web"}}]
    plain, by_helm = rendered_hash(objects), rendered_hash(objects, "helm v4.3.2")
    assert plain != by_helm != rendered_hash(objects, "helm v4.3.3")
    assert plain == rendered_hash(list(objects)), "manifests alone hash as before"


def test_no_helm_to_run_is_a_platform_error_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_executable = tmp_path / "helm"
    not_executable.write_text("")
    monkeypatch.setenv("CONVEYOR_HELM", str(not_executable))
    with pytest.raises(PlatformError) as raised:
        helm.helm_path()
    assert raised.value.message == f"rendering a Helm chart: no helm to run ({not_executable})"
    assert "set CONVEYOR_HELM" in (raised.value.hint or "")
