"""Strict parameter substitution: a source plus one target's parameters gives its manifests.

Why: environments may differ only by declared, validated parameters. So rendering refuses what a
text-templating tool lets through: a placeholder the bundle does not declare, a parameter the
bundle does not know, a value its schema forbids, a required parameter left out.

Placeholders use Flux's post-build syntax, `${name}`; `$${name}` writes a literal `${name}`.
Flux's `${name:=default}` forms are refused: defaults live in bundle.yaml's schema. Substitution
works on parsed YAML values, never on raw text, so a value cannot break the document's quoting:

- a plain (unquoted) scalar that is exactly one placeholder takes the parameter's value and type:
  `replicas: ${replicas}` renders the integer 3, `hosts: ${hosts}` a list;
- anywhere else (inside text, in a quoted scalar, in a mapping key) the value becomes text:
  `image: repo:${tag}` and `value: "${port}"` render strings (booleans as true/false). A list
  cannot become text and is refused there.

Objects come out in file path order, then document order; empty documents are skipped. A built
bundle's image references come out pinned to the digests its build resolved (images.py).

A source that is a Helm chart (charts.py) is the exception Conveyor makes for teams who have one:
Helm renders the chart's templates for the target, its parameters as values, and those objects
come first, then the source's own manifests (substituted as above); both are pinned alike.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from yaml.nodes import ScalarNode

from conveyor.bundles import charts, images
from conveyor.bundles.schema import PARAMETER_NAME, ParameterSchema, show, value_problem
from conveyor.bundles.source import Source, SourceFile
from conveyor.errors import ConveyorError, RenderError, SourceError
from conveyor.kit.digests import json_digest
from conveyor.kit.field_paths import FieldPath, field_path
from conveyor.kit.strict_yaml import STR_TAG, JsonValue, StrictLoader, decode_text, load_documents

KubeObject = dict[str, JsonValue]

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_ESCAPE = "$${"


@dataclass(frozen=True)
class Placeholder:
    """A `${name}` in a string."""

    name: str


def parse_template(text: str) -> list[str | Placeholder]:
    """`text` as literal pieces and placeholders, `$${` already turned into `${`.

    Raises ValueError, describing the fault, for a placeholder Conveyor does not support.
    """
    parts: list[str | Placeholder] = []
    literal_start = 0
    for match in _TOKEN.finditer(text):
        parts.append(text[literal_start : match.start()])
        literal_start = match.end()
        if match.group(0) == _ESCAPE:
            parts.append("${")
            continue
        body, closing_brace = match.group(1), match.group(2)
        if not closing_brace:
            raise ValueError(f"the placeholder {text[match.start() :]!r} has no closing '}}'")
        if not PARAMETER_NAME.fullmatch(body):
            raise ValueError(
                f"'${{{body}}}' is not a supported placeholder: only ${{name}} with a name of "
                "letters, digits and '_' (defaults belong in bundle.yaml); "
                "write '$${' for a literal '${'"
            )
        parts.append(Placeholder(body))
    parts.append(text[literal_start:])
    return [part for part in parts if part != ""]


def describe_object(value: object) -> str:
    """'Kind namespace/name' (or 'Kind name') of a manifest, as far as it says."""
    if not isinstance(value, dict):
        return "a non-object document"
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    kind, namespace, name = value.get("kind"), metadata.get("namespace"), metadata.get("name")
    qualified = f"{namespace}/{name}" if namespace else f"{name}"
    return f"{kind or '(no kind)'} {qualified if name else '(no name)'}"


def resolve_parameters(
    schema: ParameterSchema,
    given: Mapping[str, object],
    where: str,
    *,
    chart_values: Collection[str] = (),
) -> dict[str, JsonValue]:
    """The values to render with: `given` checked against `schema`, defaults filled in.

    An optional parameter with neither a value nor a default is left out; a placeholder that
    needs it fails when rendering. A name of `chart_values` (the top-level keys of a Helm
    chart's values.yaml) the schema does not declare passes as given: Helm checks it.
    """
    unknown = sorted(set(given) - set(schema.names) - set(chart_values))
    if unknown:
        declared = ", ".join(schema.names) or "none"
        chart = f"; the chart's values.yaml has: {', '.join(sorted(chart_values))}"
        raise RenderError(
            f"{where}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"the bundle declares: {declared}{chart if chart_values else ''}",
            hint="remove them, or declare them under parameters in bundle.yaml",
        )
    values: dict[str, JsonValue] = {
        name: cast(JsonValue, copy.deepcopy(value))
        for name, value in given.items()
        if name not in schema.names
    }
    for parameter in schema.parameters:
        if parameter.name in given:
            problem = value_problem(parameter.schema, given[parameter.name])
            if problem and parameter.sensitive:  # the value stays out of the message
                problem = problem.replace(show(given[parameter.name]), "the value")
            if problem:
                raise RenderError(f"{where}: parameter {parameter.name!r}: {problem}")
            values[parameter.name] = cast(JsonValue, copy.deepcopy(given[parameter.name]))
        elif parameter.default is not None:
            values[parameter.name] = copy.deepcopy(parameter.default)
        elif parameter.required:
            raise RenderError(
                f"{where}: parameter {parameter.name!r} is required and has no value",
                hint="set it in the target's parameters",
            )
    return values


def resolve_for(source: Source, given: Mapping[str, object], where: str) -> dict[str, JsonValue]:
    """`resolve_parameters` for `source`: its schema, and its chart's values if it has one."""
    chart = source.spec.helm
    names = charts.default_values(chart, source.by_path, source.label) if chart else {}
    return resolve_parameters(source.spec.parameters, given, where, chart_values=names)


def render(
    source: Source, parameters: Mapping[str, object], *, namespace: str | None = None
) -> list[KubeObject]:
    """The app's objects (every manifest but the tests) rendered with `parameters`; a Helm
    chart is rendered as installed in `namespace` (`default` when not given)."""
    return [obj for _, obj in render_located(source, parameters, namespace=namespace)]


def render_located(
    source: Source, parameters: Mapping[str, object], *, namespace: str | None = None
) -> list[tuple[str, KubeObject]]:
    """`render`, each object with the file it came from (as messages name it)."""
    return [
        (source.where(file.path), obj)
        for file, _, obj in _render_documents(
            source, source.app_manifests, parameters, chart_namespace=namespace or "default"
        )
    ]


def render_tests(source: Source, parameters: Mapping[str, object]) -> list[KubeObject]:
    """The gate Jobs (the manifests bundle.yaml lists as tests) rendered with `parameters`.

    Anything but a batch/v1 Job is refused (SourceError naming the file): the tests run in the
    target's namespace outside its inventory, so they may only be what the gate runs and then
    deletes."""
    located = _render_files(source, source.test_manifests, parameters)
    for where, obj in located:
        if (obj.get("apiVersion"), obj.get("kind")) != ("batch/v1", "Job"):
            raise SourceError(
                f"{where}: {describe_object(obj)}: a test manifest must be a batch/v1 Job",
                hint="move other objects the tests need into manifests/, or drop them",
            )
    return [obj for _, obj in located]


def rendered_hash(objects: Sequence[KubeObject], renderer: str | None = None) -> str:
    """sha256 of the canonical JSON of `objects` (keys sorted, no spaces, order kept); with
    the `renderer` that made them (`renderer_of`), when it is not Conveyor alone."""
    return json_digest(objects if renderer is None else {"renderer": renderer, "objects": objects})


def renderer_of(source: Source) -> str | None:
    """The tool besides Conveyor that renders `source` (`helm v4.3.2`), None for manifests."""
    return charts.renderer() if source.spec.helm else None


@dataclass(frozen=True)
class Rendered:
    """A bundle rendered for one target: what will be applied and how to recognise it. It
    carries everything a later step or record needs: the digest, the resolved parameters and
    their hash, the rendered objects and their hash, and the rendered test Jobs."""

    app: str
    target: str
    namespace: str
    digest: str
    parameters: dict[str, Any]
    parameters_hash: str
    rendered_hash: str
    objects: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    origins: tuple[str, ...] = ()
    """The file of each of `objects`, in order, for messages (empty: not known)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces beyond its own the target may write to (its `namespaces`)."""
    cluster_scoped: tuple[str, ...] = ()
    """Cluster-scoped kinds the target allows beyond the defaults (its `clusterScoped`)."""


class _QuotedString(str):
    """A string written in quotes in the YAML: a whole-scalar placeholder in it stays text."""


class _RenderLoader(StrictLoader):
    def construct_quoting_aware_str(self, node: ScalarNode) -> str:
        text = self.construct_scalar(node)
        return _QuotedString(text) if node.style in ("'", '"') else text


_RenderLoader.add_constructor(STR_TAG, _RenderLoader.construct_quoting_aware_str)


class _SubstitutionProblem(Exception):
    def __init__(
        self, error_class: type[ConveyorError], path: FieldPath, message: str, hint: str
    ) -> None:
        super().__init__(message)
        self.error_class, self.path, self.message, self.hint = error_class, path, message, hint


def render_documents(
    source: Source, parameters: Mapping[str, object]
) -> list[tuple[SourceFile, int, KubeObject]]:
    """Every manifest, the app's and the tests' (and a chart's templates), rendered: each
    object with its file and the 1-based number of its document there (the build reads the
    images of all of them)."""
    return _render_documents(source, source.manifests, parameters, chart_namespace="default")


def _render_files(
    source: Source, files: Sequence[SourceFile], parameters: Mapping[str, object]
) -> list[tuple[str, KubeObject]]:
    return [
        (source.where(file.path), obj)
        for file, _, obj in _render_documents(source, files, parameters, chart_namespace=None)
    ]


def _render_documents(
    source: Source,
    files: Sequence[SourceFile],
    parameters: Mapping[str, object],
    *,
    chart_namespace: str | None,
) -> list[tuple[SourceFile, int, KubeObject]]:
    """`files` rendered, after the chart's templates when `chart_namespace` is given and the
    source has a chart (Helm has substituted those: only their images are pinned here)."""
    values = resolve_for(source, parameters, source.label)
    substitution = _Substitution(source.spec.parameters, values)
    templated: list[SourceFile] = []
    if source.spec.helm is not None and chart_namespace is not None:
        templated = [
            SourceFile(path, text.encode())
            for path, text in charts.render(
                source.spec.helm,
                source.by_path,
                label=source.label,
                namespace=chart_namespace,
                values=values,
            )
        ]
    objects: list[tuple[SourceFile, int, KubeObject]] = []
    for file in [*templated, *files]:
        where = source.where(file.path)
        by_helm = file in templated
        documents = load_documents(
            decode_text(file.content, where), where, StrictLoader if by_helm else _RenderLoader
        )
        for number, document in enumerate(documents, start=1):
            if document is None:
                continue
            if not isinstance(document, dict):
                raise SourceError(
                    f"{where}: document {number}: must be a Kubernetes object (a mapping), "
                    f"got {show(document)}"
                )
            try:
                rendered = cast(
                    KubeObject, document if by_helm else substitution.apply(document, ())
                )
                if source.image_lock is not None:
                    rendered = images.pin(rendered, source.image_lock, source.spec.images)
            except _SubstitutionProblem as problem:
                raise problem.error_class(
                    f"{where}: document {number} ({describe_object(document)}): "
                    f"{field_path(problem.path)}: {problem.message}",
                    hint=problem.hint,
                ) from None
            except images.ImageProblem as problem:
                raise RenderError(
                    f"{where}: document {number} ({describe_object(document)}): "
                    f"{field_path(problem.path)}: {problem.message}",
                    hint=problem.hint,
                ) from None
            objects.append((file, number, rendered))
    return objects


class _Substitution:
    """Substitutes one set of parameter values into parsed YAML values."""

    def __init__(self, schema: ParameterSchema, values: Mapping[str, JsonValue]) -> None:
        self.schema = schema
        self.values = values

    def apply(self, value: JsonValue, path: FieldPath) -> JsonValue:
        if isinstance(value, dict):
            result: dict[str, JsonValue] = {}
            for key, item in value.items():
                new_key = self.text(key, (*path, key))
                if new_key in result:
                    raise _SubstitutionProblem(
                        SourceError,
                        (*path, key),
                        f"the key renders as {new_key!r}, which this mapping already has",
                        "make the keys of a mapping distinct for every parameter value",
                    )
                result[new_key] = self.apply(item, (*path, key))
            return result
        if isinstance(value, list):
            return [self.apply(item, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, str):
            parts = self.parse(value, path)
            whole = len(parts) == 1 and isinstance(parts[0], Placeholder)
            if whole and not isinstance(value, _QuotedString):
                return copy.deepcopy(self.value(cast(Placeholder, parts[0]), path))
            return self.join(parts, path)
        return value

    def text(self, value: str, path: FieldPath) -> str:
        return self.join(self.parse(value, path), path)

    def parse(self, value: str, path: FieldPath) -> list[str | Placeholder]:
        try:
            return parse_template(value)
        except ValueError as error:
            raise _SubstitutionProblem(
                SourceError, path, str(error), "fix the placeholder in the manifest"
            ) from None

    def join(self, parts: list[str | Placeholder], path: FieldPath) -> str:
        return "".join(
            part if isinstance(part, str) else _as_text(part, self.value(part, path), path)
            for part in parts
        )

    def value(self, placeholder: Placeholder, path: FieldPath) -> JsonValue:
        if self.schema.get(placeholder.name) is None:
            raise _SubstitutionProblem(
                SourceError,
                path,
                f"${{{placeholder.name}}} is not a declared parameter",
                f"declare {placeholder.name!r} under parameters in bundle.yaml, "
                f"or write $${{{placeholder.name}}} for a literal ${{{placeholder.name}}}",
            )
        if placeholder.name not in self.values:
            raise _SubstitutionProblem(
                RenderError,
                path,
                f"parameter {placeholder.name!r} has no value and no default",
                "set it in the target's parameters, or give it a default in bundle.yaml",
            )
        return self.values[placeholder.name]


def _as_text(placeholder: Placeholder, value: JsonValue, path: FieldPath) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        raise _SubstitutionProblem(
            SourceError,
            path,
            f"the list parameter {placeholder.name!r} can only be a whole, unquoted value",
            f"write the field as just ${{{placeholder.name}}}, unquoted",
        )
    return json.dumps(value)
