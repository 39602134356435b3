"""Helpers for the unit tests of the bundle core: sources built in memory or on disk."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.bundles.source import Source, source_from_files

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

SourceBuilder = Callable[..., Source]


def bundle_yaml(
    parameters: Mapping[str, Any] | None = None,
    *,
    required: tuple[str, ...] = (),
    tests: tuple[str, ...] = (),
    allow_plaintext_secrets: bool = False,
) -> str:
    """A bundle.yaml named `web` declaring `parameters` (name -> property schema)."""
    spec: dict[str, Any] = {"apiVersion": "conveyor.dev/v1alpha1", "kind": "Bundle", "name": "web"}
    if parameters is not None:
        spec["parameters"] = {
            "type": "object",
            "properties": dict(parameters),
            "required": list(required),
        }
    spec["tests"] = list(tests)
    spec["allowPlaintextSecrets"] = allow_plaintext_secrets
    return yaml.safe_dump(spec, sort_keys=False)


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write {relative path: content} under `root` and return `root`."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return root


@pytest.fixture
def sample_folder() -> Path:
    """tests/fixtures/web: a source using every parameter type, an escape and a test Job."""
    return FIXTURES / "web"


@pytest.fixture
def build_source() -> SourceBuilder:
    """Build a Source in memory from manifests {path under manifests/: text} and bundle options."""

    def build(
        manifests: Mapping[str, str],
        parameters: Mapping[str, Any] | None = None,
        **bundle_options: Any,
    ) -> Source:
        files = {f"manifests/{name}": text.encode() for name, text in manifests.items()}
        files["bundle.yaml"] = bundle_yaml(parameters, **bundle_options).encode()
        return source_from_files(files, "web")

    return build
