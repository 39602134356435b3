"""The subset of JSON Schema that describes a bundle's parameters, and the check of a value.

Why: environments differ only by declared parameters, so a bundle's parameter schema is a
contract, checked twice: its defaults when the source is loaded (source.py) and every target's
values when it is rendered (render.py). Conveyor supports a small subset of JSON Schema and
refuses every other keyword, so a constraint written in bundle.yaml is never silently ignored.

The parameters object: `type: object`, `properties`, `required`, `description`, and
`additionalProperties`, which may only be `false` (undeclared parameters are always refused).
Each property: `type` (string, integer, number, boolean, array), `description`, `default`, `enum`;
for numbers `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`; for strings
`minLength`, `maxLength`, `pattern` (searched, as JSON Schema does); for arrays `items`
(required), `minItems`, `maxItems`; and `writeOnly: true` on a parameter whose value is a secret
(a password, a token): Conveyor renders with it but never records or shows it, only its hash
(see conveyor.bundles.parameters). Integers are ints (3.0 is not an integer); booleans are never
numbers; numbers are finite.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NoReturn

from conveyor.errors import SourceError
from conveyor.kit.strict_yaml import JsonValue

VALUE_TYPES = ("string", "integer", "number", "boolean", "array")
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_COMMON_KEYWORDS = ("type", "description", "enum")
_KEYWORDS_BY_TYPE = {
    "string": ("minLength", "maxLength", "pattern"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "boolean": (),
    "array": ("items", "minItems", "maxItems"),
}
_OBJECT_KEYWORDS = ("type", "description", "properties", "required", "additionalProperties")


@dataclass(frozen=True)
class ValueSchema:
    """The constraints on one value (a parameter, or the items of an array parameter)."""

    type: str
    enum: tuple[JsonValue, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    items: ValueSchema | None = None
    min_items: int | None = None
    max_items: int | None = None


@dataclass(frozen=True)
class Parameter:
    """One declared parameter. `default` is None when there is none (no type admits null)."""

    name: str
    schema: ValueSchema
    required: bool
    description: str = ""
    default: JsonValue = None
    sensitive: bool = False
    """`writeOnly: true`: the value is a secret, recorded and shown only as its hash."""


@dataclass(frozen=True)
class ParameterSchema:
    """The parameters a bundle declares, in declaration order."""

    parameters: tuple[Parameter, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(parameter.name for parameter in self.parameters)

    def get(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def sensitive_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parameters if p.sensitive)


def show(value: object) -> str:
    """A value for a message: strings quoted, the rest as JSON; shortened."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def type_problem(expected: str, value: object) -> str | None:
    """Why `value` is not of the schema type `expected`, or None when it is."""
    if expected == "string":
        fits = isinstance(value, str)
    elif expected == "integer":
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "number":
        fits = (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    elif expected == "boolean":
        fits = isinstance(value, bool)
    else:
        fits = isinstance(value, list)
    article = "an" if expected[0] in "aeiou" else "a"
    return None if fits else f"must be {article} {expected}, got {show(value)}"


def value_problem(schema: ValueSchema, value: object) -> str | None:
    """Why `value` does not satisfy `schema`, or None when it does."""
    problem = type_problem(schema.type, value)
    if problem:
        return problem
    if schema.enum is not None and not any(_same(value, allowed) for allowed in schema.enum):
        return f"must be one of {show(list(schema.enum))}, got {show(value)}"
    if isinstance(value, str):
        return _string_problem(schema, value)
    if isinstance(value, list):
        return _array_problem(schema, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_problem(schema, value)
    return None


def _same(a: object, b: object) -> bool:
    """Equal as JSON values: 1 equals 1.0, but true is not 1 and "1" is not 1."""
    if type_problem("number", a) is None and type_problem("number", b) is None:
        return a == b
    return type(a) is type(b) and a == b


def _number_problem(schema: ValueSchema, value: int | float) -> str | None:
    if schema.minimum is not None and value < schema.minimum:
        return f"must be at least {schema.minimum}, got {show(value)}"
    if schema.maximum is not None and value > schema.maximum:
        return f"must be at most {schema.maximum}, got {show(value)}"
    if schema.exclusive_minimum is not None and value <= schema.exclusive_minimum:
        return f"must be greater than {schema.exclusive_minimum}, got {show(value)}"
    if schema.exclusive_maximum is not None and value >= schema.exclusive_maximum:
        return f"must be less than {schema.exclusive_maximum}, got {show(value)}"
    return None


def _string_problem(schema: ValueSchema, value: str) -> str | None:
    if schema.min_length is not None and len(value) < schema.min_length:
        return f"must be at least {schema.min_length} characters long, got {show(value)}"
    if schema.max_length is not None and len(value) > schema.max_length:
        return f"must be at most {schema.max_length} characters long, got {show(value)}"
    if schema.pattern is not None and not re.search(schema.pattern, value):
        return f"must match the pattern {schema.pattern!r}, got {show(value)}"
    return None


def _array_problem(schema: ValueSchema, value: list[object]) -> str | None:
    if schema.min_items is not None and len(value) < schema.min_items:
        return f"must have at least {schema.min_items} items, got {len(value)}"
    if schema.max_items is not None and len(value) > schema.max_items:
        return f"must have at most {schema.max_items} items, got {len(value)}"
    assert schema.items is not None, "array schemas always have items"
    for index, item in enumerate(value):
        problem = value_problem(schema.items, item)
        if problem:
            return f"item {index}: {problem}"
    return None


def parse_parameter_schema(raw: object, where: str) -> ParameterSchema:
    """The `parameters` field of bundle.yaml, checked; SourceError names the field at fault."""
    if raw is None:
        return ParameterSchema()
    field = "parameters"
    mapping = _mapping(raw, where, field)
    _only_keywords(mapping, _OBJECT_KEYWORDS, where, field)
    if mapping.get("type") != "object":
        _fail(where, f"{field}.type", f"must be 'object', got {show(mapping.get('type'))}")
    if mapping.get("additionalProperties", False) is not False:
        _fail(
            where,
            f"{field}.additionalProperties",
            "may only be false: parameters not in the schema are always refused",
        )
    _description(mapping, where, field)
    properties = _mapping(mapping.get("properties", {}), where, f"{field}.properties")
    required = _required(mapping.get("required", []), properties, where, f"{field}.required")
    parameters = []
    for name, raw_property in properties.items():
        property_field = f"{field}.properties.{name}"
        if not PARAMETER_NAME.fullmatch(name):
            _fail(
                where,
                property_field,
                "a parameter name is letters, digits and '_', not starting with a digit",
            )
        spec = _mapping(raw_property, where, property_field)
        schema = _value_schema(spec, where, property_field, ("default", "writeOnly"))
        sensitive = spec.get("writeOnly", False)
        if not isinstance(sensitive, bool):
            _fail(
                where,
                f"{property_field}.writeOnly",
                f"must be true or false, got {show(sensitive)}",
            )
        default = spec.get("default")
        if "default" in spec:
            problem = value_problem(schema, default)
            if problem:
                _fail(where, f"{property_field}.default", problem)
        parameters.append(
            Parameter(
                name=name,
                schema=schema,
                required=name in required,
                description=_description(spec, where, property_field),
                default=default,
                sensitive=sensitive,
            )
        )
    return ParameterSchema(tuple(parameters))


def _value_schema(
    spec: Mapping[str, JsonValue], where: str, field: str, extra_keywords: tuple[str, ...] = ()
) -> ValueSchema:
    value_type = spec.get("type")
    if not isinstance(value_type, str) or value_type not in VALUE_TYPES:
        found = f"unknown type {show(value_type)}" if "type" in spec else "missing"
        _fail(where, f"{field}.type", f"{found}; one of {', '.join(VALUE_TYPES)}")
    allowed = _COMMON_KEYWORDS + _KEYWORDS_BY_TYPE[value_type] + extra_keywords
    _only_keywords(spec, allowed, where, field)
    _description(spec, where, field)
    if value_type == "array" and "items" not in spec:
        _fail(where, f"{field}.items", "missing; an array parameter says what its items are")
    items = spec.get("items")
    schema = ValueSchema(
        type=value_type,
        minimum=_number(spec, "minimum", where, field),
        maximum=_number(spec, "maximum", where, field),
        exclusive_minimum=_number(spec, "exclusiveMinimum", where, field),
        exclusive_maximum=_number(spec, "exclusiveMaximum", where, field),
        min_length=_count(spec, "minLength", where, field),
        max_length=_count(spec, "maxLength", where, field),
        pattern=_pattern(spec, where, field),
        items=(
            _value_schema(_mapping(items, where, f"{field}.items"), where, f"{field}.items")
            if items is not None
            else None
        ),
        min_items=_count(spec, "minItems", where, field),
        max_items=_count(spec, "maxItems", where, field),
    )
    if "enum" not in spec:
        return schema
    enum = spec["enum"]
    if not isinstance(enum, list) or not enum:
        _fail(where, f"{field}.enum", f"must be a non-empty list, got {show(enum)}")
    for index, allowed_value in enumerate(enum):
        problem = value_problem(schema, allowed_value)
        if problem:
            _fail(where, f"{field}.enum[{index}]", problem)
    return replace(schema, enum=tuple(enum))


def _fail(where: str, field: str, problem: str) -> NoReturn:
    raise SourceError(f"{where}: {field}: {problem}")


def _mapping(raw: object, where: str, field: str) -> dict[str, JsonValue]:
    if not isinstance(raw, dict):
        _fail(where, field, f"must be a mapping, got {show(raw)}")
    return raw


def _only_keywords(
    mapping: Mapping[str, JsonValue], allowed: tuple[str, ...], where: str, field: str
) -> None:
    for keyword in mapping:
        if keyword not in allowed:
            _fail(
                where,
                f"{field}.{keyword}",
                f"unsupported keyword here; supported: {', '.join(allowed)}",
            )


def _description(mapping: Mapping[str, JsonValue], where: str, field: str) -> str:
    description = mapping.get("description", "")
    if not isinstance(description, str):
        _fail(where, f"{field}.description", f"must be a string, got {show(description)}")
    return description


def _required(
    raw: object, properties: Mapping[str, JsonValue], where: str, field: str
) -> frozenset[str]:
    if not isinstance(raw, list):
        _fail(where, field, f"must be a list of parameter names, got {show(raw)}")
    for index, name in enumerate(raw):
        if not isinstance(name, str) or name not in properties:
            _fail(where, f"{field}[{index}]", f"{show(name)} is not a declared property")
        if raw.index(name) != index:
            _fail(where, f"{field}[{index}]", f"{show(name)} is listed twice")
    return frozenset(str(name) for name in raw)


def _number(
    mapping: Mapping[str, JsonValue], keyword: str, where: str, field: str
) -> int | float | None:
    value = mapping.get(keyword)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(where, f"{field}.{keyword}", f"must be a number, got {show(value)}")
    return value


def _count(mapping: Mapping[str, JsonValue], keyword: str, where: str, field: str) -> int | None:
    value = mapping.get(keyword)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(where, f"{field}.{keyword}", f"must be a non-negative integer, got {show(value)}")
    return value


def _pattern(mapping: Mapping[str, JsonValue], where: str, field: str) -> str | None:
    pattern = mapping.get("pattern")
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        _fail(where, f"{field}.pattern", f"must be a string, got {show(pattern)}")
    try:
        re.compile(pattern)
    except re.error as error:
        _fail(where, f"{field}.pattern", f"not a valid regular expression: {error}")
    return pattern
