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


EARLY_PROBE = """
import os, runpy, sys
os.environ.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS", None)
sys.argv = ["flows"]  # a usage error: nothing runs
try:
    runpy.run_module("flows", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
from conveyor.adapters.prefect_api import PLAIN_CONSOLE_ENVIRONMENT
print(all(os.environ.get(name) == value for name, value in PLAIN_CONSOLE_ENVIRONMENT.items()))
"""


def test_python_m_flows_names_the_plain_console_before_it_imports_prefect() -> None:
    printed = subprocess.run(
        [sys.executable, "-c", EARLY_PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == "True"


CONSOLE_PROBE = """
import logging, os, sys
if sys.argv[1] == "early":
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS"] = "flows.console.PlainConsoleHandler"
else:
    os.environ.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS", None)
from prefect import flow  # Prefect configures logging here
import flows.console as console
calls = []
configure = console.setup_logging
console.setup_logging = lambda **kw: calls.append(kw) or configure(**kw)
console.use_plain_console()
print(len(calls), [type(h).__name__ for h in logging.getLogger().handlers])
"""


@pytest.mark.parametrize(
    ("named", "configured"),
    [("early", "0"), ("late", "1")],
)
def test_logging_is_configured_again_only_when_the_plain_console_is_not_in_place(
    named: str, configured: str
) -> None:
    printed = (
        subprocess.run(
            [sys.executable, "-c", CONSOLE_PROBE, named], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .split(maxsplit=1)
    )
    assert printed == [configured, "['PlainConsoleHandler']"]
