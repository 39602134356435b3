"""YAML parsing that keeps only what JSON, and so the Kubernetes API, can hold.

Why: PyYAML's SafeLoader accepts things a manifest must not carry and that would otherwise
surface far from their cause: a duplicate key silently keeps the last value, `2024-01-01` becomes
a `date`, `!!binary` a `bytes`, `.nan` a float JSON cannot encode, and aliases can expand a small
file into a huge document ("billion laughs"). `StrictLoader` refuses all of these at the line
where they are written, so bundle.yaml, lint and render see the same, JSON-compatible data.
`read_yaml_file` and `read_yaml` are the one way every reader (bundle sources, configuration,
parameter files, state files) turns a file into documents: each reader says which error it raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conveyor.errors import ConveyorError, SourceError

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

STR_TAG = "tag:yaml.org,2002:str"


class ErrorFactory(Protocol):
    """Makes the error a reader raises for a file it cannot use: an error class of the tree, or
    a function that gives every such error the same hint."""

    def __call__(self, message: str, *, hint: str | None = None) -> ConveyorError: ...


_TAGS_WITHOUT_JSON_FORM = ("binary", "set", "omap", "pairs", "timestamp")
MAX_DEPTH = 100
"""Collections nested deeper than this are refused: PyYAML composes them recursively, and a file
nested a few thousand levels deep would otherwise end in a RecursionError, not a finding."""


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses aliases, duplicate or non-string keys, non-JSON values,
    collections nested deeper than MAX_DEPTH and integers Python will not convert."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(
                None,
                None,
                f"found the alias *{event.anchor}; aliases are not allowed, write the value out",
                event.start_mark,
            )
        if self.check_event(yaml.CollectionStartEvent):
            if self._depth == MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"found collections nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Merge keys (`<<: {...}`) first become ordinary keys, so that a merged key written
        # again beside them is refused like any other duplicate instead of silently losing.
        self.flatten_mapping(node)
        first_lines: dict[str, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(
                    None,
                    None,
                    f"found the non-string key {key!r}; manifest keys are strings, quote it",
                    key_node.start_mark,
                )
            if key in first_lines:
                raise ConstructorError(
                    None,
                    None,
                    f"found the key {key!r} twice (first on line {first_lines[key]})",
                    key_node.start_mark,
                )
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python converts at most 4300 digits (sys.get_int_max_str_digits)
            raise ConstructorError(
                None,
                None,
                f"found an integer of {sum(c.isdigit() for c in str(node.value))} digits, "
                "more than can be read",
                node.start_mark,
            ) from None

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(
                None, None, f"found {node.value!r}; JSON has no infinity or NaN", node.start_mark
            )
        return value


def _refuse_tag(loader: StrictLoader, node: Node) -> None:
    raise ConstructorError(
        None, None, f"found the tag {node.tag}, which has no JSON form; remove it", node.start_mark
    )


StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
for _name in _TAGS_WITHOUT_JSON_FORM:
    StrictLoader.add_constructor(f"tag:yaml.org,2002:{_name}", _refuse_tag)
# Dates stay strings, as Kubernetes reads them: drop the implicit timestamp resolver (a copy, so
# SafeLoader itself is untouched).
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def decode_text(data: bytes, where: str, fail: ErrorFactory = SourceError) -> str:
    """The UTF-8 text of a file, or an error (a SourceError unless `fail` says) naming it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise fail(
            f"{where}: not UTF-8 text (byte {error.start})", hint="save the file as UTF-8"
        ) from None


def yaml_error_line(error: yaml.YAMLError) -> int:
    """The 1-based line a PyYAML error points at (1 when it points nowhere)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark is not None else 1


def yaml_error_problem(error: yaml.YAMLError) -> str:
    """PyYAML's description of what is wrong, without its own position text."""
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem and context:
        return f"{problem} ({context})"
    return str(problem or context or error)


def iter_documents(
    text: str, loader_class: type[StrictLoader] = StrictLoader
) -> Iterator[tuple[Node, JsonValue]]:
    """Each document of a YAML stream as (node, value); the node keeps the line numbers.

    Raises yaml.YAMLError at the first problem, after yielding the documents before it.
    """
    loader = loader_class(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None, "check_node() said a document follows"
            yield node, loader.construct_document(node)
    finally:
        loader.dispose()


def line_at(text: str, document: int, path: Sequence[str | int]) -> int | None:
    """The 1-based line where the value at `path` of the `document`-th (1-based) document of
    `text` is written, or None when `text` has no such place."""
    for number, (node, _) in enumerate(iter_documents(text), start=1):
        if number < document:
            continue
        current: Node = node
        for part in path:
            if isinstance(current, MappingNode) and isinstance(part, str):
                found = [value for key, value in current.value if key.value == part]
            elif isinstance(current, SequenceNode) and isinstance(part, int):
                found = current.value[part : part + 1]
            else:
                found = []
            if not found:
                return None
            current = found[0]
        return current.start_mark.line + 1
    return None


def load_documents(
    text: str,
    where: str,
    loader_class: type[StrictLoader] = StrictLoader,
    fail: ErrorFactory = SourceError,
) -> list[JsonValue]:
    """Every document of a YAML stream, or an error (a SourceError unless `fail` says) naming
    the file and line at fault."""
    try:
        return [value for _, value in iter_documents(text, loader_class)]
    except yaml.YAMLError as error:
        raise fail(
            f"{where}:{yaml_error_line(error)}: invalid YAML: {yaml_error_problem(error)}"
        ) from None


def read_yaml(data: bytes, where: str, fail: ErrorFactory) -> list[JsonValue]:
    """Every document of a YAML file's bytes; `fail` makes the error, naming `where`, when they
    are not UTF-8 or not valid (strict) YAML."""
    return load_documents(decode_text(data, where, fail), where, fail=fail)


def read_yaml_file(path: Path, where: str, fail: ErrorFactory) -> list[JsonValue]:
    """Every document of the YAML file at `path`; `fail` makes the error, naming `where`, when it
    cannot be read, is not UTF-8 or is not valid (strict) YAML."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise fail(f"{where}: cannot read: {error.strerror}") from None
    return read_yaml(data, where, fail)
