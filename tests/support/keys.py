"""SSH keys for signed-approval tests: made with ssh-keygen in a folder of the test's own, with
an allowed-signers file naming some of them (as git's `gpg.ssh.allowedSignersFile` does)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from conveyor.adapters import sshsig


@dataclass(frozen=True)
class Keys:
    folder: Path
    allowed_signers: Path

    def private(self, name: str) -> Path:
        return self.folder / name


def make_keys(folder: Path, allowed: tuple[str, ...], others: tuple[str, ...] = ()) -> Keys:
    """An ed25519 key per name; `allowed` are listed as `<name>@example.com`, restricted to
    Conveyor's signature namespace."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in (*allowed, *others):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
            check=True,
            timeout=30,
        )
        if name in allowed:
            public = (folder / f"{name}.pub").read_text().strip()
            lines.append(f'{name}@example.com namespaces="{sshsig.NAMESPACE}" {public}')
    signers = folder / "allowed_signers"
    signers.write_text("\n".join(lines) + "\n")
    return Keys(folder, signers)
