"""One strict reader for a mapping read from a file: key by key, each error at its place.

Why: the configuration files and the state repository's files are written or edited by people,
and a mistake in either must stop Conveyor with an error naming the file and the key path at
fault (`stages[2].targets[0].cluster`, `gates.staging-eu[1].verdict`), never pass silently. Both
readers therefore read through `Fields`: a value that is not a mapping is refused, a key the
mapping may not have is refused up front (a typo must not pass as a missing optional key), a
missing key is refused unless the reader gives a default, and nested mappings and list items
carry their place along, so an error deep in a file still names its whole path.

The two kinds of file word their errors differently and read null differently, and each says so
in a `Place` subclass of its own: a configuration file says `file: path: problem` and reads a key
set to null as a key left out; a state file, written whole by Conveyor, says `file: key 'path'
problem` and reads null as a value. Each format adds the value types it knows (durations, names,
digests, times) as methods of a `Fields` subclass; what is read, and how, is the same.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Final, Self, TypeGuard, TypeVar

from conveyor.errors import ConveyorError
from conveyor.kit.strict_yaml import JsonValue

T = TypeVar("T")


class Required(enum.Enum):
    """The default of a key that must be given."""

    REQUIRED = enum.auto()


REQUIRED: Final = Required.REQUIRED


@dataclass(frozen=True)
class Place(ABC):
    """A place in a file, for messages: the file as shown, and a key path in it."""

    file: str
    path: str = ""

    null_is_absent: ClassVar[bool]
    """Whether a key set to null reads as a key left out (else null is a value like any other)."""
    missing: ClassVar[str]
    """What an error says of a key that must be given and is not."""

    def key(self, key: str) -> Self:
        return replace(self, path=f"{self.path}.{key}" if self.path else key)

    def item(self, index: int) -> Self:
        return replace(self, path=f"{self.path}[{index}]")

    @abstractmethod
    def error(self, problem: str, hint: str | None = None) -> ConveyorError:
        """The error saying `problem` about this place."""

    @abstractmethod
    def got(self, value: object) -> str:
        """What a type error says of the value found instead (`got 5`, `not a int`)."""

    @abstractmethod
    def unknown_key(self, known: Sequence[str]) -> ConveyorError:
        """The error for this place, a key the mapping may not have; `known` are those it may."""


def is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str)


def is_mapping(value: object) -> TypeGuard[dict[str, JsonValue]]:
    return isinstance(value, dict)


def is_list(value: object) -> TypeGuard[list[JsonValue]]:
    return isinstance(value, list)


class Fields:
    """One mapping of a file, read key by key; `known` are the keys it may have (None: any, for
    a mapping keyed by names)."""

    def __init__(self, raw: object, at: Place, known: Sequence[str] | None = None) -> None:
        if not is_mapping(raw):
            raise at.error(f"must be a mapping, {at.got(raw)}")
        if known is not None:
            for key in raw:
                if key not in known:
                    raise at.key(key).unknown_key(known)
        self.values: dict[str, JsonValue] = raw
        self.at = at

    def error(self, key: str, problem: str, hint: str | None = None) -> ConveyorError:
        """The error saying `problem` about `key` of this mapping."""
        return self.at.key(key).error(problem, hint)

    def given(self, key: str) -> bool:
        if key not in self.values:
            return False
        return self.values[key] is not None or not self.at.null_is_absent

    def get(self, key: str, default: object = REQUIRED) -> object:
        """The value of `key`, else `default`; an error when it is missing and has none."""
        if self.given(key):
            return self.values[key]
        if default is REQUIRED:
            raise self.error(key, self.at.missing)
        return default

    def expect(
        self,
        key: str,
        what: str,
        fits: Callable[[object], TypeGuard[T]],
        default: T | Required = REQUIRED,
    ) -> T:
        """The value of `key` (else `default`) if it `fits`; else an error: it must be `what`."""
        value = self.get(key, default)
        if not fits(value):
            raise self.error(key, f"must be {what}, {self.at.got(value)}")
        return value

    def section(
        self,
        key: str,
        known: Sequence[str] | None,
        default: dict[str, JsonValue] | Required = REQUIRED,
    ) -> Self:
        """The mapping under `key` (else `default`), read the same way."""
        return type(self)(self.get(key, default), self.at.key(key), known)

    def items(
        self,
        key: str,
        *,
        at_least_one: bool = False,
        default: list[JsonValue] | Required = REQUIRED,
    ) -> Iterator[tuple[JsonValue, Place]]:
        """Each item of the list under `key` (else `default`), with its place."""
        value = self.expect(key, "a list", is_list, default)
        if at_least_one and not value:
            raise self.error(key, "must list at least one")
        return ((item, self.at.key(key).item(index)) for index, item in enumerate(value))
