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
  word, the mark of a copy-pasted environment: make it a parameter instead (see below);
- `placeholder`: a `${...}` that is malformed or names an undeclared parameter;
- `test-kind`: a manifest bundle.yaml lists under `tests` is not a batch/v1 Job (the tests run
  as gate Jobs in the target's namespace; anything else would be applied outside the inventory);
- `unused-accept`: an acceptance in bundle.yaml (`lint.accept`) that matches no finding.

`environment-name` looks at what people write per environment, not at the names of the types and
tools around it, which are the same everywhere and which nobody chose for an environment (the
`.dev` of `serving.knative.dev` is a top-level domain, not the dev stage). Not checked:
- API groups and kinds: `apiVersion`, `apiGroup`, `kind` (at any depth), RBAC `apiGroups`, the
  `group` of an object reference (`issuerRef`, `parentRefs`), a CRD's `spec.group` and
  `spec.names`, an APIService's `spec.group`, and the `metadata.name` of both, which the API
  server requires to be `<plural>.<group>` and `<version>.<group>`;
- the DNS prefix of a qualified name (`autoscaling.knative.dev/` in a label or annotation key, a
  node selector, a toleration, a topology key, a finalizer); the name after the `/` is checked,
  since `pool.example.com/prod: "true"` pins an object to one environment. A prefix needs a dot
  to count as a DNS name (`staging/enabled` is checked whole);
- the registry host of an `image` (Conveyor pins images by digest: one image for every stage);
  its repository and tag are checked (`ledger:staging`);
- the top-level domain of a host name (`ledger.example.dev`, the reserved `.test`), while every
  label below it is checked (`dev.example.com`, `api.staging.example.com`);
- the Linux device folder in a path (`/dev/shm`, `> /dev/null`).
Free-form maps (labels, annotations, node selectors, a ConfigMap's or Secret's data) are values:
there `kind: staging` is a finding. Namespaces, hosts and URLs are values too, wherever they are
(a webhook's `service.namespace: prod` is a finding). A string naming several environments gives
one finding naming each, the most specific only (`prod-eu`, not also `prod`).

A finding a person judges fine is accepted in bundle.yaml with its reason (rule, file, field path;
see source.py). An acceptance that matches nothing is itself a finding, not a warning: lint runs
once, at build, where a warning would scroll by, and a stale acceptance would silently hide the
next finding at that path. Acceptances are judged against the environment names of the build.

Empty documents are skipped. Lines come from PyYAML's node marks and are 1-based.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conveyor.bundles.render import (
    Placeholder,
    describe_object,
    parse_template,
)
from conveyor.bundles.source import BUNDLE_FILE, Source, SourceFile
from conveyor.errors import SourceError
from conveyor.kit.field_paths import FieldPath, field_path
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
    """One problem: where (file relative to the source, 1-based line), which rule, and what.

    `path` is the field path of the finding (`spec.rules[0].host`), "" for a whole document: the
    key an acceptance in bundle.yaml names.
    """

    file: str
    line: int
    rule: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message} [{self.rule}]"


def lint(source: Source, environment_names: Sequence[str]) -> list[Finding]:
    """Every finding in the source's manifests that bundle.yaml does not accept, and every
    acceptance that matches nothing, in file then line order."""
    linter = _Linter(source, environment_names)
    for file in source.manifests:
        linter.lint_file(file)
    findings = _unaccepted(source, linter.findings)
    return sorted(findings, key=lambda finding: (finding.file, finding.line))


def lint_or_raise(source: Source, environment_names: Sequence[str]) -> None:
    """Raise a SourceError listing every finding, if there is any."""
    findings = lint(source, environment_names)
    if findings:
        listing = "\n".join(f"  {source.label}/{finding}" for finding in findings)
        raise SourceError(
            f"{source.label}: {len(findings)} lint finding(s):\n{listing}",
            hint="fix the manifests (lint runs before every build); a finding that is fine is "
            "accepted in bundle.yaml under lint.accept, with its rule, file, path and reason",
        )


