"""Checks of a source's manifests before it is built, each finding with its file and line.

Why: a bundle is built once and promoted unchanged, so a mistake in it travels all the way to
production unless it is caught at build time. Lint catches what would otherwise fail late or,
worse, succeed wrongly:

- `yaml`: a manifest is not valid YAML, or holds what JSON cannot (see strict_yaml.py);
- `identity`: a document lacks apiVersion, kind or metadata.name, so it cannot be applied;
- `duplicate-object`: the same object (API group, kind, namespace, name) is defined twice;
- `plaintext-secret`: a Secret carries non-empty `data` or `stringData`, unless bundle.yaml
  sets `allowPlaintextSecrets: true`; a bundle is copied to every registry and stage;
- `environment-name`: a literal string (value or key) contains an environment's name as a whole
  word, the mark of a copy-pasted environment: make it a parameter instead;
- `placeholder`: a `${...}` that is malformed or names an undeclared parameter.

Empty documents are skipped. Lines come from PyYAML's node marks and are 1-based.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conveyor.bundles.render import (
    FieldPath,
    Placeholder,
    describe_object,
    field_path,
    parse_template,
)
from conveyor.bundles.source import Source, SourceFile
from conveyor.errors import SourceError
from conveyor.kit.strict_yaml import (
    STR_TAG,
    JsonValue,
    iter_documents,
    yaml_error_line,
    yaml_error_problem,
)

ObjectIdentity = tuple[str, str, str, str]


@dataclass(frozen=True)
class Finding:
    """One problem: where (file relative to the source, 1-based line), which rule, and what."""

    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message} [{self.rule}]"


def lint(source: Source, environment_names: Sequence[str]) -> list[Finding]:
    """Every finding in the source's manifests, in file then line order."""
    linter = _Linter(source, environment_names)
    for file in source.manifests:
        linter.lint_file(file)
    return sorted(linter.findings, key=lambda finding: (finding.file, finding.line))


def lint_or_raise(source: Source, environment_names: Sequence[str]) -> None:
    """Raise a SourceError listing every finding, if there is any."""
    findings = lint(source, environment_names)
    if findings:
        listing = "\n".join(f"  {source.label}/{finding}" for finding in findings)
        raise SourceError(
            f"{source.label}: {len(findings)} lint finding(s):\n{listing}",
            hint="fix the manifests; lint runs before every build",
        )


class _Linter:
    def __init__(self, source: Source, environment_names: Sequence[str]) -> None:
        self.source = source
        self.declared = frozenset(source.spec.parameters.names)
        self.environment_words = [
            (name, re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.IGNORECASE))
            for name in environment_names
            if name
        ]
        self.first_definitions: dict[ObjectIdentity, str] = {}
        self.findings: list[Finding] = []

    def report(self, file: SourceFile, node: Node, rule: str, message: str) -> None:
        self.findings.append(Finding(file.path, node.start_mark.line + 1, rule, message))

    def lint_file(self, file: SourceFile) -> None:
        try:
            text = file.content.decode("utf-8")
        except UnicodeDecodeError as error:
            self.findings.append(Finding(file.path, 1, "yaml", f"not UTF-8 text ({error.reason})"))
            return
        try:
            for number, (node, value) in enumerate(iter_documents(text), start=1):
                if value is not None:
                    self.lint_document(file, number, node, value)
        except yaml.YAMLError as error:
            self.findings.append(
                Finding(
                    file.path,
                    yaml_error_line(error),
                    "yaml",
                    f"invalid YAML: {yaml_error_problem(error)}",
                )
            )

    def lint_document(self, file: SourceFile, number: int, node: Node, value: JsonValue) -> None:
        if not isinstance(value, dict) or not isinstance(node, MappingNode):
            self.report(file, node, "identity", f"document {number} is not a Kubernetes object")
            return
        identity = self.check_identity(file, number, node, value)
        if identity is not None:
            self.check_duplicate(file, node, identity, value)
            if identity[0] == "" and identity[1] == "Secret":
                self.check_secret(file, node, value)
        for scalar, path in _scalars(node, ()):
            self.check_scalar(file, scalar, path)

    def check_identity(
        self, file: SourceFile, number: int, node: MappingNode, value: dict[str, JsonValue]
    ) -> ObjectIdentity | None:
        metadata = value.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        fields = {
            "apiVersion": value.get("apiVersion"),
            "kind": value.get("kind"),
            "metadata.name": metadata.get("name"),
        }
        missing = [
            field for field, given in fields.items() if not isinstance(given, str) or not given
        ]
        if missing:
            self.report(
                file,
                node,
                "identity",
                f"document {number} ({describe_object(value)}) has no {', '.join(missing)}; "
                "every object needs apiVersion, kind and metadata.name",
            )
            return None
        api_version, kind, name = (str(given) for given in fields.values())
        group = api_version.rpartition("/")[0]
        namespace = metadata.get("namespace")
        return (group, kind, namespace if isinstance(namespace, str) else "", name)

    def check_duplicate(
        self, file: SourceFile, node: Node, identity: ObjectIdentity, value: dict[str, JsonValue]
    ) -> None:
        first = self.first_definitions.get(identity)
        if first is None:
            self.first_definitions[identity] = f"{file.path}:{node.start_mark.line + 1}"
        else:
            self.report(
                file,
                node,
                "duplicate-object",
                f"{describe_object(value)} is defined twice (first at {first}); "
                "each object is defined once",
            )

    def check_secret(
        self, file: SourceFile, node: MappingNode, value: dict[str, JsonValue]
    ) -> None:
        if self.source.spec.allow_plaintext_secrets:
            return
        for key_node, _ in node.value:
            field = key_node.value
            if field in ("data", "stringData") and value.get(field):
                self.report(
                    file,
                    key_node,
                    "plaintext-secret",
                    f"{describe_object(value)} has plaintext {field}; a bundle is copied to "
                    "every registry and stage. Reference the secret from a secret store, or set "
                    "allowPlaintextSecrets: true in bundle.yaml",
                )

    def check_scalar(self, file: SourceFile, scalar: ScalarNode, path: FieldPath) -> None:
        literal_text = scalar.value
        if scalar.tag == STR_TAG:
            try:
                parts = parse_template(scalar.value)
            except ValueError as error:
                self.report(file, scalar, "placeholder", f"{field_path(path)}: {error}")
                return
            for part in parts:
                if isinstance(part, Placeholder) and part.name not in self.declared:
                    self.report(
                        file,
                        scalar,
                        "placeholder",
                        f"{field_path(path)}: ${{{part.name}}} is not a declared parameter; "
                        "declare it in bundle.yaml or write $${...} for a literal",
                    )
            # A placeholder separates words: "pro${x}d" does not spell "prod".
            literal_text = "".join(part if isinstance(part, str) else " " for part in parts)
        for name, word in self.environment_words:
            if word.search(literal_text):
                self.report(
                    file,
                    scalar,
                    "environment-name",
                    f"{field_path(path)}: {scalar.value!r} hard-codes the environment name "
                    f"{name!r}; make the difference a parameter",
                )


def _scalars(node: Node, path: FieldPath) -> Iterator[tuple[ScalarNode, FieldPath]]:
    """Every scalar under `node`, keys included, with the field path it sits at."""
    if isinstance(node, ScalarNode):
        yield node, path
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, (*path, index))
    elif isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            yield from _scalars(key_node, key_path)
            yield from _scalars(value_node, key_path)
