"""Reading the configuration: registry, state repository, clusters, apps and pipelines.

Why: the configuration says where a bundle may go, in which order and under which checks, so a
mistake in it is a mistake in the path to production. Every file is read strictly (strict_yaml:
no duplicate keys, no aliases, no implicit dates), unknown keys are refused so that a typo never
passes silently, and every error names the file and the key path at fault, e.g.
`config/pipelines/web.yaml: stages[2].targets[0].cluster: unknown cluster 'eu-1'; known: local`
(the state files are read by the same field reader, `conveyor.kit.fields`, in their own words).
Loading is pure: it reads files and the environment, and never talks to git, a registry or a
cluster. Whether a target's parameter values fit the bundle's schema is checked later, by the
renderer, against the bundle actually promoted.

Every file starts with `apiVersion: conveyor.dev/v1alpha1` and its `kind`. A key set to null is
the same as a key left out. Durations are written "90s", "5m", "1h", "1h30m" or as a whole number
of seconds. Names (apps, clusters, pipelines, stages, targets, gates, namespaces) are DNS-1123
labels: lowercase letters, digits and '-', at most 63.

`config/conveyor.yaml` (kind: Config); relative paths are relative to this file's folder:

    registry: ""                  # host[:port][/prefix] of an OCI registry; empty: the OCI
                                  # layout folders under <state>/bundles/ (the embedded default)
    stateRepository: ../.conveyor/state.git   # a git URL, or a local path
    clusters:
      local: {kubeconfig: ../.conveyor/kubeconfig, context: null}   # both optional
    apps:
      web:
        source: {repository: .., ref: HEAD, path: examples/web}   # ref default HEAD, path "."
        pipeline: pipelines/web.yaml

A source may also name `allowedRefs` (refs or globs a release may build) and `watch: {refs:
[main, "v*"], interval: 60s, images: [{repository: registry.example/web, semver: "^1.2"}]}`:
each new commit of a matching branch or tag, and each new highest tag of a watched image within
its constraint, starts one release by itself (flows/watch.py; interval at least 5s).

A pipeline file (kind: Pipeline) has a `name`, `pruneCustomResourceDefinitions` (default false:
prune never deletes a CustomResourceDefinition a bundle dropped, since that deletes every custom
resource of its kind) and ordered `stages`, each with:

    name, targets (at least one), gates [], approval {required: false, timeout: 1h}, soak 0s,
    freezeWindows [], autoPromote true, parallelism 1 (targets deployed at once),
    budget {name, limit} (optional: at most `limit` targets of every stage naming this budget,
    in any app, deploy at once)

An approval may have to be signed with the approvers' SSH keys (conveyor.promotion.signatures):

    approval:
      required: true
      signatures:
        required: 2                         # distinct signers (principals and keys), default 1
        allowedSigners: signers/prod        # git's allowed-signers format, relative to this
                                            # folder; part of the configuration's digest
        forbidPromoter: true                # the signer of the promotion request may not sign

A target: `name` (unique across the pipeline), `cluster` (a key of `clusters`), `namespace`,
`parameters` (a file of name: value, relative to the config folder; default
`environments/<target name>.yaml`; it must exist and hold a mapping), `forceConflicts` false,
`selfHeal` true, `namespaces` [] (other namespaces its bundle may write to) and `clusterScoped` []
(cluster-scoped kinds its bundle may apply beyond CustomResourceDefinition, ClusterRole and its
own Namespace: `Kind`, or `Kind.group` for one API group; see `conveyor.cluster.confinement`).
No two targets of a pipeline share a cluster and namespace.

Readiness is judged by the built-in rules (`conveyor.cluster.health`); `healthChecks`, a list under
a stage and under a target, gives per-kind rules as CEL expressions in the shape of Flux's
`healthCheckExprs`, so a Flux user can copy theirs (see `conveyor.cluster.health_rules`):

    healthChecks:
      - apiVersion: search.example.com/v1   # the rule covers every version of this group
        kind: Index
        current: status.readyShards == spec.shards     # required
        inProgress: status.state == 'Rebalancing'      # optional
        failed: status.state == 'Broken'               # optional

The expressions see the object's top-level fields (metadata, spec, status, ...). A rule decides
its kind in place of the built-in rules, a built-in kind included. A target's rules apply on top of
its stage's: for the same group and kind the target's rule wins. At most one rule per group and
kind in one list; an expression that does not compile is an error here, at load, naming its key.

A gate: `type` and optional `name` (default: the type, then `<type>-2`, `<type>-3`... for later
gates of the same type; unique within the stage) and `timeout`, the most the gate may take, every
attempt included. Readiness is always checked before the gates and is not configured here.

    tests       the bundle's test Jobs                                          timeout 5m
    command     command: [argv...] (required), env: {NAME: value}               timeout 5m
    http        url (required), expectStatus 200, bodyContains, retries 3,
                interval 2s                                                     timeout 1m
    deployment  deployment: "flow-name/deployment-name" (required), parameters  timeout 30m

A freeze window stops digests from entering the stage while it is active. It has a `reason` and
an absolute period, `start` and `end` (RFC 3339 times with an offset), or a weekly schedule,
`weekly: {days: [sat, sun], from: "HH:MM", to: "HH:MM"}` in UTC, or both (then it is active on the
schedule only within the period). Periods include their start and exclude their end. A weekly
window opens on each listed day at `from` and closes at the next `to`: when `to` is not after
`from` it closes the following day, so `from: "22:00", to: "06:00"` spans midnight and
`from: "00:00", to: "00:00"` is the whole day. Quote the times: YAML reads 22:00 as a number.

Environment overrides:
- CONVEYOR_CONFIG: the config file `load_config()` reads (default ./config/conveyor.yaml).
- CONVEYOR_REGISTRY, when set and not empty, replaces `registry` (`conveyor platform env`
  exports the local platform's registry this way).
- CONVEYOR_KUBECONFIG is the kubeconfig of every cluster whose `kubeconfig` is left out; a
  kubeconfig written in the file always wins. With neither, the cluster's kubeconfig is None and
  the Kubernetes client's own default applies ($KUBECONFIG, then ~/.kube/config).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, TypeGuard
from urllib.parse import urlsplit

from conveyor.bundles.images import parse_reference
from conveyor.bundles.parameters import load_values
from conveyor.bundles.schema import show
from conveyor.bundles.source import path_problem
from conveyor.cluster.health_rules import HealthRule, HealthRules, InvalidExpression
from conveyor.config.model import (
    WEEKDAYS,
    App,
    ApprovalRule,
    AppSource,
    Budget,
    BundleTestsGate,
    Cluster,
    CommandGate,
    Config,
    DeploymentGate,
    FreezeWindow,
    Gate,
    HttpGate,
    ImageWatch,
    Pipeline,
    SignatureRule,
    SourceWatch,
    Stage,
    Target,
    Weekly,
)
from conveyor.errors import ConfigError
from conveyor.kit.fields import REQUIRED, Fields, Place, Required, is_mapping, is_text
from conveyor.kit.paths import display_path
from conveyor.kit.semver import parse_constraint
from conveyor.kit.strict_yaml import JsonValue, read_yaml_file
from conveyor.kit.syntax import DNS_LABEL, DNS_LABEL_RULE, REGISTRY, is_git_url, parse_rfc3339

API_VERSION = "conveyor.dev/v1alpha1"
DEFAULT_CONFIG = Path("config/conveyor.yaml")

_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_FORMS = '"90s", "5m", "1h", "1h30m" or a whole number of seconds'


def load_config(path: Path | None = None) -> Config:
    """Read and check the configuration at `path` ($CONVEYOR_CONFIG, else
    ./config/conveyor.yaml), every pipeline it names and every target's parameter file."""
    chosen = path or Path(os.environ.get("CONVEYOR_CONFIG") or DEFAULT_CONFIG)
    config_path = _normal(chosen)
    root = config_path.parent
    at = _InConfigFile(display_path(config_path))
    if not config_path.is_file():
        raise at.error(
            "no such file",
            hint="run from the folder that holds config/conveyor.yaml, or set $CONVEYOR_CONFIG",
        )
    fields = _read_document(
        config_path,
        at,
        "Config",
        ("apiVersion", "kind", "registry", "stateRepository", "clusters", "apps"),
    )
    registry = _registry(fields)
    state_repository = _repository(fields.string("stateRepository"), root)
    clusters = {
        name: _cluster(name, raw, entry_at, root)
        for name, raw, entry_at in fields.named_entries("clusters", "cluster")
    }
    return Config(
        path=config_path,
        root=root,
        registry=registry,
        state_repository=state_repository,
        clusters=MappingProxyType(clusters),
        apps=MappingProxyType(_apps(fields, clusters, root)),
    )