class _Linter:
    def __init__(self, source: Source, environment_names: Sequence[str]) -> None:
        self.source = source
        self.declared = frozenset(source.spec.parameters.names)
        self.environment_words = [
            (name, re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.IGNORECASE))
            for name in dict.fromkeys(environment_names)
            if name
        ]
        self.first_definitions: dict[ObjectIdentity, str] = {}
        self.findings: list[Finding] = []

    def report(self, file: SourceFile, node: Node, rule: str, message: str, path: str = "") -> None:
        self.findings.append(Finding(file.path, node.start_mark.line + 1, rule, message, path))

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
        if file.path in self.source.spec.tests and (
            value.get("apiVersion"),
            value.get("kind"),
        ) != ("batch/v1", "Job"):
            self.report(
                file,
                node,
                "test-kind",
                f"document {number} is a {value.get('kind')!r} ({value.get('apiVersion')!r}); "
                "a test manifest must be a batch/v1 Job",
            )
        if identity is not None:
            self.check_duplicate(file, node, identity, value)
            if identity[0] == "" and identity[1] == "Secret":
                self.check_secret(file, node, value)
        kind = value.get("kind")
        for scalar, path, is_key in _scalars(node, ()):
            self.check_scalar(file, scalar, _Position(str(kind or ""), path, is_key))

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
                    field,
                )

    def check_scalar(self, file: SourceFile, scalar: ScalarNode, position: _Position) -> None:
        where = field_path(position.path)
        literal_text = scalar.value
        if scalar.tag == STR_TAG:
            try:
                parts = parse_template(scalar.value)
            except ValueError as error:
                self.report(file, scalar, "placeholder", f"{where}: {error}", where)
                return
            for part in parts:
                if isinstance(part, Placeholder) and part.name not in self.declared:
                    self.report(
                        file,
                        scalar,
                        "placeholder",
                        f"{where}: ${{{part.name}}} is not a declared parameter; "
                        "declare it in bundle.yaml or write $${...} for a literal",
                        where,
                    )
            # A placeholder separates words: "pro${x}d" does not spell "prod".
            literal_text = "".join(part if isinstance(part, str) else " " for part in parts)
        names = self.environment_names_in(written_text(position, literal_text))
        if names:
            named = (
                f"the environment name {names[0]!r}"
                if len(names) == 1
                else f"the environment names {', '.join(repr(name) for name in names)}"
            )
            self.report(
                file,
                scalar,
                "environment-name",
                f"{where}: {scalar.value!r} hard-codes {named}; make the difference a parameter",
                where,
            )

    def environment_names_in(self, text: str) -> list[str]:
        """The environment names `text` spells as whole words, in the order given, leaving out a
        name matched only inside a longer one ('prod' inside 'prod-eu')."""
        matches = [
            (name, match.span())
            for name, word in self.environment_words
            for match in word.finditer(text)
        ]
        return list(
            dict.fromkeys(
                name
                for name, (start, end) in matches
                if not any(
                    other_start <= start
                    and end <= other_end
                    and other_end - other_start > end - start
                    for _, (other_start, other_end) in matches
                )
            )
        )


@dataclass(frozen=True)
class _Position:
    """Where a scalar sits: the kind of its document, its field path, and whether it is a key."""

    kind: str
    path: FieldPath
    is_key: bool


_QUALIFIED_NAME = re.compile(
    r"(?P<prefix>[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)+)/"
    r"(?P<name>[^/]*)"
)
_IMAGE_REGISTRY_HOST = re.compile(r"^(?:[^/]*[.:][^/]*|localhost)/")
_LINUX_DEVICE_FOLDER = re.compile(r"(?<![^\s\"'=<>|;(,])/dev(?=/|\s|$)")
_TOP_LEVEL_DOMAIN = re.compile(r"(?<=[A-Za-z0-9]\.)[A-Za-z]{2,63}(?=$|[/:\s\"',;)\]])")
_FREE_FORM_MAPS = frozenset({"labels", "annotations", "matchLabels", "nodeSelector"})
_DATA_FIELDS = frozenset({"data", "stringData", "binaryData"})
_TYPE_NAME_FIELDS = frozenset({"apiVersion", "apiGroup", "kind"})
_LABEL_KEY_LISTS = frozenset({"matchExpressions", "tolerations"})
_GROUP_DEFINERS = frozenset({"CustomResourceDefinition", "APIService"})


