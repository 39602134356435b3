"""Parameter values as users write them: a YAML file of name: value, and `--set name=value`.

Values keep their YAML types (`--set replicas=3` is the integer 3). Whether a name and its value
fit a bundle is the renderer's business (conveyor.render); this module only reads them, and says
which file and line is wrong when it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from conveyor.errors import ConfigError, SourceError
from conveyor.kit.strict_yaml import JsonValue, load_documents


def load_values(path: Path) -> dict[str, JsonValue]:
    """The mapping in a parameter file (an empty file means no values)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the parameter file: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text") from error
    try:
        documents = [doc for doc in load_documents(text, str(path)) if doc is not None]
    except SourceError as error:
        raise ConfigError(error.message) from None
    if not documents:
        return {}
    if len(documents) > 1 or not isinstance(documents[0], dict):
        raise ConfigError(
            f"{path}: a parameter file holds one mapping of name: value",
            hint="for example:\n  replicas: 3\n  image: registry.example/web:1.2",
        )
    return documents[0]


def parse_assignments(assignments: Sequence[str]) -> dict[str, JsonValue]:
    """`name=value` pairs, each value read as a YAML scalar or flow collection."""
    values: dict[str, JsonValue] = {}
    for assignment in assignments:
        name, separator, raw = assignment.partition("=")
        if not separator or not name:
            raise ConfigError(f"--set {assignment!r}: expected name=value")
        try:
            parsed = load_documents(raw, f"--set {name}") if raw else [""]
        except SourceError as error:
            raise ConfigError(error.message) from None
        values[name] = parsed[0] if parsed else None
    return values
