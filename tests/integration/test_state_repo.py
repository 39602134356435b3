"""Desired state and evidence in REAL git repositories (bare local paths and file:// URLs).

The concurrency test runs 8 processes that each commit 5 targets' desired state into one bare
repository at once and then counts commits and files: a lost race must be retried, never lost.
Measured figures (latency, total time, retries) are printed; run with -s to see them.
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters import gitrepo
from conveyor.adapters.gitrepo import Author, StateRepository
from conveyor.errors import InputError, StateError
from conveyor.records import state
from conveyor.records.state import Approval, DesiredState, Evidence, GateRecord
from tests.support.git import Identity, git

WHEN = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ALICE = Author("Alice", "alice@example.com")
BOB = Identity("Bob", "bob@example.com")


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def desired(target: str = "prod-eu", n: int = 1, **changes: Any) -> DesiredState:
    base = DesiredState(
        app="web",
        target=target,
        stage="prod",
        digest=digest(n),
        parameters={"replicas": n},
        parameters_hash=digest(1000 + n),
        rendered_hash=digest(2000 + n),
        promoted_by=f"flow-run release-web-{n}",
        flow_run_id=f"run-{n}",
        approved_by=None,
        updated_at=WHEN + timedelta(minutes=n),
    )
    return replace(base, **changes)


def evidence(target: str, n: int = 1, **changes: Any) -> Evidence:
    base = Evidence(
        app="web",
        digest=digest(n),
        stage="staging",
        verdict="pending",
        gates={target: (GateRecord("smoke", "passed", "job completed", 3.5, WHEN),)},
        approval=None,
    )
    return replace(base, **changes)


def _git(cwd: Path, *args: str) -> str:
    return git(cwd, *args, identity=BOB)


def previous_digest(repo: StateRepository, app: str, target: str) -> str | None:
    """The digest a rollback of the target returns to (as the rollback flow finds it)."""
    current = state.read_desired(repo, app, target)
    if current is None:
        return None
    goal = state.previous_desired(current, state.history(repo, app, target))
    return None if goal is None else goal.digest


def _subjects(bare: Path) -> list[str]:
    return _git(bare, "log", "--format=%s", "main").splitlines()


def _files(bare: Path, folder: str) -> list[str]:
    """The paths of the files under `folder` on `main`, sorted, as git lists them."""
    return sorted(_git(bare, "ls-tree", "-r", "--name-only", "main", "--", folder).splitlines())


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return tmp_path / "state.git"


@pytest.fixture
def repo(bare: Path, tmp_path: Path) -> StateRepository:
    return gitrepo.open_state_repository(str(bare), tmp_path / "work")


def test_a_missing_local_path_becomes_a_bare_repository_with_an_empty_first_commit(
    bare: Path, tmp_path: Path
) -> None:
    gitrepo.open_state_repository(str(bare), tmp_path / "work")
    assert _git(bare, "rev-parse", "--is-bare-repository") == "true"
    assert _subjects(bare) == ["Start the state repository"]
    assert _git(bare, "ls-tree", "-r", "main") == ""
    gitrepo.open_state_repository(str(bare), tmp_path / "other-work")
    assert _subjects(bare) == ["Start the state repository"], "opening again adds nothing"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_repository_with_a_work_tree_or_none_at_all_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(StateError, match="is not a git repository"):
        gitrepo.open_state_repository(str(tmp_path / "plain"), tmp_path / "work")
    _git(tmp_path, "init", "-q", "-b", "main", "checkout")
    with pytest.raises(StateError, match="with a work tree; writers push to it") as raised:
        gitrepo.open_state_repository(str(tmp_path / "checkout"), tmp_path / "work")
    assert "git clone --bare" in str(raised.value)


def test_an_unreachable_remote_names_the_repository(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/nowhere.git"
    with pytest.raises(StateError, match=f"state repository {url}: `git fetch") as raised:
        gitrepo.open_state_repository(url, tmp_path / "work")
    assert raised.value.hint


def test_files_are_written_listed_logged_and_deleted(repo: StateRepository, bare: Path) -> None:
    first = repo.commit_files({"a/x.yaml": b"1\n", "a/b/y.yaml": b"2\n", "z": b"3"}, "add", ALICE)
    assert repo.read("a/x.yaml") == b"1\n"
    assert repo.read("a/missing.yaml") is None
    assert _files(bare, "a") == ["a/b/y.yaml", "a/x.yaml"]
    assert _files(bare, "nothing") == []
    second = repo.commit_files(
        {"a/x.yaml": None, "z": lambda old: (old or b"") + b"4"}, "edit", ALICE
    )
    assert repo.read("a/x.yaml") is None
    assert repo.read("a/x.yaml", first) == b"1\n"
    assert repo.read("z") == b"34"
    entries = repo.log("a/x.yaml")
    assert [(e.commit, e.message, e.author) for e in entries] == [
        (second, "edit", "Alice <alice@example.com>"),
        (first, "add", "Alice <alice@example.com>"),
    ]
    assert abs(entries[0].date - datetime.now(UTC)) < timedelta(minutes=1)
    assert _git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main") == (
        "Alice <alice@example.com>|Alice <alice@example.com>"
    )
    assert repo.commit_files({"a/x.yaml": None}, "nothing to delete", ALICE) == second


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"/etc/passwd": b""}, "is not a normalized relative path"),
        ({"a/../b": b""}, "is not a normalized relative path"),
        ({"a/": b""}, "is not a normalized relative path"),
        ({"a/b/c": b""}, "cannot write a/b/c: a/b is in the way"),
        ({"a": b""}, "cannot write a: a/b is in the way"),
    ],
    ids=["absolute", "dot-dot", "trailing-slash", "file-as-folder", "folder-as-file"],
)
def test_bad_paths_are_refused(
    repo: StateRepository, changes: dict[str, bytes], message: str
) -> None:
    repo.commit_files({"a/b": b"file"}, "setup", ALICE)
    with pytest.raises(StateError, match=message):
        repo.commit_files(changes, "bad", ALICE)


def test_record_read_history_and_previous_digest(repo: StateRepository, bare: Path) -> None:
    assert state.read_desired(repo, "web", "prod-eu") is None
    assert state.history(repo, "web", "prod-eu") == []
    assert previous_digest(repo, "web", "prod-eu") is None

    one = state.record(repo, desired=desired(n=1), reason="staging passed")
    two = state.record(repo, desired=desired(n=2, approved_by="alice"), reason="staging passed")
    again = state.record(repo, desired=desired(n=2, updated_at=WHEN + timedelta(hours=1)))
    state.record(repo, desired=desired("prod-us", n=9))

    assert state.read_desired(repo, "web", "prod-eu") == desired(
        n=2, updated_at=WHEN + timedelta(hours=1)
    )
    entries = state.history(repo, "web", "prod-eu")
    assert [(e.commit, e.desired.digest if e.desired else None) for e in entries] == [
        (again, digest(2)),
        (two, digest(2)),
        (one, digest(1)),
    ]
    assert entries[1].desired == desired(n=2, approved_by="alice")
    assert entries[0].author == "Conveyor <conveyor@localhost>"
    assert previous_digest(repo, "web", "prod-eu") == digest(1), "same digest is skipped"
    assert previous_digest(repo, "web", "prod-us") is None
    assert _subjects(bare) == [
        "web/prod-us: promote sha256:000000000000…",
        "web/prod-eu: promote sha256:000000000000…",
        "web/prod-eu: promote sha256:000000000000… (staging passed; approved by alice)",
        "web/prod-eu: promote sha256:000000000000… (staging passed)",
        "Start the state repository",
    ]
    for commit in (one, two, again):
        assert _git(bare, "show", "--format=", "--name-only", commit) == "apps/web/prod-eu.yaml"


def test_recording_the_same_state_again_makes_no_commit(repo: StateRepository, bare: Path) -> None:
    first = state.record(repo, desired=desired())
    assert state.record(repo, desired=desired()) == first
    assert state.record(repo, evidence=evidence("staging-eu")) != first
    tip = _git(bare, "rev-parse", "main")
    assert state.record(repo, evidence=evidence("staging-eu")) == tip
    assert len(_subjects(bare)) == 3


def test_a_revert_made_by_hand_is_what_is_read_afterwards(
    repo: StateRepository, bare: Path, tmp_path: Path
) -> None:
    state.record(repo, desired=desired(n=1))
    state.record(repo, desired=desired(n=2))
    _git(tmp_path, "clone", "-q", str(bare), "hand")
    _git(tmp_path / "hand", "revert", "--no-edit", "HEAD")
    _git(tmp_path / "hand", "push", "-q", "origin", "main")

    assert state.read_desired(repo, "web", "prod-eu") == desired(n=1)
    newest = state.history(repo, "web", "prod-eu")[0]
    assert newest.author == "Bob <bob@example.com>"
    assert newest.message.startswith('Revert "web/prod-eu: promote sha256:000000000000…"')
    assert newest.desired == desired(n=1)
    assert previous_digest(repo, "web", "prod-eu") == digest(2)


def test_a_file_broken_by_hand_is_an_error_naming_file_and_key(
    repo: StateRepository, bare: Path, tmp_path: Path
) -> None:
    state.record(repo, desired=desired(n=1))
    _git(tmp_path, "clone", "-q", str(bare), "hand")
    path = tmp_path / "hand" / "apps" / "web" / "prod-eu.yaml"
    path.write_text(path.read_text().replace(digest(1), "sha256:oops"))
    _git(tmp_path / "hand", "commit", "-qam", "typo")
    _git(tmp_path / "hand", "push", "-q", "origin", "main")

    message = "apps/web/prod-eu.yaml: key 'digest' is 'sha256:oops', not a sha256 digest"
    with pytest.raises(StateError, match=message):
        state.read_desired(repo, "web", "prod-eu")
    entries = state.history(repo, "web", "prod-eu")
    assert entries[0].desired is None
    assert entries[0].problem and message in entries[0].problem
    assert entries[1].desired == desired(n=1)
    state.record(repo, desired=desired(n=3))
    assert previous_digest(repo, "web", "prod-eu") == digest(1), "broken versions skipped"


def test_desired_state_and_evidence_in_one_commit(repo: StateRepository, bare: Path) -> None:
    value = desired(n=4, stage="staging", target="staging-eu")
    proof = evidence("staging-eu", n=4, verdict="passed")
    sha = state.record(repo, desired=value, evidence=proof, reason="test passed")
    evidence_file = f"evidence/web/{digest(4).removeprefix('sha256:')}/staging.yaml"
    assert _git(bare, "show", "--format=", "--name-only", sha).splitlines() == [
        "apps/web/staging-eu.yaml",
        evidence_file,
    ]
    assert _git(bare, "log", "-1", "--format=%B", sha) == (
        "web/staging-eu: promote sha256:000000000000… (test passed)\n\n"
        "web sha256:000000000000…: staging evidence (passed; staging-eu: 1/1 gates passed)"
    )
    assert state.read_desired(repo, "web", "staging-eu") == value
    assert state.read_evidence(repo, "web", digest(4), "staging") == proof
    assert state.read_evidence(repo, "web", digest(4), "prod") is None


def test_a_stage_with_two_targets_is_recorded_in_one_commit_that_reverts_cleanly(
    repo: StateRepository, bare: Path, tmp_path: Path
) -> None:
    before = state.record(repo, desired=desired(n=1, target="prod-us"))
    eu, us = desired(n=5, target="prod-eu"), desired(n=5, target="prod-us", approved_by="alice")
    ready = (GateRecord("readiness", "passed", "ready", 1.0, WHEN),)
    proof = Evidence("web", digest(5), "prod", "passed", {"prod-eu": ready, "prod-us": ready}, None)
    sha = state.record(repo, desired=[eu, us], evidence=proof, reason="prod gates passed")
    assert _git(bare, "show", "--format=", "--name-only", sha).splitlines() == [
        "apps/web/prod-eu.yaml",
        "apps/web/prod-us.yaml",
        f"evidence/web/{digest(5).removeprefix('sha256:')}/prod.yaml",
    ]
    assert _git(bare, "log", "-1", "--format=%B", sha).splitlines() == [
        "web/prod-eu, prod-us: promote sha256:000000000000… (prod gates passed)",
        "",
        "web/prod-eu: promote sha256:000000000000… (prod gates passed)",
        "",
        "web/prod-us: promote sha256:000000000000… (prod gates passed; approved by alice)",
        "",
        "web sha256:000000000000…: prod evidence (passed; prod-eu: 1/1 gates passed; "
        "prod-us: 1/1 gates passed)",
    ]
    assert state.read_desired(repo, "web", "prod-eu") == eu
    assert state.read_desired(repo, "web", "prod-us") == us

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(bare), str(clone))
    _git(
        clone,
        "-c",
        "user.name=ops",
        "-c",
        "user.email=ops@example.invalid",
        "revert",
        "--no-edit",
        sha,
    )
    _git(clone, "push", "-q", "origin", "HEAD:main")
    assert state.read_desired(repo, "web", "prod-eu") is None
    assert state.read_desired(repo, "web", "prod-us") == desired(n=1, target="prod-us")
    assert state.read_evidence(repo, "web", digest(5), "prod") is None
    assert _git(bare, "rev-parse", "HEAD~2") == before


def test_one_commit_records_each_target_once_and_one_app(repo: StateRepository) -> None:
    with pytest.raises(InputError, match="records web/prod-eu twice"):
        state.record(repo, desired=[desired(n=1), desired(n=2)])
    other = replace(desired(n=1, target="prod-us"), app="api")
    with pytest.raises(InputError, match="one commit records one app, not api, web"):
        state.record(repo, desired=[desired(n=1), other])
    with pytest.raises(InputError, match="needs desired state, evidence or both"):
        state.record(repo, desired=[])


def test_evidence_from_several_targets_and_an_approval_accumulate(repo: StateRepository) -> None:
    approval = Approval("approved", "alice", "ok", digest(7), WHEN)
    state.record(repo, evidence=evidence("staging-eu"))
    state.record(repo, evidence=evidence("staging-us", approval=approval))
    state.record(repo, evidence=evidence("staging-eu", verdict="passed", gates={}))
    read = state.read_evidence(repo, "web", digest(1), "staging")
    assert read is not None
    assert sorted(read.gates) == ["staging-eu", "staging-us"]
    assert read.approval == approval
    assert read.verdict == "passed"


def test_a_file_url_remote_works_the_same_and_gets_main_when_empty(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "-q", "--bare", str(remote))
    url = f"file://{remote}"
    writer = gitrepo.open_state_repository(url, tmp_path / "writer")
    assert _subjects(remote) == ["Start the state repository"]
    reader = gitrepo.open_state_repository(url, tmp_path / "reader")
    assert _subjects(remote) == ["Start the state repository"]

    state.record(writer, desired=desired(n=1))
    state.record(reader, desired=desired(n=2))
    assert state.read_desired(writer, "web", "prod-eu") == desired(n=2)
    assert previous_digest(reader, "web", "prod-eu") == digest(1)
    assert len(_subjects(remote)) == 3


def test_one_record_takes_a_few_tens_of_milliseconds(repo: StateRepository) -> None:
    timings = []
    for n in range(1, 21):
        start = time.perf_counter()
        state.record(repo, desired=desired(n=n))
        timings.append(time.perf_counter() - start)
    start = time.perf_counter()
    state.read_desired(repo, "web", "prod-eu")
    read = time.perf_counter() - start
    median = statistics.median(timings)
    print(
        f"\none state.record: median {median * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms;"
        f" read_desired {read * 1000:.0f} ms"
    )
    assert median < 1.0


class _RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.count += 1


WRITERS = 8
TARGETS_EACH = 5


def _writer(
    location: str, workdir: str, attempts: int, writer: int, start: Any, results: Any
) -> None:  # runs in a child process
    counter = _RetryCounter()
    logger = logging.getLogger("conveyor.adapters.gitrepo")
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    try:
        repo = gitrepo.open_state_repository(location, Path(workdir), push_attempts=attempts)
        start.wait()
        began = time.time()
        for i in range(TARGETS_EACH):
            state.record(repo, desired=desired(f"w{writer}-t{i}", n=writer * 100 + i))
        results.put((counter.count, began, time.time(), None))
    except Exception as error:
        results.put((counter.count, 0.0, 0.0, repr(error)))


def _targets() -> list[tuple[int, int]]:
    return [(w, i) for w in range(WRITERS) for i in range(TARGETS_EACH)]


@pytest.mark.parametrize(
    ("location_kind", "hosts"),
    [("path", 1), ("file-url", 1), ("path", WRITERS)],
    ids=["path-one-host", "file-url-one-host", "path-a-host-each"],
)
def test_concurrent_writer_processes_never_lose_a_commit(
    bare: Path, tmp_path: Path, location_kind: str, hosts: int
) -> None:
    """8 processes commit 5 targets each at once. On one host (a shared working folder) they
    queue; with a working folder each, as if on 8 hosts, they race, and the losers retry (with
    a larger attempt budget here, since 8 writers racing nonstop is a worst case)."""
    location = str(bare) if location_kind == "path" else f"file://{bare}"
    if location_kind == "file-url":
        _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    gitrepo.open_state_repository(location, tmp_path / "setup")
    before = int(_git(bare, "rev-list", "--count", "main"))
    attempts = gitrepo.PUSH_ATTEMPTS if hosts == 1 else 50

    context = multiprocessing.get_context("fork")
    start = context.Barrier(WRITERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_writer,
            args=(location, str(tmp_path / f"host-{w % hosts}"), attempts, w, start, results),
        )
        for w in range(WRITERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert [error for *_, error in outcomes if error] == []
    retries = sum(count for count, *_ in outcomes)
    total = max(end for _, _, end, _ in outcomes) - min(began for _, began, _, _ in outcomes)
    print(
        f"\n{WRITERS} processes x {TARGETS_EACH} commits, {location_kind}, {hosts} host(s): "
        f"{total:.2f} s in all, {retries} retries after lost races"
    )
    assert int(_git(bare, "rev-list", "--count", "main")) == before + WRITERS * TARGETS_EACH
    assert _git(bare, "rev-list", "--merges", "main") == "", "history stays linear"
    files = _git(bare, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert sorted(files) == sorted(f"apps/web/w{w}-t{i}.yaml" for w, i in _targets())
    repo = gitrepo.open_state_repository(location, tmp_path / "check")
    for w, i in _targets():
        expected = desired(f"w{w}-t{i}", n=w * 100 + i)
        assert state.read_desired(repo, "web", f"w{w}-t{i}") == expected
    new_commits = _git(bare, "log", "--format=%H", f"-{WRITERS * TARGETS_EACH}", "main")
    for commit in new_commits.splitlines():
        assert len(_git(bare, "show", "--format=", "--name-only", commit).splitlines()) == 1


def test_a_lost_race_is_rebuilt_on_the_new_tip(
    repo: StateRepository, bare: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another host pushes between our fetch and our push: ours is refused, rebuilt on their
    commit (a function change sees their content) and pushed; both commits are on main."""
    other_host = gitrepo.open_state_repository(str(bare), tmp_path / "other-host")
    seen: list[bytes | None] = []

    def append(current: bytes | None) -> bytes:
        seen.append(current)
        if len(seen) == 1:
            other_host.commit_files({"log.txt": b"theirs\n"}, "theirs", ALICE)
        return (current or b"") + b"ours\n"

    with caplog.at_level(logging.INFO, logger="conveyor.adapters.gitrepo"):
        ours = repo.commit_files({"log.txt": append, "mine.txt": b"1"}, "ours", ALICE)
    assert seen == [None, b"theirs\n"]
    assert repo.read("log.txt") == b"theirs\nours\n"
    assert _subjects(bare)[:2] == ["ours", "theirs"]
    assert _git(bare, "rev-parse", "main") == ours
    # the first try built on the tip as last fetched; refused, it was rebuilt at once
    assert "main moved since this clone last fetched it" in caplog.text
    assert "attempt 1 of 10" not in caplog.text


