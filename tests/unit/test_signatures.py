"""Signed approvals' pure rules: what is signed, where the form says it, who counts."""

from __future__ import annotations

import pytest

from conveyor.adapters.sshsig import Refused, Signer
from conveyor.promotion import signatures

DIGEST = "sha256:" + "d" * 64
RENDERED = "sha256:" + "e" * 64
ALICE = Signer("alice@example.com", "SHA256:alice")
BOB = Signer("bob@example.com", "SHA256:bob")
CAROL = Signer("carol@example.com", "SHA256:carol")
BOB_OTHER_KEY = Signer("bob@example.com", "SHA256:bob-laptop")
ALICE_KEY_AS_EVE = Signer("eve@example.com", "SHA256:alice")


def test_the_statement_names_app_stage_digest_and_rendered_hash() -> None:
    statement = signatures.approval_statement("web", "prod", DIGEST, RENDERED).decode()
    assert statement.splitlines() == [
        "conveyor-approval-v1",
        "app: web",
        "stage: prod",
        f"digest: {DIGEST}",
        f"rendered: {RENDERED}",
        "decision: approve",
    ]
    other_digest = signatures.approval_statement("web", "prod", "sha256:" + "f" * 64, RENDERED)
    other_stage = signatures.approval_statement("web", "staging", DIGEST, RENDERED)
    assert len({statement.encode(), other_digest, other_stage}) == 3
    request = signatures.request_statement("web", "prod", DIGEST)
    assert request != statement.encode() and b"conveyor-promotion-request-v1" in request


@pytest.mark.parametrize(
    ("form", "found"),
    [
        (f"x\n{signatures.rendered_hash_line(RENDERED)}\ny", RENDERED),
        ("no line here", None),
        (
            f"{signatures.rendered_hash_line(RENDERED)}\n{signatures.rendered_hash_line(DIGEST)}",
            None,
        ),  # two: ambiguous, none taken
        (f"  {signatures.rendered_hash_line(RENDERED)}", None),  # only a line of its own
    ],
)
def test_the_form_names_one_rendered_hash_to_sign(form: str, found: str | None) -> None:
    assert signatures.rendered_hash_in(form) == found


@pytest.mark.parametrize(
    ("checked", "promoter", "forbid", "counted", "refused"),
    [
        ([BOB, CAROL], ALICE, True, [BOB, CAROL], []),
        ([ALICE, BOB], ALICE, True, [BOB], ["promoted this digest"]),
        ([ALICE, BOB], ALICE, False, [ALICE, BOB], []),
        ([ALICE_KEY_AS_EVE], ALICE, True, [], ["promoted this digest"]),  # same key
        ([BOB, BOB], None, True, [BOB], ["has signed already"]),
        ([BOB, BOB_OTHER_KEY], None, True, [BOB], ["has signed already"]),  # same principal
        ([Refused("bad"), CAROL], None, True, [CAROL], ["signature 1: bad"]),
        ([], ALICE, True, [], []),
    ],
)
def test_who_counts(
    checked: list[Signer | Refused],
    promoter: Signer | None,
    forbid: bool,
    counted: list[Signer],
    refused: list[str],
) -> None:
    tally = signatures.tally(checked, promoter=promoter, forbid_promoter=forbid)
    assert list(tally.counted) == counted
    assert len(tally.refused) == len(refused)
    for reason, expected in zip(tally.refused, refused, strict=True):
        assert expected in reason
    assert [checked[p] for p in tally.positions] == counted
    assert tally.enough(len(counted)) and not tally.enough(len(counted) + 1)
