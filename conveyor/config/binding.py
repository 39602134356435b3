"""What binds a run to the configuration it was served with: one digest of the configuration.

A flow must not take its configuration from whoever starts a run (anyone who can call the
Prefect API could then name a pipeline whose first stage is prod). Runs read the configuration
of the process that runs them; `conveyor serve` tags each deployment with the digest of the
configuration it loaded, and a run of that deployment refuses to start when the configuration
it reads now has another digest (someone edited it after serve started, or pointed the run
elsewhere). The digest covers every YAML file under the configuration's folder, so a pipeline or
a target's parameter file counts as much as conveyor.yaml, and every allowed-signers file a stage
names (who may sign an approval is configuration too).
"""

from __future__ import annotations

import hashlib

from conveyor.config.model import Config
from conveyor.errors import ConfigError

TAG_PREFIX = "conveyor-config:"


def config_digest(config: Config) -> str:
    """`sha256:<hex>` over the path and bytes of each YAML file under config.root and of each
    allowed-signers file (paths relative to config.root where they are under it)."""
    digest = hashlib.sha256()
    signers = {
        stage.approval.signatures.allowed_signers
        for app in config.apps.values()
        for stage in app.pipeline.stages
        if stage.approval.signatures is not None
    }
    yaml_files = {
        path
        for pattern in ("*.yaml", "*.yml")
        for path in config.root.rglob(pattern)
        if path.is_file()
    }
    for path in sorted(yaml_files | signers):
        shown = path.relative_to(config.root) if path.is_relative_to(config.root) else path
        relative = shown.as_posix().encode()
        content = path.read_bytes()
        digest.update(len(relative).to_bytes(8, "big") + relative)
        digest.update(len(content).to_bytes(8, "big") + content)
    return "sha256:" + digest.hexdigest()


def binding_tag(config: Config) -> str:
    """The deployment tag naming the configuration's digest (first 16 hex digits)."""
    return TAG_PREFIX + config_digest(config)[7:23]


def bound_digest(tags: list[str] | tuple[str, ...]) -> str | None:
    """The configuration digest prefix a deployment's tags bind it to, if any."""
    found = [tag.removeprefix(TAG_PREFIX) for tag in tags if tag.startswith(TAG_PREFIX)]
    return found[0] if found else None


def check_binding(config: Config, tags: list[str] | tuple[str, ...], deployment: str) -> None:
    """Raise ConfigError when `deployment` was served with another configuration than `config`."""
    bound = bound_digest(tags)
    if bound is not None and binding_tag(config) != TAG_PREFIX + bound:
        raise ConfigError(
            f"{deployment} was served with another configuration ({TAG_PREFIX}{bound}) than "
            f"{config.path} holds now ({binding_tag(config)})",
            hint="restart `conveyor serve` to serve the configuration as it is now",
        )
