"""SSH signatures through the real ssh-keygen: what verifies, and what does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conveyor.adapters import sshsig
from conveyor.errors import InputError
from tests.support.keys import Keys, make_keys

STATEMENT = b"conveyor-approval-v1\napp: web\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"), ("alice", "bob"), others=("mallory",))


def test_a_listed_key_verifies_as_its_principal(keys: Keys) -> None:
    signature = sshsig.sign(STATEMENT, keys.private("alice"))
    verified = sshsig.verify(STATEMENT, signature, keys.allowed_signers)
    assert isinstance(verified, sshsig.Signer), verified
    assert verified.principal == "alice@example.com"
    assert verified.fingerprint.startswith("SHA256:")
    bob = sshsig.verify(
        STATEMENT, sshsig.sign(STATEMENT, keys.private("bob")), keys.allowed_signers
    )
    assert isinstance(bob, sshsig.Signer) and bob.fingerprint != verified.fingerprint


def test_a_key_not_listed_does_not_count(keys: Keys) -> None:
    signature = sshsig.sign(STATEMENT, keys.private("mallory"))
    refused = sshsig.verify(STATEMENT, signature, keys.allowed_signers)
    assert isinstance(refused, sshsig.Refused) and "not in allowed_signers" in refused.reason


def test_a_signature_of_another_statement_does_not_count(keys: Keys) -> None:
    signature = sshsig.sign(b"conveyor-approval-v1\napp: other\n", keys.private("alice"))
    refused = sshsig.verify(STATEMENT, signature, keys.allowed_signers)
    assert isinstance(refused, sshsig.Refused) and "incorrect signature" in refused.reason


def test_a_git_commit_signature_does_not_count(keys: Keys, tmp_path: Path) -> None:
    """Made in git's namespace: the same key and bytes, never an approval."""
    made = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(keys.private("alice")), "-n", "git"],
        input=STATEMENT,
        capture_output=True,
        check=True,
    )
    refused = sshsig.verify(STATEMENT, made.stdout.decode(), keys.allowed_signers)
    assert isinstance(refused, sshsig.Refused), refused


@pytest.mark.parametrize(
    "text",
    ["", "hello", "-----BEGIN SSH SIGNATURE-----\n!!\n-----END SSH SIGNATURE-----", "x" * 20000],
)
def test_text_that_is_no_signature_does_not_count(keys: Keys, text: str) -> None:
    refused = sshsig.verify(STATEMENT, text, keys.allowed_signers)
    assert isinstance(refused, sshsig.Refused) and "armored" in refused.reason


def test_a_missing_key_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        sshsig.sign(STATEMENT, tmp_path / "nope")
