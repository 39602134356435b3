"""Two releases of one app, of two commits (two digests), started at the same moment and both
going through dev and test. The target slots serialise them: each target is promoted twice, each
digest passes each stage once, and every target ends running what git records for it last."""

from __future__ import annotations

import time
from typing import Any

from tests.support.convergence import assert_git_and_cluster_agree
from tests.support.world import BUILT, World


def _dev_and_test(pipeline: dict[str, Any]) -> None:
    dev, test = pipeline["stages"][:2]
    test.pop("gates", None)  # the smoke-test Job waits for pods KWOK never runs to completion
    test["autoPromote"] = False
    pipeline["stages"] = [dev, test]


def test_two_releases_started_at_once_are_both_served_and_leave_targets_agreeing(
    world: World,
) -> None:
    world.edit_pipeline(_dev_and_test)
    first = world.git("rev-parse", "HEAD").strip()
    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
    )
    second = world.git("rev-parse", "HEAD").strip()

    began = time.monotonic()
    releases = [world.start("release", app=world.app, ref=ref) for ref in (first, second)]
    results = [world.finish(process, timeout=420) for process in releases]
    print(f"\nboth releases done in {time.monotonic() - began:.0f}s")
    for code, output in results:
        assert code == 0, output[-4000:]

    digests = {found.group(1) for _, output in results if (found := BUILT.search(output))}
    assert len(digests) == 2, digests
    for digest in digests:
        for stage in ("dev", "test"):
            evidence = world.evidence(digest, stage)
            assert evidence is not None and evidence.verdict == "passed", (digest, stage)
    history = world.state_log()
    for target in ("dev", "test"):
        promotions = [line for line in history if f"{world.app}/{target}: promote" in line]
        assert len(promotions) == 2, history
    assert_git_and_cluster_agree(world, "dev", "test")
    for target in ("dev", "test"):
        code, output = world.run("reconcile", app=world.app, target=target)
        assert code == 0 and "live matches" in output, output
