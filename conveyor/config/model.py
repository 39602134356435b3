"""The configuration as Conveyor uses it: frozen values, already checked.

Why a module of its own: flows, policy and the CLI work with these values and never with the files
they came from; `conveyor.config.reader` is the one place that reads and checks the files (the
format is described there). Nothing here reads a file, the environment, git or a cluster.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import ClassVar

from conveyor.cluster.health_rules import NO_RULES, HealthRules
from conveyor.errors import ConfigError, PromotionRefused
from conveyor.kit.paths import display_path
from conveyor.kit.paths import state_dir as default_state_dir
from conveyor.kit.semver import Constraint, parse_version
from conveyor.kit.strict_yaml import JsonValue

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 24 * 3600
_WEEK_SECONDS = 7 * DAY_SECONDS


@dataclass(frozen=True)
class Gate:
    """A check a digest must pass on every target of a stage, after readiness."""

    type: ClassVar[str]
    name: str
    timeout: float


@dataclass(frozen=True)
class BundleTestsGate(Gate):
    """Run the bundle's test Jobs against the target."""

    type: ClassVar[str] = "tests"


@dataclass(frozen=True)
class CommandGate(Gate):
    """Run a command; exit status 0 passes."""

    type: ClassVar[str] = "command"
    command: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class HttpGate(Gate):
    """GET a URL until it answers `expect_status` (and contains `body_contains`) or retries end."""

    type: ClassVar[str] = "http"
    url: str
    expect_status: int
    body_contains: str | None
    retries: int
    interval: float


@dataclass(frozen=True)
class DeploymentGate(Gate):
    """Run a Prefect deployment ("flow-name/deployment-name"); a completed run passes."""

    type: ClassVar[str] = "deployment"
    deployment: str
    parameters: Mapping[str, JsonValue]


@dataclass(frozen=True)
class Weekly:
    """A recurring UTC window: opens on each of `days` (0 is Monday) at `opens`, closes at the
    next `closes` (the following day when `closes` is not after `opens`)."""

    days: frozenset[int]
    opens: time
    closes: time

    def active(self, at: datetime) -> bool:
        """Whether the schedule covers `at`, which must carry a timezone."""
        now = _aware(at).astimezone(UTC)
        into_week = now.weekday() * DAY_SECONDS + _seconds_of_day(now)
        length = (_seconds_of_day(self.closes) - _seconds_of_day(self.opens)) % DAY_SECONDS
        length = length or DAY_SECONDS
        return any(
            (into_week - day * DAY_SECONDS - _seconds_of_day(self.opens)) % _WEEK_SECONDS < length
            for day in self.days
        )


@dataclass(frozen=True)
class FreezeWindow:
    """A time when no digest may enter a stage: an absolute period [start, end), a weekly
    schedule, or both (the schedule, within the period)."""

    reason: str
    start: datetime | None
    end: datetime | None
    weekly: Weekly | None

    def active(self, at: datetime) -> bool:
        """Whether the window covers `at`, which must carry a timezone."""
        _aware(at)
        if self.start is not None and self.end is not None and not self.start <= at < self.end:
            return False
        return self.weekly is None or self.weekly.active(at)


@dataclass(frozen=True)
class SignatureRule:
    """A stage's approvals must be signed with SSH keys (conveyor.promotion.signatures):
    `required` distinct signers listed in the `allowed_signers` file, never the promoter when
    `forbid_promoter`."""

    required: int
    allowed_signers: Path
    forbid_promoter: bool


@dataclass(frozen=True)
class ApprovalRule:
    """Whether a person must approve a digest before it enters the stage, how long to wait, and
    whether the approval must be signed (None: the form's answer is enough)."""

    required: bool
    timeout: float
    signatures: SignatureRule | None = None


@dataclass(frozen=True)
class Cluster:
    """A Kubernetes cluster: its kubeconfig (None: the client's default) and context."""

    name: str
    kubeconfig: Path | None
    context: str | None