def _apps(fields: _ConfigFields, clusters: Mapping[str, Cluster], root: Path) -> dict[str, App]:
    """Every app of the configuration, each pipeline file read once however many apps use it."""
    config_file = fields.at.file
    pipelines: dict[Path, Pipeline] = {}
    apps: dict[str, App] = {}
    for name, raw, app_at in fields.named_entries("apps", "app"):
        app = _ConfigFields(raw, app_at, ("source", "pipeline"))
        pipeline_path = _normal(root / app.string("pipeline"))
        if not pipeline_path.is_file():
            raise app.error(
                "pipeline",
                f"{display_path(pipeline_path)} does not exist",
                hint=f"give a pipeline file's path, relative to the folder of {config_file}",
            )
        if pipeline_path not in pipelines:
            pipelines[pipeline_path] = _PipelineReader(
                pipeline_path, clusters, root, config_file
            ).read()
        apps[name] = App(
            name,
            _app_source(app.get("source"), app.at.key("source"), root),
            pipelines[pipeline_path],
        )
    return apps


# --- reading ----------------------------------------------------------------------------------


class _InConfigFile(Place):
    """A place in a configuration file: errors read `file: path: problem`, and a key set to null
    is a key left out."""

    null_is_absent: ClassVar[bool] = True
    missing: ClassVar[str] = "is required"

    def error(self, problem: str, hint: str | None = None) -> ConfigError:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return ConfigError(f"{where}: {problem}", hint=hint)

    def got(self, value: object) -> str:
        return f"got {show(value)}"

    def unknown_key(self, known: Sequence[str]) -> ConfigError:
        return self.error(
            f"unknown key; known: {', '.join(known)}",
            hint="check the spelling: unknown keys are refused so typos cannot hide",
        )


