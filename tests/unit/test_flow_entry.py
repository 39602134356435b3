"""`python -m flows FLOW`: every flow name leads to its flow, and a process imports only the
flow it runs (and not the CEL evaluator unless a health rule needs it): the imports are most of
a short flow run's CPU time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flows.__main__ import FLOWS, load_flow, main


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_name_loads_the_flow_of_that_name(name: str) -> None:
    assert load_flow(name).name == name


def test_an_unknown_flow_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-flow", "{}"]) == 2
    assert "usage: python -m flows {release," in capsys.readouterr().err


def test_a_release_process_imports_only_what_the_release_needs() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from flows.__main__ import load_flow; load_flow('release'); "
            "print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "flows.release" in loaded
    others = {"flows.reconcile", "flows.reconcile_cluster", "flows.watch", "flows.rollback"}
    assert not others & set(loaded)
    assert "cel" not in loaded
