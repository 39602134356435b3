"""The SSH signature adapter: the only module that runs `ssh-keygen -Y`.

Why SSH signatures: an approver who signs commits with git already has the key, the tool and the
format (`ssh-keygen -Y sign`, an armored "SSH SIGNATURE" block), and an allowed-signers file is
how git itself says which key speaks for whom. Conveyor signs and verifies in its own namespace,
`conveyor-approval`, so a signature made for a git commit (namespace `git`) or for anything else
never counts as an approval, and the reverse. An allowed-signers line may restrict a key to that
namespace with `namespaces="conveyor-approval"`.

Verification asks the allowed-signers file which principal the signing key belongs to
(`find-principals`), then checks the signature for that principal (`verify`), so the principal
comes from the file, never from the signer. A signature that fails either step is not an error
here but a `Refused` with ssh-keygen's reason: the caller decides what a bad signature costs.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import InputError

NAMESPACE = "conveyor-approval"
"""The ssh-keygen signature namespace of every Conveyor signature."""
TIMEOUT_SECONDS = 20
MAX_SIGNATURE_BYTES = 16384
"""An armored SSH signature is well under 2 KiB, RSA-4096 included."""

_GOOD = re.compile(r'^Good "[^"]+" signature for (?P<principal>.+) with \S+ key (?P<key>\S+)$')
_ARMOR = re.compile(
    r"-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+-----END SSH SIGNATURE-----\n?"
)


@dataclass(frozen=True)
class Signer:
    """Who a valid signature speaks for: the allowed-signers principal and the key's
    fingerprint (`SHA256:...`)."""

    principal: str
    fingerprint: str


@dataclass(frozen=True)
class Refused:
    """Why a signature does not count (in ssh-keygen's words where it gave some)."""

    reason: str


def sign(message: bytes, key: Path) -> str:
    """Sign `message` with the private key at `key` in Conveyor's namespace; the armored
    signature. An unreadable or passphrase-protected key without an agent is an InputError."""
    if not key.is_file():
        raise InputError(f"signing key {key} does not exist", hint="give the private key's path")
    signed = _keygen("sign", "-f", str(key), "-n", NAMESPACE, message=message)
    if signed.returncode != 0:
        raise InputError(
            f"ssh-keygen could not sign with {key}: {_last_line(signed.stderr)}",
            hint="use an unencrypted key or one ssh-agent holds (a key with a passphrase "
            "waits for it), readable by you only",
        )
    return signed.stdout.decode()


def verify(message: bytes, signature: str, allowed_signers: Path) -> Signer | Refused:
    """Whom `signature` over `message` speaks for, per `allowed_signers`; or why it does not
    count (malformed, a key the file does not list, another message or namespace)."""
    if len(signature) > MAX_SIGNATURE_BYTES or not _ARMOR.fullmatch(signature.strip() + "\n"):
        return Refused("not an armored SSH signature (-----BEGIN SSH SIGNATURE-----)")
    with tempfile.TemporaryDirectory(prefix="conveyor-sig-") as folder:
        path = Path(folder) / "signature"
        path.write_text(signature.strip() + "\n")
        found = _keygen("find-principals", "-s", str(path), "-f", str(allowed_signers))
        if found.returncode != 0:
            return Refused(f"its key is not in {allowed_signers.name}")
        reasons = []
        for principal in found.stdout.decode().split():
            checked = _keygen(
                "verify",
                "-f",
                str(allowed_signers),
                "-I",
                principal,
                "-n",
                NAMESPACE,
                "-s",
                str(path),
                message=message,
            )
            good = _GOOD.match(checked.stdout.decode().strip())
            if checked.returncode == 0 and good:
                return Signer(good["principal"], good["key"])
            reasons.append(_last_line(checked.stderr) or "verification failed")
        return Refused("; ".join(reasons) or "no principal to check it for")


def _keygen(*arguments: str, message: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", "-Y", *arguments],
            input=message,
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        raise InputError(
            "ssh-keygen is not installed", hint="install OpenSSH's client (Debian: openssh-client)"
        ) from error
    except subprocess.TimeoutExpired:
        failed = f"ssh-keygen took longer than {TIMEOUT_SECONDS}s".encode()
        return subprocess.CompletedProcess([], 1, b"", failed)


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""
