"""Parameter values as users write them: a YAML file of name: value, and `--set name=value`.

Values keep their YAML types (`--set replicas=3` is the integer 3). Whether a name and its value
fit a bundle is the renderer's business (conveyor.bundles.render); this module only reads them,
and says which file and line is wrong when it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from conveyor.errors import ConfigError
from conveyor.kit.strict_yaml import JsonValue, load_documents, read_yaml_file


def load_values(path: Path) -> dict[str, JsonValue]:
    """The mapping in a parameter file (an empty file means no values)."""
    documents = [doc for doc in read_yaml_file(path, str(path), ConfigError) if doc is not None]
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
        parsed = load_documents(raw, f"--set {name}", fail=ConfigError) if raw else [""]
        values[name] = parsed[0] if parsed else None
    return values