def test_a_writer_that_always_loses_gives_up_with_a_clear_error(bare: Path, tmp_path: Path) -> None:
    repo = gitrepo.open_state_repository(str(bare), tmp_path / "work", push_attempts=2)
    other_host = gitrepo.open_state_repository(str(bare), tmp_path / "other-host")
    calls = 0

    def always_beaten(current: bytes | None) -> bytes:
        nonlocal calls
        calls += 1
        other_host.commit_files({f"other-{calls}.txt": b"x"}, f"theirs {calls}", ALICE)
        return b"ours"

    with pytest.raises(StateError, match="could not push to main after 2 attempts") as raised:
        repo.commit_files({"mine.txt": always_beaten}, "ours", ALICE)
    assert raised.value.hint
    # one try on the tip as last fetched (the open fetched it), then the 2 attempts
    assert calls == 3
    assert _subjects(bare)[:3] == ["theirs 3", "theirs 2", "theirs 1"], "nothing ours, none lost"


def test_threads_sharing_one_process_take_turns_on_its_clone(bare: Path, tmp_path: Path) -> None:
    shared = gitrepo.open_state_repository(str(bare), tmp_path / "work")
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        own = gitrepo.open_state_repository(str(bare), tmp_path / "work")
        try:
            for i in range(3):
                which = shared if i % 2 else own
                state.record(which, desired=desired(f"t{thread}-{i}", n=thread * 10 + i))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_files(bare, "apps/web")) == 12
    assert int(_git(bare, "rev-list", "--count", "main")) == 13


