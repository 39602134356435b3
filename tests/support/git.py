"""Git as tests and benchmarks run it: `git -C <repo> ...` with an identity of their own.

Commits they make carry a fixed author and committer, so nothing depends on the machine's git
configuration; a test that checks who committed passes the identity it expects to see.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Identity:
    """Who a commit is by: author and committer alike."""

    name: str
    email: str

    def environment(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


TESTER = Identity("t", "t@example.com")


def git(repo: Path, *args: str, identity: Identity = TESTER, umask: int = -1) -> str:
    """Run `git -C repo args...` as `identity`; its output, stripped. A failure raises."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **identity.environment()},
        umask=umask,
    )
    return result.stdout.strip()


def init_repository(repo: Path, message: str) -> None:
    """Make the folder `repo` a repository on `main` whose one commit holds all it contains."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
