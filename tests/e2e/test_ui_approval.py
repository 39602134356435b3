"""A person approves prod in the Prefect UI, in a real (headless) browser.

The server asks for its API auth string on a login page; the approval form shows the digest and
only the parameters that truly differ from staging, in the UI that the server's address opens
(Prefect 3.9's React UI, under /v2) and in the classic UI (`/runs/flow-run/<id>`), where the
person answers it. git then records the name they typed. (The world's prod stage asks for an
approval within 120 s; see tests/e2e/conftest.py.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from selenium.webdriver.support import expected_conditions as visible

from tests.support.browser import Page, PageFailure, by_text, chromium, require_chromium
from tests.support.world import World

DIALOG = "//*[@role='dialog']"
APPROVER = "Grace Hopper (via the Prefect UI)"
REASON = "diff read in the browser"
SERVER_ERROR = "//h6[contains(normalize-space(), 'Something went wrong')]"  # a toast
SUBMIT_ATTEMPTS = 3
DIFFERENCE = re.compile(r"`([^`]+)`: (.+?) → (.+?)(?=, `|$)")


def _to_staging(world: World) -> str:
    """A release that stops after staging; the digest it promoted there."""

    def staging_stops(pipeline: dict[str, Any]) -> None:
        for stage in pipeline["stages"]:
            if stage["name"] == "staging":
                stage["autoPromote"] = False

    world.edit_pipeline(staging_stops)
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    desired = world.desired("staging")
    assert desired is not None, "staging has no desired state after the release"
    return desired.digest


def _differences(form: str) -> list[str]:
    """The form's lines of parameter differences, as the UI renders them (no backticks); each
    must name true differences: no value against a missing one, no equal sides."""
    lines = [line for line in form.splitlines() if line.startswith("Parameters that differ")]
    assert lines, f"the form names no parameter differences:\n{form}"
    for line in lines:
        for name, before, after in DIFFERENCE.findall(line):
            assert before != after, f"{name} shown as changed, {before} → {after}:\n{form}"
            assert "None" not in (before, after), f"phantom difference for {name}:\n{form}"
    return [" ".join(line.replace("`", "").split()) for line in lines]


def _log_in(page: Page, ui: str, auth_string: str) -> None:
    """Open the server's address, which asks for the API auth string, and give it."""
    page.open(ui)
    page.wait("the login page the server's address leads to", lambda d: "login" in d.current_url)
    field = page.element("the login page's auth string field", "//form//input[@type='password']")
    field.send_keys(auth_string)
    page.element("the login page's submit button", "//form//button[@type='submit']").click()
    page.wait(
        "the UI to let us in with the server's auth string",
        lambda d: "login" not in d.current_url,
    )


def _check_form(page: Page, what: str, digest: str, differences: list[str]) -> None:
    """The open Resume dialog shows the digest and exactly the form's parameter differences."""
    page.element(f"the Resume dialog of the {what}", DIALOG)
    page.wait(
        f"the {what}'s Resume dialog to show the approval form (its digest)",
        lambda _: f"Digest: {digest}" in page.text(DIALOG),
    )
    shown = page.text(DIALOG)
    missing = [line for line in differences if line not in shown]
    if missing or "None →" in shown:
        page.fail(
            f"the {what}'s form does not show the true differences only;\n"
            f"missing: {missing}\nshown: {shown}"
        )


def _check_default_ui(page: Page, ui: str, run_id: str, digest: str, lines: list[str]) -> None:
    """The UI the server's address opens (Prefect 3.9: the React UI at /v2) shows the form in
    the Resume dialog of its run menu; it is closed unanswered."""
    page.open(f"{ui}/v2/runs/flow-run/{run_id}")
    page.element("the default UI's run menu", by_text("button", "Open menu")).click()
    page.element("Resume in the run menu", by_text("*[@role='menuitem']", "Resume")).click()
    _check_form(page, "default UI", digest, lines)
    page.element("the dialog's Cancel button", by_text("button", "Cancel", DIALOG)).click()
    page.wait(
        "the Resume dialog to close", visible.invisibility_of_element_located(("xpath", DIALOG))
    )


