"""Every target of one cluster checked at once: the control loop's idle cycle, made cheap.

Why: a reconcile per target costs a flow run, its task runs and a LIST per kind and namespace
each cycle, for a loop that almost always finds nothing; a thousand targets every minute is
thousands of orchestration calls and a UI full of runs. A sweep renders what git records for
every target of a cluster (each bundle pulled once however many targets run it), reads the live
objects with one labelled LIST per kind for the whole cluster, and says which targets drifted.
Only those get a reconcile of their own, which corrects them under the target's slot after
reading git again (flows/reconcile.py), so a sweep itself never writes.

A target that cannot be checked (its bundle gone from the store, parameters that no longer fit)
is reported with its reason and does not stop the others; a cluster that does not answer fails
the sweep, and only that cluster's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.adapters import oci
from conveyor.adapters.kube import Kube, NotFound
from conveyor.bundles import artifact
from conveyor.cluster import apply, drift
from conveyor.config.model import Target
from conveyor.errors import ClusterError, ConveyorError
from conveyor.promotion import deploy
from conveyor.records.state import DesiredState


@dataclass(frozen=True)
class TargetToCheck:
    """A target of the cluster with what git records for it, and where its bundles are."""

    app: str
    target: Target
    desired: DesiredState
    store: oci.BundleStore


@dataclass(frozen=True)
class Checked:
    """One target's verdict: the objects that drifted (none: it runs what git says), or why it
    could not be checked."""

    app: str
    target: str
    digest: str
    drifted: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def needs_reconcile(self) -> bool:
        return bool(self.drifted)


def check_cluster(kube: Kube, targets: Sequence[TargetToCheck]) -> list[Checked]:
    """The verdict of each of `targets`, all on the cluster `kube` talks to, in their order."""
    loaded: dict[tuple[str, str], artifact.Loaded] = {}
    prepared: dict[drift.TargetKey, list[dict[str, object]]] = {}
    problems: dict[drift.TargetKey, str] = {}
    for each in targets:
        key = (each.app, each.target.name)
        try:
            bundle = (str(each.store), each.desired.digest)
            if bundle not in loaded:
                loaded[bundle] = artifact.load(each.store, each.desired.digest)
            rendered = deploy.render_for_target(
                loaded[bundle], each.app, each.target, each.desired.parameters
            )
            prepared[key] = apply.prepare(
                kube, rendered.objects, deploy.placement(rendered), each.desired.digest
            )
        except NotFound as error:  # a kind the cluster does not serve: this target's problem
            problems[key] = error.message
        except ClusterError:
            raise  # the cluster does not answer: none of its targets can be judged
        except ConveyorError as error:  # a registry down, a bundle gone, parameters refused
            problems[key] = error.message
    live = drift.read_live_fleet(kube, prepared)
    verdicts = []
    for each in targets:
        key = (each.app, each.target.name)
        digest = each.desired.digest
        if key in problems:
            verdicts.append(Checked(*key, digest, problem=problems[key]))
            continue
        found = drift.detect(kube, prepared[key], app=key[0], target=key[1], live=live[key])
        verdicts.append(Checked(*key, digest, drifted=tuple(str(d.ref) for d in found)))
    return verdicts