@dataclass(frozen=True)
class Target:
    """One instance of a stage: where it deploys and with which parameter values."""

    name: str
    stage: str
    cluster: Cluster
    namespace: str
    parameters_file: Path
    parameters: Mapping[str, JsonValue]
    force_conflicts: bool
    self_heal: bool
    health_checks: HealthRules = NO_RULES
    """The per-kind health rules in force: the stage's, each replaced by the target's own rule
    for the same group and kind."""
    prune_custom_resource_definitions: bool = False
    """The pipeline's `pruneCustomResourceDefinitions`: may prune delete a dropped CRD."""
    namespaces: tuple[str, ...] = ()
    """Namespaces beyond `namespace` the target's bundle may write to."""
    cluster_scoped: tuple[str, ...] = ()
    """Cluster-scoped kinds (`Kind` or `Kind.group`) the target's bundle may apply beyond the
    defaults (CustomResourceDefinition, ClusterRole, its own Namespace)."""


@dataclass(frozen=True)
class Budget:
    """A deployment budget shared by every stage that names it, across apps: at most `limit`
    targets deploy at once (for example all prod targets of all apps)."""

    name: str
    limit: int


@dataclass(frozen=True)
class Stage:
    """A step of the path to production: its targets and what a digest must pass there."""

    name: str
    targets: tuple[Target, ...]
    gates: tuple[Gate, ...]
    approval: ApprovalRule
    soak: float
    freeze_windows: tuple[FreezeWindow, ...]
    auto_promote: bool
    parallelism: int
    budget: Budget | None = None

    def frozen(self, at: datetime) -> FreezeWindow | None:
        """The first freeze window active at `at` (timezone-aware), or None."""
        return next((window for window in self.freeze_windows if window.active(at)), None)


@dataclass(frozen=True)
class Pipeline:
    """An app's ordered stages, read from the file at `path`."""

    name: str
    path: Path
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(stage.name for stage in self.stages)
        raise ConfigError(f"{display_path(self.path)}: unknown stage {name!r}; known: {known}")

    def previous(self, stage_name: str) -> Stage | None:
        """The stage before `stage_name`, None for the first."""
        index = self.stages.index(self.stage(stage_name))
        return self.stages[index - 1] if index else None

    def targets(self) -> list[Target]:
        """Every target, stage by stage."""
        return [target for stage in self.stages for target in stage.targets]

    def target(self, name: str) -> Target:
        for target in self.targets():
            if target.name == name:
                return target
        known = ", ".join(target.name for target in self.targets())
        raise ConfigError(f"{display_path(self.path)}: unknown target {name!r}; known: {known}")

    def environment_names(self) -> list[str]:
        """Stage and target names, which a bundle's manifests must not hard-code (lint)."""
        names = [stage.name for stage in self.stages] + [t.name for t in self.targets()]
        return list(dict.fromkeys(names))


def matches_any(ref: str, patterns: tuple[str, ...]) -> bool:
    """Whether `ref` is one of `patterns` or fits one of their globs (`release/*`, `v*`)."""
    return any(fnmatch.fnmatchcase(ref, pattern) for pattern in patterns)


@dataclass(frozen=True)
class ImageWatch:
    """An image repository whose highest tag within `constraint` every watched release runs."""

    repository: str
    """As the manifests write it: registry.example/web."""
    constraint: Constraint


@dataclass(frozen=True)
class SourceWatch:
    """Refs of an app's source repository, and image repositories, whose news start a release
    by themselves."""

    refs: tuple[str, ...]
    """Branch or tag names, or globs (`main`, `v*`)."""
    interval: float
    """Seconds between two looks at the repository."""
    images: tuple[ImageWatch, ...] = ()

    def matches(self, ref: str) -> bool:
        return matches_any(ref, self.refs)


