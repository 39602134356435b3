"""The Go build recipes: versions, cache keys, the staging-module replace list, build failures."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conveyor.errors import PlatformError
from conveyor.platform import binaries


@pytest.mark.parametrize(
    ("binary_set", "version"),
    [(binaries.KUBERNETES, "v1.36.3"), (binaries.ETCD, "v3.6.16"), (binaries.KWOK, "v0.8.0")],
    ids=["kubernetes", "etcd", "kwok"],
)
def test_versions_come_from_the_recipes(binary_set: binaries.BinarySet, version: str) -> None:
    assert binary_set.version == version
    assert set_key(binary_set).startswith(f"{binary_set.name}-{version}-")


def set_key(binary_set: binaries.BinarySet) -> str:
    return binaries.set_folder(binary_set).name


def test_every_kubernetes_staging_module_is_replaced_by_the_matching_release() -> None:
    go_mod = (binaries.RECIPES / "k8s" / "go.mod").read_text()
    at_zero = set(re.findall(r"^\s+(k8s\.io/[\w-]+) v0\.0\.0(?:\s|$)", go_mod, re.M))
    replaced = dict(re.findall(r"^\s+(k8s\.io/[\w-]+) => \1 (v\S+)", go_mod, re.M))
    assert at_zero, "the recipe requires staging modules at v0.0.0"
    assert at_zero <= set(replaced), f"not replaced: {sorted(at_zero - set(replaced))}"
    minor = binaries.KUBERNETES.version.split(".")[1]
    assert set(replaced.values()) == {f"v0.{minor}.3"}


def test_cache_folder_follows_the_environment_and_the_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    recipes = tmp_path / "recipes"
    shutil.copytree(binaries.RECIPES / "kwok", recipes / "kwok")
    monkeypatch.setattr(binaries, "RECIPES", recipes)
    before = binaries.set_folder(binaries.KWOK)
    assert before.parent == tmp_path / "cache" / "bin"
    assert not binaries.is_built(binaries.KWOK)

    with (recipes / "kwok" / "go.sum").open("a") as go_sum:
        go_sum.write("example.com/changed v1.0.0 h1:AAAA=\n")
    assert binaries.set_folder(binaries.KWOK) != before, "a changed recipe is another cache entry"


def test_a_failing_build_names_the_command_and_shows_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "recipes" / "broken"
    recipe.mkdir(parents=True)
    (recipe / "go.mod").write_text("module example.com/broken\n\ngo 1.26.0\n")
    (recipe / "go.sum").write_text("")
    (recipe / "main.go").write_text("package main\n\nfunc main() { undefinedCall() }\n")
    monkeypatch.setattr(binaries, "RECIPES", tmp_path / "recipes")
    broken = binaries.BinarySet(
        name="broken", module="example.com/broken", executables={"broken": "."}
    )
    monkeypatch.setattr(binaries.BinarySet, "version", property(lambda self: "v0.0.1"))

    with pytest.raises(PlatformError) as caught:
        binaries.ensure_built(broken)

    message = str(caught.value)
    assert "building broken v0.0.1 failed" in message
    assert "go build" in message
    assert "undefined: undefinedCall" in message
    assert not binaries.is_built(broken)
    assert not list((tmp_path / "cache" / "bin").glob("*.partial-*")), "no half-built set is left"
