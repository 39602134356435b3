"""Versions in image tags and the constraints an image watch picks tags with (pure)."""

from __future__ import annotations

import pytest

from conveyor.kit.semver import Version, parse_constraint, parse_version


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1.2.3", Version(1, 2, 3)),
        ("v1.2.3", Version(1, 2, 3)),
        ("1.2", Version(1, 2, 0)),
        ("7", Version(7, 0, 0)),
        ("1.0.0-rc.1", Version(1, 0, 0, ("rc", 1))),
        ("1.0.0+build.5", Version(1, 0, 0)),
        ("latest", None),
        ("main-3f2a1c", None),
        ("01.2.3", None),
        ("1.2.3.4", None),
    ],
)
def test_tags_that_name_versions(tag: str, version: Version | None) -> None:
    assert parse_version(tag) == version


def test_versions_order_numerically_and_releases_after_their_pre_releases() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0", "1.9.0", "1.10.0", "2.0.0"]
    versions = [parse_version(tag) for tag in ordered]
    assert sorted(versions, key=lambda v: (v is None, v)) == versions  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("constraint", "tags", "highest"),
    [
        (">=1.2.0 <2.0.0", ["1.1.0", "1.2.0", "1.10.1", "2.0.0", "latest"], "1.10.1"),
        ("^1.4", ["1.3.9", "1.4.0", "1.9.9", "2.0.0"], "1.9.9"),
        ("^0.4", ["0.4.1", "0.5.0"], "0.4.1"),
        ("~1.4.2", ["1.4.1", "1.4.9", "1.5.0"], "1.4.9"),
        ("1.2.3", ["1.2.3", "1.2.4"], "1.2.3"),
        ("<1.0.0 || >=3", ["0.9.0", "2.0.0", "3.1.0"], "3.1.0"),
        (">=1.0.0", ["1.0.0", "2.0.0-rc.1"], "1.0.0"),
        (">=2.0.0-rc.0", ["1.0.0", "2.0.0-rc.1"], "2.0.0-rc.1"),
        (">=5", ["1.0.0", "latest"], None),
        ("^1", ["v1.2.0", "1.1.0"], "v1.2.0"),
    ],
)
def test_a_constraint_picks_the_highest_tag_it_allows(
    constraint: str, tags: list[str], highest: str | None
) -> None:
    assert parse_constraint(constraint).highest(tags) == highest


@pytest.mark.parametrize("text", ["", "  ", ">=x", "=>1.0", "1.0 ||", "latest"])
def test_what_is_not_a_constraint_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_constraint(text)
