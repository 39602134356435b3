"""The order the parallel pass hands tests to its workers: the longest modules first, spread
over the workers.

pytest-xdist's `worksteal` scheduler gives each worker one contiguous share of the collection
and lets an idle worker take the back half of a busy worker's queue. In collection order the
fault tests come last, so the longest of them (a lease to wait out, a Prefect server to
restart) started late and held the pass up alone at its end. Dealing the long modules to the
heads of the shares, longest first and onto the least loaded share, starts every one of them at
once at the beginning; the short tests fill the shares behind them and are what the workers
trade at the end. Whole modules move together, so a module's fixtures are set up once.

The seconds per module are measured (`MODULE_SECONDS`, from a parallel pass on the 2-core
machine; refresh them when a module's time changes much); a module not listed counts
`UNLISTED_SECONDS` by its folder. A wrong figure only costs time, never a result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

Item = TypeVar("Item")

MODULE_SECONDS: Mapping[str, float] = {
    "tests/faults/test_prefect_restart.py": 320,
    "tests/e2e/test_governance.py": 200,
    "tests/faults/test_worker_killed.py": 150,
    "tests/e2e/test_trust.py": 140,
    "tests/e2e/test_control_loop.py": 140,
    "tests/faults/test_prefect_worker_killed.py": 130,
    "tests/e2e/test_release.py": 115,
    "tests/e2e/test_pinned_images.py": 100,
    "tests/e2e/test_two_clusters.py": 100,
    "tests/e2e/test_signed_approvals.py": 85,
    "tests/faults/test_failure_paths.py": 80,
    "tests/e2e/test_gates_e2e.py": 80,
    "tests/e2e/test_ui_approval.py": 65,
    "tests/integration/test_bundle_cli.py": 55,
    "tests/integration/test_platform_lifecycle.py": 50,
    "tests/e2e/test_config_binding.py": 50,
    "tests/integration/test_helm_source.py": 45,
}
UNLISTED_SECONDS: Mapping[str, float] = {"tests/faults/": 35, "tests/e2e/": 30}
LONG_SECONDS = 20.0
"""Modules at least this long are dealt to the heads of the shares; the rest fill them."""


def module_seconds(module: str) -> float:
    if module in MODULE_SECONDS:
        return MODULE_SECONDS[module]
    return next(
        (seconds for folder, seconds in UNLISTED_SECONDS.items() if module.startswith(folder)), 0
    )


def share_sizes(total: int, workers: int) -> list[int]:
    """How many tests worksteal's first distribution gives each worker (it gives each idle
    worker the pending tests divided by the workers still to serve)."""
    sizes = []
    for remaining_workers in range(workers, 0, -1):
        size = (total - sum(sizes)) // remaining_workers
        sizes.append(size)
    return sizes


def longest_modules_first(
    items: Sequence[Item],
    module_of: Callable[[Item], str],
    workers: int,
    seconds_of: Callable[[str], float] = module_seconds,
) -> list[Item]:
    """`items` reordered for `workers` worksteal workers (see the module's docstring); the same
    items, each once."""
    modules: dict[str, list[Item]] = {}
    for item in items:
        modules.setdefault(module_of(item), []).append(item)
    sizes = share_sizes(len(items), workers)
    heads: list[list[Item]] = [[] for _ in sizes]
    loads = [0.0 for _ in sizes]
    dealt: set[str] = set()
    for module in sorted(modules, key=seconds_of, reverse=True):
        if seconds_of(module) < LONG_SECONDS:
            break
        size = len(modules[module])
        fitting = [n for n, head in enumerate(heads) if len(head) + size <= sizes[n]]
        if not fitting:
            continue
        share = min(fitting, key=lambda n: loads[n])
        heads[share] += modules[module]
        loads[share] += seconds_of(module)
        dealt.add(module)
    rest = [item for module, members in modules.items() if module not in dealt for item in members]
    ordered: list[Item] = []
    for head, size in zip(heads, sizes, strict=True):
        filler = size - len(head)
        ordered += head + rest[:filler]
        del rest[:filler]
    return ordered + rest
