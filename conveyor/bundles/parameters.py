"""Parameter values as users write them (a YAML file of name: value, and `--set name=value`),
and as Conveyor records and shows them (sensitive ones as hashes).

Values keep their YAML types (`--set replicas=3` is the integer 3). Whether a name and its value
fit a bundle is the renderer's business (conveyor.bundles.render); this module reads them, and
says which file and line is wrong when it cannot.

A parameter the schema marks `writeOnly: true` is a secret: its value comes from the target's
configuration each time a bundle is rendered, and what Conveyor records (the desired state in
git) or shows (forms, reports, diffs) holds only `{sensitive: sha256:<hex>}` in its place.
Reproducing a recorded render takes the configured value back after checking it against that
hash, so a record never renders with another secret than the one it was promoted with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conveyor.bundles.schema import ParameterSchema
from conveyor.errors import ConfigError, RenderError
from conveyor.kit.redaction import hash_matches, short_hash, shortened, value_hash
from conveyor.kit.strict_yaml import JsonValue, load_documents, read_yaml_file

SENSITIVE_KEY = "sensitive"
"""The key of what a record holds instead of a sensitive value: `{sensitive: sha256:<hex>}`
(no parameter type is a mapping, so it is never a value)."""


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


def is_withheld(value: object) -> bool:
    """Whether `value` is what a record holds instead of a sensitive value."""
    return isinstance(value, Mapping) and list(value) == [SENSITIVE_KEY]


def withhold_sensitive(schema: ParameterSchema, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as they may be recorded and shown: each sensitive one replaced by its hash."""
    sensitive = schema.sensitive_names
    return {
        name: {SENSITIVE_KEY: value_hash(value)} if name in sensitive else value
        for name, value in values.items()
    }


def restore_sensitive(
    recorded: Mapping[str, Any], configured: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """`recorded` parameters ready to render again: each withheld value taken from
    `configured` (the target's configuration), which must hash to what was recorded.
    RenderError names the parameter when it is not configured or was changed since."""
    restored = {}
    for name, value in recorded.items():
        if not is_withheld(value):
            restored[name] = value
            continue
        if name not in configured:
            raise RenderError(
                f"{where}: sensitive parameter {name!r} was recorded as its hash only, and the "
                "target's configuration has no value for it",
                hint=f"set {name} in the target's parameters again, or promote anew",
            )
        if not hash_matches(configured[name], str(value[SENSITIVE_KEY])):
            raise RenderError(
                f"{where}: sensitive parameter {name!r}: the configured value "
                f"({short_hash(configured[name])}) is not the one recorded "
                f"({shortened(value[SENSITIVE_KEY])}); the recorded state cannot be reproduced",
                hint="promote again to record the new value, or configure the recorded one",
            )
        restored[name] = configured[name]
    return restored


def shown(value: object) -> object:
    """A recorded parameter value as a person is shown it: a withheld one as its short hash."""
    if is_withheld(value):
        assert isinstance(value, Mapping)
        return shortened(str(value[SENSITIVE_KEY]))
    return value
