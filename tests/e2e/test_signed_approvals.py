"""Signed approvals end to end: a stage that needs two signers from its allowed-signers file,
never the promoter. Each way around it is tried against a real paused run (a key nobody listed,
the promoter's own key, a signature made for another digest, one signer twice, a typed name with
no signature) and counts for nothing; two listed signers other than the promoter let it through,
and git records their signatures, which verify again with plain ssh-keygen."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters import sshsig
from conveyor.promotion import signatures
from conveyor.records import state
from tests.support.keys import Keys, make_keys
from tests.support.world import World

REFUSED = 2


@pytest.fixture
def keys(world: World, tmp_path: Path) -> Keys:
    made = make_keys(tmp_path / "keys", ("alice", "bob", "carol"), others=("mallory",))
    signers = world.root / "config" / "signers"
    signers.mkdir()
    shutil.copy(made.allowed_signers, signers / "test")

    def signed_test_stage(pipeline: dict[str, Any]) -> None:
        dev, test = pipeline["stages"][:2]
        dev["autoPromote"] = False
        test.pop("gates", None)
        test["approval"] = {
            "required": True,
            "timeout": "5m",
            "signatures": {
                "required": 2,
                "allowedSigners": "signers/test",
                "forbidPromoter": True,
            },
        }
        pipeline["stages"] = [dev, test]

    world.edit_pipeline(signed_test_stage)
    return made


def _form_after(world: World, previous: str, timeout: float = 60) -> str:
    """The waiting run's form once it differs from `previous` (the run paused again)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The run may be between two pauses: found waiting, resumed before its form is read.
        form = world.api.pause_form(world.api.flow_run(world.waiting_run("test").id))
        if form and form != previous:
            return form
        time.sleep(0.5)
    raise AssertionError(f"the run did not pause again within {timeout:.0f}s:\n{previous}")


def test_two_signers_other_than_the_promoter_are_needed_and_recorded(
    world: World, keys: Keys, tmp_path: Path
) -> None:
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    log_before = world.state_log()

    unsigned = world.conveyor("promote", world.app, "test", "--digest", digest)
    assert unsigned.returncode == REFUSED, unsigned.stdout + unsigned.stderr
    assert "forbids approval by the promoter" in unsigned.stdout + unsigned.stderr
    assert world.state_log() == log_before and world.desired("test") is None

    request = signatures.request_statement(world.app, "test", digest)
    promotion = world.start(
        "promote-stage",
        app=world.app,
        digest=digest,
        stage="test",
        request_signature=sshsig.sign(request, keys.private("alice")),
    )
    form = world.api.pause_description(world.waiting_run("test").id)
    assert "2 distinct signer(s)" in form and "Signed so far: nobody" in form, form
    rendered = signatures.rendered_hash_in(form)
    assert rendered is not None, form

    elsewhere = signatures.approval_statement(world.app, "test", "sha256:" + "0" * 64, rendered)
    reused = tmp_path / "reused.sig"
    reused.write_text(sshsig.sign(elsewhere, keys.private("bob")))
    attempts = [
        (["--sign-with", str(keys.private("mallory"))], "its key is not in"),
        (["--sign-with", str(keys.private("alice"))], "promoted this digest"),
        (["--signature", str(reused)], "incorrect signature"),
    ]
    for arguments, why in attempts:
        answered = world.conveyor("approve", world.app, "test", *arguments)
        assert answered.returncode == 0, answered.stdout + answered.stderr
        form = _form_after(world, form)
        assert "Signed so far: nobody" in form and why in form, form
    typed = world.api.resume(
        world.waiting_run("test").id, {"approve": True, "approver": "carol", "reason": "trust me"}
    )
    assert typed.accepted, str(typed)
    form = _form_after(world, form)
    assert "Signed so far: nobody" in form and "carried no signature" in form, form
    assert world.evidence(digest, "test") is None and world.live_digest("test") is None

    for _ in range(2):  # bob twice: one signer
        answered = world.conveyor(
            "approve", world.app, "test", "--sign-with", str(keys.private("bob"))
        )
        assert answered.returncode == 0, answered.stdout + answered.stderr
        form = _form_after(world, form)
    assert "Signed so far: bob@example.com." in form and "has signed already" in form, form
    assert world.live_digest("test") is None, "nothing applied before the second signer"

    answered = world.conveyor(
        "approve", world.app, "test", "--sign-with", str(keys.private("carol"))
    )
    assert answered.returncode == 0, answered.stdout + answered.stderr
    code, output = world.finish(promotion)
    assert code == 0, output[-3000:]

    evidence = world.evidence(digest, "test")
    assert evidence is not None and evidence.approval is not None
    approval = evidence.approval
    assert approval.approver == "bob@example.com, carol@example.com"
    assert [s.principal for s in approval.signatures] == ["bob@example.com", "carol@example.com"]
    statement = signatures.approval_statement(world.app, "test", digest, approval.rendered_hash)
    for signed in approval.signatures:  # anyone can check the record with ssh-keygen alone
        path = tmp_path / f"{signed.principal}.sig"
        path.write_text(signed.signature)
        checked = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(keys.allowed_signers),
                "-I",
                signed.principal,
                "-n",
                sshsig.NAMESPACE,
                "-s",
                str(path),
            ],
            input=statement,
            capture_output=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
    assert world.live_digest("test") == digest

    # Whoever can push to the state repository forges the record: carol's signature swapped for
    # a second copy of bob's. A deploy that relies on the recorded approval verifies it again.
    forged = replace(
        approval,
        signatures=(
            approval.signatures[0],
            replace(approval.signatures[1], signature=approval.signatures[0].signature),
        ),
    )
    state.record(world.repository(), evidence=replace(evidence, approval=forged))
    code, output = world.run("deploy-target", app=world.app, target="test", digest=digest)
    assert code == REFUSED, output[-3000:]
    assert "1 of the 2 signer(s) test requires verify" in output, output[-3000:]