@dataclass(frozen=True)
class AppSource:
    """Where an app's bundle source lives: a repository (absolute path or URL), the ref a
    release builds by default, the folder, and which refs may be released at all."""

    repository: str
    ref: str
    path: str
    allowed_refs: tuple[str, ...] = ()
    """Refs or globs (`main`, `release/*`, `v*`) a release may build; empty allows any."""
    watch: SourceWatch | None = None
    """Refs whose new commits start a release (served as `watch-source/<app>`), if any."""

    def allows(self, ref: str) -> bool:
        return not self.allowed_refs or matches_any(ref, self.allowed_refs)

    def check_ref(self, ref: str) -> None:
        """Raise PromotionRefused when `ref` may not be released."""
        if not self.allows(ref):
            raise PromotionRefused(
                f"{ref!r} may not be released: source.allowedRefs lists "
                + ", ".join(self.allowed_refs),
                hint="release one of those refs, or add this one to allowedRefs in the config",
            )

    def check_image_tags(self, tags: Mapping[str, str]) -> None:
        """Raise PromotionRefused when a release may not choose one of `tags` (repository ->
        tag): where the app watches image repositories (`source.watch.images`), only those,
        within their semver constraint. An app that watches none may choose a tag for any
        repository its manifests run (the build refuses others)."""
        watched = {image.repository: image for image in self.watch.images} if self.watch else {}
        if not watched:
            return
        for repository, tag in sorted(tags.items()):
            image = watched.get(repository)
            if image is None:
                raise PromotionRefused(
                    f"a release may not choose the tag of {repository}: source.watch.images "
                    "lists " + ", ".join(sorted(watched)),
                    hint="choose tags of those repositories, or add this one to watch.images",
                )
            version = parse_version(tag)
            if version is None or not image.constraint.allows(version):
                raise PromotionRefused(
                    f"{repository}:{tag} may not be released: source.watch.images allows "
                    f"{image.constraint.text!r} for {repository}",
                    hint="choose a tag within the constraint, or widen it in the config",
                )


@dataclass(frozen=True)
class App:
    """A name, the source its bundles are built from, and the pipeline they are promoted along."""

    name: str
    source: AppSource
    pipeline: Pipeline


@dataclass(frozen=True)
class Config:
    """The loaded configuration; `root` is the folder of `path`, the base of relative paths."""

    path: Path
    root: Path
    registry: str
    state_repository: str
    clusters: Mapping[str, Cluster]
    apps: Mapping[str, App]

    def app(self, name: str) -> App:
        if name in self.apps:
            return self.apps[name]
        raise ConfigError(
            f"{display_path(self.path)}: apps: unknown app {name!r}; known: {', '.join(self.apps)}",
            hint="add it under apps: or check the spelling",
        )

    def cluster(self, name: str) -> Cluster:
        if name in self.clusters:
            return self.clusters[name]
        raise ConfigError(
            f"{display_path(self.path)}: clusters: unknown cluster {name!r}; known: "
            f"{', '.join(self.clusters)}",
            hint="add it under clusters: or check the spelling",
        )

    def store_location(self, app_name: str, state_dir: Path | None = None) -> str:
        """Where the app's bundles are stored (see `bundle_store_location`)."""
        return bundle_store_location(self.app(app_name).name, self.registry, state_dir)


def bundle_store_location(app: str, registry: str = "", state_dir: Path | None = None) -> str:
    """Where an app's bundles are stored: `<registry>/conveyor/<app>` when there is a registry,
    else the OCI layout folder `oci:<state>/bundles/<app>`. The one rule for it: the pipeline
    reads and writes there, and so do the bundle and cluster commands when given no store."""
    if registry:
        return f"{registry}/conveyor/{app}"
    return f"oci:{(state_dir or default_state_dir()) / 'bundles' / app}"


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("freeze windows need a timezone-aware datetime")
    return at


def _seconds_of_day(moment: datetime | time) -> float:
    return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