def written_text(position: _Position, text: str) -> str:
    """`text` with what nobody writes per environment blanked out (see the module docstring)."""
    path = position.path
    if position.is_key:
        return _name_of_qualified(text)
    if not _in_free_form_map(position) and _names_a_type(position):
        return ""
    if not _in_free_form_map(position) and _holds_a_label_key(path):
        return _name_of_qualified(text)
    if path and path[-1] == "image":
        text = _IMAGE_REGISTRY_HOST.sub(" ", text)
    return _TOP_LEVEL_DOMAIN.sub(" ", _LINUX_DEVICE_FOLDER.sub(" ", text))


def _name_of_qualified(text: str) -> str:
    qualified = _QUALIFIED_NAME.fullmatch(text)
    return qualified.group("name") if qualified else text


def _in_free_form_map(position: _Position) -> bool:
    path = position.path
    if position.kind in ("ConfigMap", "Secret") and path and path[0] in _DATA_FIELDS:
        return True
    return any(part in _FREE_FORM_MAPS for part in path[:-1])


def _names_a_type(position: _Position) -> bool:
    """API groups, versions and kinds, and a CRD's names."""
    path, kind = position.path, position.kind
    field = path[-1] if path else ""
    container = _container_field(path)
    if field in _TYPE_NAME_FIELDS or container == "apiGroups":
        return True
    if field == "group" and container.endswith(("Ref", "Refs")):
        return True
    if kind in _GROUP_DEFINERS and path in (("spec", "group"), ("metadata", "name")):
        return True
    return kind == "CustomResourceDefinition" and path[:2] == ("spec", "names")


def _holds_a_label_key(path: FieldPath) -> bool:
    """Values that are qualified names: label and taint keys, topology keys, finalizers."""
    field = path[-1] if path else ""
    if field == "topologyKey" or _container_field(path) == "finalizers":
        return True
    return field == "key" and any(part in _LABEL_KEY_LISTS for part in path)


def _container_field(path: FieldPath) -> str:
    """The field that holds the mapping or list the last step of `path` is in."""
    named = [part for part in path[:-1] if isinstance(part, str)]
    return named[-1] if named else ""


def _scalars(node: Node, path: FieldPath) -> Iterator[tuple[ScalarNode, FieldPath, bool]]:
    """Every scalar under `node`, keys included, with the field path it sits at and whether it
    is a key."""
    if isinstance(node, ScalarNode):
        yield node, path, False
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, (*path, index))
    elif isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            if isinstance(key_node, ScalarNode):
                yield key_node, key_path, True
            else:
                yield from _scalars(key_node, key_path)
            yield from _scalars(value_node, key_path)


def _unaccepted(source: Source, findings: list[Finding]) -> list[Finding]:
    """`findings` without those bundle.yaml accepts, plus one for each acceptance unused."""
    accepted = source.spec.accepted_findings
    used: set[int] = set()
    kept: list[Finding] = []
    for finding in findings:
        matches = [
            index
            for index, acceptance in enumerate(accepted)
            if (acceptance.rule, acceptance.file, acceptance.path)
            == (finding.rule, finding.file, finding.path)
        ]
        used.update(matches)
        if not matches:
            kept.append(finding)
    for index, acceptance in enumerate(accepted):
        if index not in used:
            field = f"lint.accept[{index}]"
            kept.append(
                Finding(
                    BUNDLE_FILE,
                    _acceptance_line(source, index),
                    "unused-accept",
                    f"{field}: matches no {acceptance.rule} finding in {acceptance.file} at "
                    f"{acceptance.path}; remove it, or correct its rule, file or path",
                    field,
                )
            )
    return kept


def _acceptance_line(source: Source, index: int) -> int:
    """The 1-based line of `lint.accept[index]` in bundle.yaml (already parsed once: valid)."""
    bundle = next(file for file in source.files if file.path == BUNDLE_FILE)
    node, _ = next(iter_documents(bundle.content.decode("utf-8")))
    for step in ("lint", "accept", index):
        if isinstance(node, MappingNode):
            node = next(value for key, value in node.value if key.value == step)
        elif isinstance(node, SequenceNode) and isinstance(step, int):
            node = node.value[step]
    return node.start_mark.line + 1
