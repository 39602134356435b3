"""Stop the line: one switch in the state repository that halts every promotion.

When production is on fire, the first thing a team wants is that nothing else moves. The switch
is a file, `halt.yaml`, in the state repository: committed with who stopped the line, when and
why, so it shows in git's history like every other decision, works the same for every app and
every way of starting a promotion (UI, API, CLI, schedules), and is lifted by a commit too.
Promotions check it before they start and again right before each target's apply; reconcile
keeps running (it only puts back what git already says).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import yaml

from conveyor.adapters.gitrepo import Author, StateRepository
from conveyor.errors import InputError

HALT_PATH = "halt.yaml"


@dataclass(frozen=True)
class Halt:
    """The line is stopped: by whom, why and since when."""

    by: str
    reason: str
    since: datetime

    def explain(self) -> str:
        return (
            f"the line is stopped since {self.since:%Y-%m-%d %H:%M} UTC by {self.by}: "
            f"{self.reason} (`conveyor resume-the-line` lifts it)"
        )


def read_halt(repo: StateRepository) -> Halt | None:
    """The halt in force, or None when the line runs."""
    content = repo.read(HALT_PATH)
    if content is None:
        return None
    try:
        data = yaml.safe_load(content)
        return Halt(str(data["by"]), str(data["reason"]), datetime.fromisoformat(data["since"]))
    except (yaml.YAMLError, TypeError, KeyError, ValueError) as error:
        # A damaged switch still stops the line: whoever wrote it meant to stop something.
        return Halt("(unreadable halt.yaml)", f"{HALT_PATH} could not be read: {error}", _epoch())


def stop_the_line(repo: StateRepository, *, by: str, reason: str, now: datetime) -> str:
    """Commit the halt; return the commit. Refused without a reason or a person."""
    if not reason.strip() or not by.strip():
        raise InputError("stopping the line needs who (--by) and why (--reason)")
    content = yaml.safe_dump(
        {"by": by, "reason": reason, "since": now.astimezone(UTC).isoformat()}, sort_keys=True
    ).encode()
    return repo.commit_files(
        {HALT_PATH: content},
        f"stop the line: {reason}\n\nby {by}",
        Author(by, "conveyor@localhost"),
    )


def resume_the_line(repo: StateRepository, *, by: str, reason: str) -> str:
    """Commit the removal of the halt; StateError when the line is not stopped."""
    if read_halt(repo) is None:
        raise InputError("the line is not stopped: nothing to resume")
    return repo.commit_files(
        {HALT_PATH: None},
        f"resume the line: {reason or 'no reason given'}\n\nby {by}",
        Author(by, "conveyor@localhost"),
    )


def _epoch() -> datetime:
    return datetime.fromtimestamp(0, UTC)
