"""Semantic versions in image tags, and the constraints a watch picks new tags with.

Why: an image watch starts a release for a new tag only when it matches the app's constraint
(`>=1.2.0 <2.0.0`, `^1.4`, `~1.4.2`), and picks the highest such tag; registries list tags in no
useful order, and `1.10.0` sorts before `1.9.0` as text. A tag is a version when it reads
`[v]MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]`; other tags (`latest`, `main-3f2a1c`) are never
picked. Pre-releases are picked only by a constraint that names a pre-release itself.

Constraint syntax: comparisons joined by spaces must all hold (`>=1.2 <2`); `||` separates
alternatives; `=`, `>`, `>=`, `<`, `<=` compare; `^1.4` is `>=1.4.0 <2.0.0` (`^0.4` is
`>=0.4.0 <0.5.0`); `~1.4.2` is `>=1.4.2 <1.5.0`; a bare version is `=`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(
    r"v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*))?(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?"
)
_COMPARISON = re.compile(r"(?P<op>\^|~|>=|<=|>|<|=)?(?P<version>\S+)")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric ones.
        pre = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()


def parse_version(text: str) -> Version | None:
    """The version a tag names, or None when it names none."""
    match = _VERSION.fullmatch(text)
    if not match:
        return None
    pre = tuple(int(p) if p.isdigit() else p for p in (match["pre"] or "").split(".") if p)
    return Version(int(match["major"]), int(match["minor"] or 0), int(match["patch"] or 0), pre)


@dataclass(frozen=True)
class Constraint:
    """Alternatives (`||`), each a set of comparisons that must all hold."""

    text: str
    alternatives: tuple[tuple[tuple[str, Version], ...], ...]

    def allows(self, version: Version) -> bool:
        return any(
            all(_holds(op, version, bound) for op, bound in comparisons)
            and (not version.pre or any(bound.pre for _, bound in comparisons))
            for comparisons in self.alternatives
        )

    def highest(self, tags: list[str]) -> str | None:
        """The tag of the highest version this constraint allows, or None."""
        allowed = [
            (version, tag)
            for tag in tags
            if (version := parse_version(tag)) is not None and self.allows(version)
        ]
        return max(allowed)[1] if allowed else None


def parse_constraint(text: str) -> Constraint:
    """`text` as a Constraint; ValueError naming the part that is not one."""
    alternatives = []
    for alternative in text.split("||"):
        comparisons: list[tuple[str, Version]] = []
        for part in alternative.split():
            match = _COMPARISON.fullmatch(part)
            version = parse_version(match["version"]) if match else None
            if match is None or version is None:
                raise ValueError(
                    f"{part!r} is not a version comparison "
                    "(write e.g. >=1.2.0 <2.0.0, ^1.4, ~1.4.2)"
                )
            comparisons += _expand(match["op"] or "=", version, match["version"])
        if not comparisons:
            raise ValueError(f"{text!r} has an empty alternative")
        alternatives.append(tuple(comparisons))
    return Constraint(text, tuple(alternatives))


def _expand(op: str, version: Version, written: str) -> list[tuple[str, Version]]:
    if op == "^":
        if version.major:
            upper = Version(version.major + 1, 0, 0)
        elif version.minor or written.count(".") == 0:
            upper = Version(0, version.minor + 1, 0) if version.minor else Version(1, 0, 0)
        else:
            upper = Version(0, 0, version.patch + 1)
        return [(">=", version), ("<", upper)]
    if op == "~":
        return [(">=", version), ("<", Version(version.major, version.minor + 1, 0))]
    return [(op, version)]


def _holds(op: str, version: Version, bound: Version) -> bool:
    return {
        "=": version == bound,
        ">": version > bound,
        ">=": version >= bound,
        "<": version < bound,
        "<=": version <= bound,
    }[op]
