"""YAML that would crash the parser (nesting thousands of levels deep, integers of thousands of
digits) is refused as bad input by every reader, naming the file and the line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.bundles.render import render
from conveyor.bundles.source import parse_bundle_spec, source_from_files
from conveyor.config.reader import load_config
from conveyor.errors import ConfigError, InputError, SourceError
from conveyor.kit.strict_yaml import MAX_DEPTH, load_documents

BUNDLE = b"apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: web\n"
DEEP_FLOW = b"key: " + b"[" * 5000 + b"]" * 5000 + b"\n"
DEEP_BLOCK = b"".join(b"  " * level + b"- \n" for level in range(5000)) + b"  " * 5000 + b"- x\n"
HUGE_INT = b"key: " + b"7" * 5000 + b"\n"
HUGE_NEGATIVE_INT = b"key: -" + b"7" * 2500 + b"_" + b"7" * 2500 + b"\n"


def _manifest(tmp_path: Path, data: bytes) -> None:
    source = source_from_files({"bundle.yaml": BUNDLE, "manifests/cm.yaml": data}, "src")
    render(source, {})


def _bundle_file(tmp_path: Path, data: bytes) -> None:
    parse_bundle_spec(data, "src/bundle.yaml", [])


def _config_file(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "conveyor.yaml").write_bytes(data)
    load_config(tmp_path / "conveyor.yaml")


READERS: list[tuple[str, Callable[[Path, bytes], None], type[InputError], str]] = [
    ("manifest", _manifest, SourceError, "manifests/cm.yaml"),
    ("bundle.yaml", _bundle_file, SourceError, "src/bundle.yaml"),
    ("config", _config_file, ConfigError, "conveyor.yaml"),
]
INPUTS = [
    ("deep-flow", DEEP_FLOW, "nested more than", 1),
    ("deep-block", DEEP_BLOCK, "nested more than", MAX_DEPTH + 1),
    ("huge-integer", HUGE_INT, "an integer of 5000 digits", 1),
    ("huge-negative-integer", HUGE_NEGATIVE_INT, "an integer of 5000 digits", 1),
]


@pytest.mark.parametrize(("reader", "read", "error", "where"), READERS, ids=[r[0] for r in READERS])
@pytest.mark.parametrize(
    ("data", "problem", "line"), [i[1:] for i in INPUTS], ids=[i[0] for i in INPUTS]
)
def test_yaml_that_would_crash_the_parser_is_refused_naming_the_file(
    tmp_path: Path,
    reader: str,
    read: Callable[[Path, bytes], None],
    error: type[InputError],
    where: str,
    data: bytes,
    problem: str,
    line: int,
) -> None:
    with pytest.raises(error) as raised:
        read(tmp_path, data)

    assert raised.value.exit_code == 2
    assert f"{where}:{line}: invalid YAML" in raised.value.message, raised.value.message
    assert problem in raised.value.message, raised.value.message


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"key: " + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1), "nested"),
        (b"key: " + b"9" * 4000, 10**4000 - 1),
    ],
    ids=["nesting-at-the-limit", "a-4000-digit-integer"],
)
def test_yaml_within_the_limits_is_read(data: bytes, value: object) -> None:
    expected: object = value
    if value == "nested":
        expected = []
        for _ in range(MAX_DEPTH - 2):
            expected = [expected]
    assert load_documents(data.decode(), "x.yaml") == [{"key": expected}]
