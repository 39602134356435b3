"""Signed approvals: what a signature covers, and whether the signers a stage has count enough.

Why: a typed name in a form proves nothing about who approved. A stage may require approvals
signed with the approvers' SSH keys (`approval.signatures` in its pipeline, verified against an
allowed-signers file by conveyor.adapters.sshsig). This module holds the rules, pure and tested
by table:

- What is signed (`approval_statement`): the app, the stage, the digest and the stage's rendered
  hash (every target's manifests, parameters applied). A signature for another digest, another
  stage, or the same digest with other parameters does not verify, so it cannot be reused.
- What a promoter signs to say who asked for a promotion (`request_statement`), for stages that
  forbid the promoter's own approval.
- Who counts (`tally`): distinct principals with distinct keys, never the promoter (by principal
  or by key), until the stage's number is reached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.adapters.sshsig import Refused, Signer

STATEMENT_VERSION = "conveyor-approval-v1"
REQUEST_VERSION = "conveyor-promotion-request-v1"
_RENDERED_HASH_LINE = re.compile(
    r"^Rendered hash \(signatures cover it\): `(sha256:[0-9a-f]{64})`$"
)


def approval_statement(app: str, stage: str, digest: str, rendered_hash: str) -> bytes:
    """The exact bytes an approver signs to approve `digest` at `stage` for these manifests."""
    return (
        f"{STATEMENT_VERSION}\napp: {app}\nstage: {stage}\ndigest: {digest}\n"
        f"rendered: {rendered_hash}\ndecision: approve\n"
    ).encode()


def request_statement(app: str, stage: str, digest: str) -> bytes:
    """The exact bytes a promoter signs to ask for `digest` to enter `stage`."""
    return f"{REQUEST_VERSION}\napp: {app}\nstage: {stage}\ndigest: {digest}\n".encode()


def rendered_hash_line(rendered_hash: str) -> str:
    """The approval form's line that tells `conveyor approve --sign-with` what to sign."""
    return f"Rendered hash (signatures cover it): `{rendered_hash}`"


def rendered_hash_in(form: str) -> str | None:
    """The rendered hash an approval form asks signatures for, or None when it names none."""
    found = [m[1] for line in form.splitlines() if (m := _RENDERED_HASH_LINE.match(line))]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class Tally:
    """The signers that count (with the position of the signature each counted for), and why
    each other signature did not."""

    counted: tuple[Signer, ...]
    refused: tuple[str, ...]
    positions: tuple[int, ...] = ()

    def enough(self, required: int) -> bool:
        return len(self.counted) >= required

    def names(self) -> str:
        return ", ".join(signer.principal for signer in self.counted)


def tally(
    checked: Sequence[Signer | Refused],
    *,
    promoter: Signer | None,
    forbid_promoter: bool,
) -> Tally:
    """Count verified signers once each (by principal and by key); with `forbid_promoter`, a
    signer who is the promoter (same principal or same key) does not count. `checked` holds
    each signature's verification, in the order given."""
    counted: list[Signer] = []
    refused: list[str] = []
    positions: list[int] = []
    for number, result in enumerate(checked, 1):
        if isinstance(result, Refused):
            refused.append(f"signature {number}: {result.reason}")
            continue
        if forbid_promoter and promoter is not None and _same_person(result, promoter):
            refused.append(
                f"signature {number}: {result.principal} promoted this digest and may not "
                "approve it too"
            )
            continue
        if any(_same_person(result, signer) for signer in counted):
            refused.append(f"signature {number}: {result.principal} has signed already")
            continue
        counted.append(result)
        positions.append(number - 1)
    return Tally(tuple(counted), tuple(refused), tuple(positions))


def _same_person(one: Signer, other: Signer) -> bool:
    return one.principal == other.principal or one.fingerprint == other.fingerprint