APPROVE_SWITCH = f"{DIALOG}//label[normalize-space()='Approve']/following::*[@role='switch'][1]"


def _approve_in_classic_ui(
    page: Page,
    ui: str,
    run_id: str,
    digest: str,
    lines: list[str],
    still_paused: Callable[[], bool],
) -> None:
    """On the run's page (`/runs/flow-run/<id>`): Resume, read the form, approve, name, submit.

    A SQLite-backed server answers 503 when another write holds the database (heartbeats, lease
    renewals, other tests' runs); the classic UI does not retry: it shows "Something went wrong",
    and its dialog may then take no second submit. As a person would, open the page again and
    resubmit while the run is still paused."""
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        page.open(f"{ui}/runs/flow-run/{run_id}")
        page.element(
            "the run page's Resume button (a paused run)", by_text("button", "Resume")
        ).click()
        _check_form(page, "run page", digest, lines)
        page.element("the form's Approve switch", APPROVE_SWITCH).click()
        page.wait(
            "the Approve switch to turn on",
            lambda _: page.attribute(APPROVE_SWITCH, "aria-checked") == "true",
        )
        for label, value in (("Approver", APPROVER), ("Reason (Optional)", REASON)):
            field = page.element(
                f"the form's {label} field",
                f"{DIALOG}//label[normalize-space()='{label}']/following::textarea[1]",
            )
            field.send_keys(value)
        if _submitted(page, still_paused):
            return
        if not still_paused():
            page.fail("the UI reported an error, yet the run is no longer paused")
        print(f"submit {attempt}: the server did not take the input; the run still waits, again")
    page.fail(f"the server refused the input {SUBMIT_ATTEMPTS} times")


SUBMIT_WAIT_SECONDS = 60
"""A SQLite-backed server under a full test run may take most of a minute to take the input."""


def _submitted(page: Page, still_paused: Callable[[], bool]) -> bool:
    """Submit the form; True once the server took it (the dialog closed, or the run resumed),
    False when the UI reported an error or nothing happened in time."""

    def closed_or_failed(_: object) -> str | Literal[False]:
        if not page.shown(DIALOG):
            return "closed"
        if page.shown(SERVER_ERROR):
            return "failed"
        # A busy server may answer after the dialog gave up redrawing: the run going on is
        # the server's answer.
        return "closed" if not still_paused() else False

    page.element("the form's Submit button", by_text("button", "Submit", DIALOG)).click()
    try:
        outcome = page.wait(
            "the Resume dialog to close (the server accepting the input) or an error",
            closed_or_failed,
            timeout=SUBMIT_WAIT_SECONDS,
        )
    except PageFailure:
        return not still_paused()
    return outcome == "closed"


def test_a_person_approves_prod_in_the_prefect_ui(world: World, tmp_path: Path) -> None:
    require_chromium()  # before the release: without a browser there is no point
    digest = _to_staging(world)
    promotion = world.start("promote-stage", app=world.app, digest=digest, stage="prod")
    waiting = world.waiting_run("prod")
    lines = _differences(world.api.pause_description(waiting.id))
    prefect = world.platform.prefect
    ui = prefect.ui_url.rstrip("/")

    with chromium(tmp_path / "browser") as page:
        _log_in(page, ui, prefect.auth_string())
        _check_default_ui(page, ui, waiting.id, digest, lines)
        _approve_in_classic_ui(
            page,
            ui,
            waiting.id,
            digest,
            lines,
            lambda: world.api.flow_run(waiting.id).state_type == "PAUSED",
        )

    code, output = world.finish(promotion, timeout=90)
    assert code == 0, output
    evidence = world.evidence(digest, "prod")
    assert evidence is not None and evidence.approval is not None, "git records no approval"
    assert evidence.approval.decision == "approved", evidence.approval
    assert evidence.approval.approver == APPROVER, evidence.approval
    assert evidence.approval.reason == REASON, evidence.approval
    for target in ("prod-eu", "prod-us"):
        assert world.live_digest(target) == digest, target
