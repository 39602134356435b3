"""Conveyor's error tree: every failure a user can meet is one of these.

Callers catch by branch, the CLI maps the branch to an exit code, and the message always says
what failed, where (file, field, resource, component or command) and what to do about it.

    ConveyorError                 any failure Conveyor reports                   exit 1
    ├── StageFailed               a gate failed on a target, or the soak did
    ├── PromotionRefused          policy kept a digest out of a stage; no change  exit 2
    ├── InputError                the user's input is wrong; nothing was changed  exit 2
    │   ├── ConfigError           a configuration file or field
    │   ├── SourceError           a bundle source: bundle.yaml, a manifest, a tar member
    │   ├── RenderError           parameters that do not fit the bundle's schema
    │   └── ConflictError         an apply would take or delete what others own
    ├── IntegrityError            stored content does not match its digest       exit 3
    └── InfrastructureError       something we depend on failed or is unreachable exit 4
        ├── PlatformError         a local platform component (build, start, health)
        ├── RegistryError         the OCI registry or layout folder
        ├── ClusterError          the Kubernetes API server
        └── StateError            the state git repository, or a file in it we cannot read

Only adapter modules translate third-party exceptions into this tree, each in one place.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class StageFailed(ConveyorError):
    """A gate failed on a target, or readiness slipped during the soak."""


class PromotionRefused(ConveyorError):
    """Policy refused a digest at a stage (skipped stage, freeze window, rejected approval)."""

    exit_code = 2


class InputError(ConveyorError):
    """The input is wrong; the command changed nothing."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration file or one of its fields is invalid."""


class SourceError(InputError):
    """A bundle source (bundle.yaml, a manifest, an archive member) is invalid."""


class RenderError(InputError):
    """Parameters do not satisfy the bundle's parameter schema."""


class ConflictError(InputError):
    """An apply would take over or delete what others own (another app's cluster-scoped object,
    custom resources of a definition to prune); refused before anything changed."""


class IntegrityError(ConveyorError):
    """Content read back does not match the digest it was addressed by."""

    exit_code = 3


class InfrastructureError(ConveyorError):
    """A system Conveyor depends on failed or could not be reached."""

    exit_code = 4


class PlatformError(InfrastructureError):
    """A local platform component could not be built, started or reached."""


class RegistryError(InfrastructureError):
    """The OCI registry (or layout folder) failed or could not be reached."""


class ClusterError(InfrastructureError):
    """The Kubernetes API server failed or could not be reached."""


class StateError(InfrastructureError):
    """The state git repository failed, could not be reached, or holds a file we cannot read."""