def _is_boolean(value: object) -> TypeGuard[bool]:
    return isinstance(value, bool)


def _is_whole_number(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _ConfigFields(Fields):
    """A mapping of a configuration file, with the value types the configuration knows."""

    def string(self, key: str, default: str | Required = REQUIRED, *, empty: bool = False) -> str:
        value = self.expect(key, "a string", is_text, default)
        if not value and not empty:
            raise self.error(key, "must not be empty")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if self.given(key) else None

    def label(self, key: str) -> str:
        return _label(self.string(key), self.at.key(key))

    def boolean(self, key: str, default: bool) -> bool:
        return self.expect(key, "true or false", _is_boolean, default)

    def integer(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.expect(key, "a whole number", _is_whole_number, default)
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(key, f"must be {bounds}, got {value}")
        return value

    def duration(self, key: str, default: str, *, zero: bool = False) -> float:
        value = self.get(key, default)
        seconds = _duration_seconds(value)
        if seconds is None:
            raise self.error(key, f"must be a duration: {_DURATION_FORMS}; got {show(value)}")
        if seconds == 0 and not zero:
            raise self.error(key, "must be longer than 0s")
        return seconds

    def mapping(self, key: str) -> dict[str, JsonValue]:
        return self.expect(key, "a mapping", is_mapping, {})

    def named_entries(self, key: str, what: str) -> Iterator[tuple[str, JsonValue, Place]]:
        """Each `name: value` entry of the mapping under `key` (at least one), names checked."""
        entries = self.expect(key, f"a mapping of {what} name: settings", is_mapping)
        if not entries:
            raise self.error(key, f"must name at least one {what}")
        for name, value in entries.items():
            entry_at = self.at.key(key).key(name)
            if not DNS_LABEL.fullmatch(name):
                raise entry_at.error(f"the {what} name must be {DNS_LABEL_RULE}")
            yield name, value, entry_at


def _read_document(path: Path, at: _InConfigFile, kind: str, known: Sequence[str]) -> _ConfigFields:
    documents = [d for d in read_yaml_file(path, at.file, ConfigError) if d is not None]
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise at.error(f"must hold exactly one YAML mapping, a {kind}")
    raw = documents[0]
    for key, expected in (("apiVersion", API_VERSION), ("kind", kind)):
        if raw.get(key) != expected:
            raise at.key(key).error(f"must be {expected!r}, got {show(raw.get(key))}")
    return _ConfigFields(raw, at, known)


def _registry(fields: _ConfigFields) -> str:
    written = fields.string("registry", "", empty=True)
    overridden = os.environ.get("CONVEYOR_REGISTRY")
    registry = overridden or written
    if registry and not REGISTRY.fullmatch(registry):
        where = _InConfigFile("$CONVEYOR_REGISTRY") if overridden else fields.at.key("registry")
        raise where.error(
            f"must be host[:port], optionally followed by /prefix, got {show(registry)}",
            hint="write e.g. 127.0.0.1:5000 or registry.example.com/team, without a scheme; "
            "leave it empty for the OCI layout folders under the state folder",
        )
    return registry


def _cluster(name: str, raw: JsonValue, at: Place, root: Path) -> Cluster:
    fields = _ConfigFields(raw, at, ("kubeconfig", "context"))
    written = fields.optional_string("kubeconfig")
    from_environment = os.environ.get("CONVEYOR_KUBECONFIG")
    if written is not None:
        kubeconfig: Path | None = _normal(root / written)
    else:
        kubeconfig = _normal(Path(from_environment)) if from_environment else None
    return Cluster(name, kubeconfig, fields.optional_string("context"))


def _app_source(raw: object, at: Place, root: Path) -> AppSource:
    fields = _ConfigFields(raw, at, ("repository", "ref", "allowedRefs", "path", "watch"))
    path = fields.string("path", ".")
    problem = None if path == "." else path_problem(path)
    if problem:
        raise at.key("path").error(
            f"the path {path!r} {problem}",
            hint='give the source folder relative to the repository root, or "." for the root',
        )
    allowed: list[str] = []
    for pattern, place in fields.items("allowedRefs", default=[]):
        if not isinstance(pattern, str) or not pattern:
            raise place.error(f"must be a ref or a glob such as `release/*`, {place.got(pattern)}")
        allowed.append(pattern)
    if fields.given("allowedRefs") and not allowed:
        raise fields.error("allowedRefs", "must list at least one ref (or leave it out)")
    source = AppSource(
        _repository(fields.string("repository"), root),
        fields.string("ref", "HEAD"),
        path,
        tuple(allowed),
        _source_watch(fields.get("watch"), at.key("watch")) if fields.given("watch") else None,
    )
    if not source.allows(source.ref):
        raise fields.error("ref", f"{source.ref!r} is not among allowedRefs ({', '.join(allowed)})")
    return source


MIN_WATCH_INTERVAL = 5.0
"""Seconds: a watch that looks more often than this would mostly ask a git server for nothing."""


def _source_watch(raw: object, at: Place) -> SourceWatch:
    fields = _ConfigFields(raw, at, ("refs", "interval", "images"))
    refs: list[str] = []
    for pattern, place in fields.items("refs"):
        if not isinstance(pattern, str) or not pattern or pattern.startswith("-"):
            raise place.error(f"must be a branch, tag or glob such as `v*`, {place.got(pattern)}")
        refs.append(pattern)
    if not refs:
        raise fields.error("refs", "must list at least one branch, tag or glob")
    interval = fields.duration("interval", "60s")
    if interval < MIN_WATCH_INTERVAL:
        raise fields.error(
            "interval", f"must be at least {MIN_WATCH_INTERVAL:g}s, got {interval:g}s"
        )
    images = tuple(_image_watch(item, place) for item, place in fields.items("images", default=[]))
    return SourceWatch(tuple(refs), interval, images)


def _image_watch(raw: object, at: Place) -> ImageWatch:
    fields = _ConfigFields(raw, at, ("repository", "semver"))
    repository = fields.string("repository")
    try:
        reference = parse_reference(repository)
    except ValueError as error:
        raise fields.error("repository", str(error)) from None
    if reference.tag or reference.digest:
        raise fields.error(
            "repository", f"{repository!r} names a tag or digest; name the repository"
        )
    try:
        constraint = parse_constraint(fields.string("semver"))
    except ValueError as error:
        raise fields.error("semver", str(error)) from None
    return ImageWatch(repository, constraint)


def _repository(location: str, root: Path) -> str:
    """A git URL as written; a local path made absolute against the config folder."""
    if is_git_url(location):
        return location
    return str(_normal(root / location))


_STAGE_KEYS = (
    "name",
    "targets",
    "gates",
    "approval",
    "soak",
    "freezeWindows",
    "autoPromote",
    "parallelism",
    "budget",
    "healthChecks",
)
_TARGET_KEYS = (
    "name",
    "cluster",
    "namespace",
    "parameters",
    "forceConflicts",
    "selfHeal",
    "healthChecks",
    "namespaces",
    "clusterScoped",
)
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*(?:\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?")


def _budget(raw: object, at: Place) -> Budget | None:
    if raw is None:
        return None
    fields = _ConfigFields(raw, at, ("name", "limit"))
    return Budget(fields.label("name"), fields.integer("limit", 1, minimum=1))


class _PipelineReader:
    """Reads one pipeline file, checking names across stages and targets as it goes."""

    def __init__(
        self, path: Path, clusters: Mapping[str, Cluster], root: Path, config_file: str
    ) -> None:
        self.path = path
        self.clusters = clusters
        self.root = root
        self.config_file = config_file
        self.stage_names: dict[str, Place] = {}
        self.target_names: dict[str, Place] = {}
        self.places: dict[tuple[str, str], Place] = {}
        self.prune_definitions = False

    def read(self) -> Pipeline:
        fields = _read_document(
            self.path,
            _InConfigFile(display_path(self.path)),
            "Pipeline",
            ("apiVersion", "kind", "name", "stages", "pruneCustomResourceDefinitions"),
        )
        name = fields.label("name")
        self.prune_definitions = fields.boolean("pruneCustomResourceDefinitions", False)
        stages = tuple(self.stage(raw, at) for raw, at in fields.items("stages", at_least_one=True))
        return Pipeline(name, self.path, stages)

    def stage(self, raw: JsonValue, at: Place) -> Stage:
        fields = _ConfigFields(raw, at, _STAGE_KEYS)
        name = fields.label("name")
        _unique(name, at.key("name"), self.stage_names, "stage", "in the pipeline")
        stage_rules = HealthRules(_health_checks(fields))
        targets = tuple(
            self.target(raw_target, target_at, name, stage_rules)
            for raw_target, target_at in fields.items("targets", at_least_one=True)
        )
        gate_names: dict[str, Place] = {}
        gates_of_type: dict[str, int] = {}
        gates = []
        for raw_gate, gate_at in fields.items("gates", default=[]):
            gate = _gate(raw_gate, gate_at, gates_of_type)
            _unique(gate.name, gate_at.key("name"), gate_names, "gate", "in a stage")
            gates.append(gate)
        approval = fields.section("approval", ("required", "timeout", "signatures"), default={})
        return Stage(
            name=name,
            targets=targets,
            gates=tuple(gates),
            approval=ApprovalRule(
                approval.boolean("required", False),
                approval.duration("timeout", "1h"),
                self.signatures(approval),
            ),
            soak=fields.duration("soak", "0s", zero=True),
            freeze_windows=tuple(
                _freeze_window(raw_window, window_at)
                for raw_window, window_at in fields.items("freezeWindows", default=[])
            ),
            auto_promote=fields.boolean("autoPromote", True),
            parallelism=fields.integer("parallelism", 1, minimum=1),
            budget=_budget(fields.get("budget", None), at.key("budget")),
        )

    def signatures(self, approval: _ConfigFields) -> SignatureRule | None:
        """A stage's `approval.signatures`, its allowed-signers file checked to exist."""
        if approval.get("signatures", None) is None:
            return None
        at = approval.at.key("signatures")
        if not approval.boolean("required", False):
            raise approval.at.key("required").error(
                "signatures are configured but the approval is not required",
                hint="set approval.required: true, or remove approval.signatures",
            )
        rule = approval.section("signatures", ("required", "allowedSigners", "forbidPromoter"))
        signers = _normal(self.root / rule.string("allowedSigners"))
        if not signers.is_file():
            raise at.key("allowedSigners").error(
                f"{display_path(signers)} does not exist",
                hint="an allowed-signers file as git uses (`principal [options] key-type key`, "
                f"one per line), relative to the folder of {self.config_file}",
            )
        return SignatureRule(
            required=rule.integer("required", 1, minimum=1),
            allowed_signers=signers,
            forbid_promoter=rule.boolean("forbidPromoter", False),
        )

    def target(self, raw: JsonValue, at: Place, stage: str, stage_rules: HealthRules) -> Target:
        fields = _ConfigFields(raw, at, _TARGET_KEYS)
        name = fields.label("name")
        _unique(name, at.key("name"), self.target_names, "target", "across the pipeline")
        cluster_name = fields.string("cluster")
        if cluster_name not in self.clusters:
            raise at.key("cluster").error(
                f"unknown cluster {cluster_name!r}; known: {', '.join(self.clusters)}",
                hint=f"define it under clusters: in {self.config_file}, or check the spelling",
            )
        namespace = fields.label("namespace")
        place = self.places.setdefault((cluster_name, namespace), at)
        if place != at:
            raise at.key("namespace").error(
                f"{place.path} already deploys to namespace {namespace!r} of cluster "
                f"{cluster_name!r}; targets sharing a namespace would prune each other's objects",
                hint="give each target its own namespace",
            )
        parameters_at = at.key("parameters")
        parameters_file = _normal(
            self.root / fields.string("parameters", f"environments/{name}.yaml")
        )
        if not parameters_file.is_file():
            raise parameters_at.error(
                f"{display_path(parameters_file)} does not exist",
                hint="create it with the target's parameter values (name: value), or fix the "
                f"path; it is relative to the folder of {self.config_file}",
            )
        try:  # read by its shown path, so that load_values's messages show it too
            parameters = load_values(Path(display_path(parameters_file)))
        except ConfigError as error:
            raise parameters_at.error(error.message, error.hint) from None
        return Target(
            name=name,
            stage=stage,
            cluster=self.clusters[cluster_name],
            namespace=namespace,
            parameters_file=parameters_file,
            parameters=MappingProxyType(parameters),
            force_conflicts=fields.boolean("forceConflicts", False),
            self_heal=fields.boolean("selfHeal", True),
            health_checks=stage_rules.overridden_by(_health_checks(fields)),
            prune_custom_resource_definitions=self.prune_definitions,
            namespaces=_other_namespaces(fields, namespace),
            cluster_scoped=_cluster_scoped_kinds(fields),
        )


def _other_namespaces(fields: _ConfigFields, namespace: str) -> tuple[str, ...]:
    """A target's `namespaces`: DNS labels, each once, not its own namespace."""
    names: list[str] = []
    for value, at in fields.items("namespaces", default=[]):
        name = _label(value, at) if isinstance(value, str) else None
        if name is None:
            raise at.error(f"must be a namespace name, got {show(value)}")
        if name == namespace or name in names:
            raise at.error(f"{name!r} is already the target's namespace or listed")
        names.append(name)
    return tuple(names)


def _cluster_scoped_kinds(fields: _ConfigFields) -> tuple[str, ...]:
    """A target's `clusterScoped`: kinds as manifests write them, optionally `.group`."""
    kinds: list[str] = []
    for value, at in fields.items("clusterScoped", default=[]):
        if not isinstance(value, str) or not _KIND.fullmatch(value):
            raise at.error(
                f"must be a kind (ClusterRoleBinding) or kind.group "
                f"(ValidatingWebhookConfiguration.admissionregistration.k8s.io), got {show(value)}"
            )
        if value in kinds:
            raise at.error(f"{value!r} is listed twice")
        kinds.append(value)
    return tuple(kinds)


_GATE_FIELDS = {  # beyond name, type and timeout
    "tests": (),
    "command": ("command", "env"),
    "http": ("url", "expectStatus", "bodyContains", "retries", "interval"),
    "deployment": ("deployment", "parameters"),
}
_GATE_TIMEOUTS = {"tests": "5m", "command": "5m", "http": "1m", "deployment": "30m"}


def _gate(raw: JsonValue, at: Place, gates_of_type: dict[str, int]) -> Gate:
    if not isinstance(raw, dict):
        raise at.error(f"must be a mapping with a type, got {show(raw)}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _GATE_FIELDS:
        raise at.key("type").error(
            f"must be one of {', '.join(_GATE_FIELDS)}, got {show(kind)}",
            hint="readiness is always checked and is not a gate to configure",
        )
    fields = _ConfigFields(raw, at, ("name", "type", *_GATE_FIELDS[kind], "timeout"))
    gates_of_type[kind] = count = gates_of_type.get(kind, 0) + 1
    name = _label(fields.string("name", kind if count == 1 else f"{kind}-{count}"), at.key("name"))
    timeout = fields.duration("timeout", _GATE_TIMEOUTS[kind])
    if kind == "tests":
        return BundleTestsGate(name, timeout)
    if kind == "command":
        return CommandGate(name, timeout, _argv(fields), MappingProxyType(_env(fields)))
    if kind == "http":
        return HttpGate(
            name,
            timeout,
            url=_url(fields),
            expect_status=fields.integer("expectStatus", 200, minimum=100, maximum=599),
            body_contains=fields.optional_string("bodyContains"),
            retries=fields.integer("retries", 3, minimum=0),
            interval=fields.duration("interval", "2s"),
        )
    deployment = fields.string("deployment")
    flow, separator, deployment_name = deployment.partition("/")
    if not (flow and separator and deployment_name) or "/" in deployment_name:
        raise at.key("deployment").error(
            f'must be "flow-name/deployment-name", got {show(deployment)}',
            hint="`prefect deployment ls` lists them in that form",
        )
    return DeploymentGate(name, timeout, deployment, MappingProxyType(fields.mapping("parameters")))


def _argv(fields: _ConfigFields) -> tuple[str, ...]:
    argv = []
    for value, at in fields.items("command", at_least_one=True):
        if not isinstance(value, str) or not value:
            raise at.error(
                f"must be a non-empty string, got {show(value)}",
                hint="write the command as a list of arguments, quoting numbers",
            )
        argv.append(value)
    return tuple(argv)


def _env(fields: _ConfigFields) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in fields.mapping("env").items():
        name_at = fields.at.key("env").key(name)
        if not _ENV_NAME.fullmatch(name):
            raise name_at.error(
                "not an environment variable name (letters, digits and '_', not first a digit)"
            )
        if not isinstance(value, str):
            raise name_at.error(f"must be a string, got {show(value)}", hint="quote the value")
        env[name] = value
    return env


def _url(fields: _ConfigFields) -> str:
    url = fields.string("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise fields.at.key("url").error(
            f"must be an http:// or https:// URL with a host, got {show(url)}"
        )
    return url


_HEALTH_CHECK_KEYS = ("apiVersion", "kind", "current", "inProgress", "failed")
_API_VERSION = re.compile(r"(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?")


def _health_checks(fields: _ConfigFields) -> tuple[HealthRule, ...]:
    """The `healthChecks` list under a stage or a target: CEL compiled, one rule per kind."""
    rules: list[HealthRule] = []
    places: dict[tuple[str, str], Place] = {}
    for raw, at in fields.items("healthChecks", default=[]):
        check = _ConfigFields(raw, at, _HEALTH_CHECK_KEYS)
        api_version = check.string("apiVersion")
        if not _API_VERSION.fullmatch(api_version):
            raise at.key("apiVersion").error(
                f"must be group/version, or a core version such as v1; got {show(api_version)}",
                hint="write it as in the objects' manifests, e.g. search.example.com/v1",
            )
        try:
            rule = HealthRule(
                api_version,
                check.string("kind"),
                check.string("current"),
                check.optional_string("inProgress"),
                check.optional_string("failed"),
            )
        except InvalidExpression as error:
            raise at.key(error.key).error(
                f"not a valid CEL expression: {error.problem}",
                hint="write a CEL expression over the object's fields, e.g. "
                "status.readyReplicas == spec.replicas; cel-go's optional syntax (.?) is not "
                "supported, test fields with has(...)",
            ) from None
        first = places.setdefault(rule.group_kind, at)
        if first != at:
            raise at.error(
                f"{first.path} already gives a rule for {rule.kind} of {rule.api_version}",
                hint="give one rule per API group and kind (a rule covers every version)",
            )
        rules.append(rule)
    return tuple(rules)


def _freeze_window(raw: JsonValue, at: Place) -> FreezeWindow:
    fields = _ConfigFields(raw, at, ("start", "end", "weekly", "reason"))
    reason = fields.string("reason")
    has_period = fields.given("start") or fields.given("end")
    if not has_period and not fields.given("weekly"):
        raise at.error(
            "gives neither start and end nor weekly",
            hint='write start: and end: (RFC 3339), or weekly: {days: [sat, sun], from: "00:00", '
            'to: "00:00"}',
        )
    start = _instant(fields, "start") if has_period else None
    end = _instant(fields, "end") if has_period else None
    if start is not None and end is not None and end <= start:
        raise at.key("end").error(f"must be after start ({fields.values['start']})")
    weekly = _weekly(fields.get("weekly"), at.key("weekly")) if fields.given("weekly") else None
    return FreezeWindow(reason, start, end, weekly)


def _instant(fields: _ConfigFields, key: str) -> datetime:
    text = fields.string(key)
    moment = parse_rfc3339(text)
    if moment is None:
        raise fields.at.key(key).error(
            "must be an RFC 3339 time with an offset, like "
            f'"2025-12-24T00:00:00Z", got {show(text)}'
        )
    return moment


def _weekly(raw: object, at: Place) -> Weekly:
    fields = _ConfigFields(raw, at, ("days", "from", "to"))
    days: list[int] = []
    for day, day_at in fields.items("days", at_least_one=True):
        if not isinstance(day, str) or day not in WEEKDAYS:
            raise day_at.error(f"must be one of {', '.join(WEEKDAYS)}, got {show(day)}")
        if WEEKDAYS.index(day) in days:
            raise day_at.error(f"{day!r} is listed twice")
        days.append(WEEKDAYS.index(day))
    return Weekly(frozenset(days), _clock(fields, "from"), _clock(fields, "to"))


def _clock(fields: _ConfigFields, key: str) -> time:
    value = fields.get(key)
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise fields.at.key(key).error(
            f'must be a "HH:MM" time of day (UTC, 24-hour), got {show(value)}',
            hint='quote it ("22:00"): unquoted, YAML reads 22:00 as a number',
        )
    return time(int(match[1]), int(match[2]))


def _unique(name: str, at: Place, seen: dict[str, Place], what: str, scope: str) -> None:
    first = seen.setdefault(name, at)
    if first != at:
        raise at.error(
            f"the {what} name {name!r} is already used at {first.path}; "
            f"{what} names are unique {scope}"
        )


def _label(value: str, at: Place) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise at.error(f"must be {DNS_LABEL_RULE}, got {show(value)}")
    return value


def _duration_seconds(value: object) -> float | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    match = _DURATION.fullmatch(value) if isinstance(value, str) and value else None
    if match is None:
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _normal(path: Path) -> Path:
    """An absolute path with `..` and `.` folded away (symlinks are left alone)."""
    return Path(os.path.normpath(path.absolute()))
