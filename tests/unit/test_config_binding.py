"""A served deployment is bound to the configuration it was served with: any change to a YAML
file under the configuration's folder changes the digest and voids the binding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conveyor.config.binding import TAG_PREFIX, binding_tag, check_binding, config_digest
from conveyor.config.reader import load_config
from conveyor.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", folder)
    return folder


@pytest.mark.parametrize(
    "edit",
    ["conveyor.yaml", "pipelines/web.yaml", "environments/prod-eu.yaml"],
)
def test_any_configuration_file_changes_the_digest(config_folder: Path, edit: str) -> None:
    before = load_config(config_folder / "conveyor.yaml")
    digest, served = config_digest(before), binding_tag(before)  # what serve tags
    assert digest == config_digest(load_config(config_folder / "conveyor.yaml")), "stable"
    with (config_folder / edit).open("a") as file:
        file.write("\n# edited\n")
    after = load_config(config_folder / "conveyor.yaml")
    assert config_digest(after) != digest
    check_binding(after, [binding_tag(after)], "deployment x")
    with pytest.raises(ConfigError, match="deployment x was served with another configuration"):
        check_binding(after, ["conveyor", served], "deployment x")


def test_a_deployment_without_a_binding_tag_is_not_checked(config_folder: Path) -> None:
    config = load_config(config_folder / "conveyor.yaml")
    check_binding(config, ["conveyor"], "deployment x")
    assert binding_tag(config).startswith(TAG_PREFIX)
    assert len(binding_tag(config)) == len(TAG_PREFIX) + 16
