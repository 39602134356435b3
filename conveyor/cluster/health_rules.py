"""Per-kind health rules: CEL expressions that decide when an object of a kind is ready.

Why: the built-in rules (`conveyor.cluster.health`) know Kubernetes' own kinds and the Ready
condition convention, but an operator's custom resource may speak of its readiness in fields of
its own (`status.readyShards`, `status.state`). A pipeline names, per kind, when such an object
is ready, still in progress, or failed, in the shape of Flux's `healthCheckExprs`, so a Flux user
can copy theirs:

    healthChecks:
      - apiVersion: search.example.com/v1
        kind: Index
        current: status.readyShards == spec.shards     # required
        inProgress: status.state == 'Rebalancing'      # optional
        failed: status.state == 'Broken'               # optional

A rule matches every object of its API group and kind, whatever the version, as Flux's status
reader does (it keys the expressions by GroupKind). The expressions' variables are the object's
top-level fields (`apiVersion`, `kind`, `metadata`, `spec`, `status`, ...), as in Flux.

Evaluation order. Flux's documentation of `.spec.healthCheckExprs` (kustomize-controller
kustomizations.md and helm-controller helmreleases.md, "Health check expressions") says the
controller evaluates `inProgress` if specified, then `failed` if specified, then `current`, and
the first expression that evaluates to true determines the status. When none is true the object
is still in progress. The same documentation warns that an expression referring to a field the
object does not have makes the controller wait until the timeout: here too an absent field (or
an index past the end of a list) means in progress, and the reason names the expression and the
field, so the timeout's message says what to fix. Any other evaluation error (a type mismatch, a
function that does not exist) and a result that is not a boolean are Failed: waiting cannot
change them.

An expression must compile when the configuration is read (`HealthRule` refuses it with
`InvalidExpression`, which the reader turns into a ConfigError naming file and key). The
evaluator is common-expression-language (module `cel`), measured against cel-python and chosen
for speed and its small dependency set; this module is the only one that imports it. Neither
library parses cel-go's optional-field syntax (`status.?conditions.orValue([])`), so such an
expression is refused at load; write `has(status.conditions)` checks instead.

`cel` is imported on the first compile, not with this module: importing it costs about a tenth
of a CPU second (its command-line interface pulls in prompt_toolkit and typer), and every flow
run imports this module through the configuration model while most configurations hold no
health rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cel

# The evaluator's message for a name it cannot resolve: a top-level field the object lacks, or
# a function that does not exist (told apart by the expression's variables).
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']+)'")
_SHOWN_VALUE = 40


class Outcome(StrEnum):
    """What a rule says of an object; the expression keys, in the order they are evaluated."""

    IN_PROGRESS = "inProgress"
    FAILED = "failed"
    CURRENT = "current"


@dataclass(frozen=True)
class RuleVerdict:
    outcome: Outcome
    reason: str


class InvalidExpression(ValueError):
    """An expression of a rule does not compile; `key` is current, inProgress or failed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class HealthRule:
    """When objects of one API group and kind are current, in progress or failed.

    Plain data (the compiled programs are cached by source), so a rule pickles and compares
    like any other configuration value. Raises InvalidExpression if an expression does not
    compile, or `current` is empty.
    """

    api_version: str
    kind: str
    current: str
    in_progress: str | None = None
    failed: str | None = None

    def __post_init__(self) -> None:
        for key, source in self.expressions():
            _program(key, source)

    @property
    def group_kind(self) -> tuple[str, str]:
        return _group(self.api_version), self.kind

    def expressions(self) -> list[tuple[Outcome, str]]:
        """(key, source) of the expressions given, in evaluation order."""
        written = (
            (Outcome.IN_PROGRESS, self.in_progress),
            (Outcome.FAILED, self.failed),
            (Outcome.CURRENT, self.current),
        )
        return [(key, source) for key, source in written if source is not None]

    def evaluate(self, obj: Mapping[str, Any]) -> RuleVerdict:
        """The verdict of the first expression that is true, in Flux's order (module docstring)."""
        variables = dict(obj)
        for key, source in self.expressions():
            program = _program(key, source)
            try:
                result = program.execute(variables)
            except (KeyError, IndexError) as missing:
                return RuleVerdict(Outcome.IN_PROGRESS, _missing(key, missing))
            except Exception as error:  # the evaluator raises plain Python errors
                return _error_verdict(key, program, error)
            if not isinstance(result, bool):
                shown = repr(result)[:_SHOWN_VALUE]
                return RuleVerdict(
                    Outcome.FAILED, f"health check {key} gave {shown}, not true or false"
                )
            if result:
                return RuleVerdict(key, f"health check {key} is true: {source}")
        return RuleVerdict(
            Outcome.IN_PROGRESS, f"health check current is not true yet: {self.current}"
        )


@dataclass(frozen=True)
class HealthRules:
    """The rules in force for a target, at most one per API group and kind."""

    rules: tuple[HealthRule, ...] = ()

    def __post_init__(self) -> None:
        seen = [rule.group_kind for rule in self.rules]
        doubled = sorted({gk for gk in seen if seen.count(gk) > 1})
        if doubled:
            raise ValueError(f"more than one health rule for {_show(doubled[0])}")

    def for_object(self, api_version: str, kind: str) -> HealthRule | None:
        wanted = (_group(api_version), kind)
        return next((rule for rule in self.rules if rule.group_kind == wanted), None)

    def overridden_by(self, others: Iterable[HealthRule]) -> HealthRules:
        """These rules, with each of `others` replacing the rule for its group and kind."""
        replacing = tuple(others)
        replaced = {rule.group_kind for rule in replacing}
        kept = tuple(rule for rule in self.rules if rule.group_kind not in replaced)
        return HealthRules(kept + replacing)


NO_RULES = HealthRules()
"""No per-kind health rules: the built-in rules decide every kind."""


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _show(group_kind: tuple[str, str]) -> str:
    group, kind = group_kind
    return f"{group}/{kind}" if group else kind


@functools.lru_cache(maxsize=512)
def _program(key: str, source: str) -> cel.Program:
    if not source.strip():
        raise InvalidExpression(key, "must not be empty")
    import cel  # here, not at the top: see the module docstring

    try:
        return cel.compile(source)
    except ValueError as error:
        raise InvalidExpression(key, str(error)) from None


def _missing(key: str, error: KeyError | IndexError) -> str:
    if isinstance(error, KeyError):
        return f"health check {key}: field {error.args[0]} not found yet"
    detail = error.args[0] if error.args else "index out of range"
    return f"health check {key}: list item not found yet ({detail})"


def _error_verdict(key: str, program: cel.Program, error: Exception) -> RuleVerdict:
    undefined = _UNDEFINED.search(str(error))
    if undefined and undefined.group(1) in program.variables():
        return RuleVerdict(
            Outcome.IN_PROGRESS, f"health check {key}: {undefined.group(1)} not found yet"
        )
    return RuleVerdict(Outcome.FAILED, f"health check {key} cannot be evaluated: {error}")