def _clones(workdir: Path) -> list[str]:
    return sorted(path.name for path in workdir.iterdir() if path.is_dir())


def test_processes_that_run_one_after_another_reuse_one_working_clone(
    bare: Path, tmp_path: Path
) -> None:
    """A served worker runs each flow in a process of its own: before, every one of them left
    a clone behind (1,661 clones, 490 MB in one developer cache). A finished process's slot is
    taken by the next, and processes running at once each get their own."""
    workdir = tmp_path / "work"
    gitrepo.open_state_repository(str(bare), workdir)
    context = multiprocessing.get_context("fork")
    for n in range(4):
        writer = context.Process(target=_record_one, args=(str(bare), str(workdir), n))
        writer.start()
        writer.join(timeout=60)
        assert writer.exitcode == 0
    assert len(_clones(workdir)) == 1, _clones(workdir)

    held = gitrepo.open_state_repository(str(bare), workdir)
    held.read("apps/web/t0.yaml")  # holds slot 0 while the next process writes
    writer = context.Process(target=_record_one, args=(str(bare), str(workdir), 9))
    writer.start()
    writer.join(timeout=60)
    assert writer.exitcode == 0
    assert len(_clones(workdir)) == 2, _clones(workdir)
    assert state.read_desired(held, "web", "t9") == desired("t9", n=9)


def _record_one(location: str, workdir: str, n: int) -> None:  # runs in a child process
    repo = gitrepo.open_state_repository(location, Path(workdir))
    state.record(repo, desired=desired(f"t{n}", n=n))
