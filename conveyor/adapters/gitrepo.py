"""The git adapter: the only module that imports GitPython.

Conveyor reads app sources from git (a local path or a URL, a ref, a sub-folder) and records
desired state in a git repository. Reading a source never needs a work tree: the files are taken
straight from the commit's tree, so a build is exactly what the commit holds, whatever the
checkout on disk looks like. Remote repositories are mirrored once into the cache folder and
fetched on each read.

A state repository (`StateRepository`) is a small, general store of text files on `main` that
many processes write at once: each process works in its own clone, every write is one commit
pushed as a fast-forward, and a push that loses a race is rebuilt on the new tip and retried, so
no writer's commit is ever lost. It knows nothing of what the files mean (that is
`conveyor.records.state`). GitPython's exceptions are mapped here, once, to Conveyor's errors.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import random
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import IO, TypeAlias

import git
from gitdb.base import IStream  # type: ignore[import-untyped]  # GitPython's object store

from conveyor.errors import InfrastructureError, SourceError, StateError
from conveyor.kit.paths import cache_root
from conveyor.kit.redaction import without_userinfo
from conveyor.kit.syntax import is_git_url

SYMLINK_MODE = 0o120000
SUBMODULE_MODE = 0o160000


@dataclass(frozen=True)
class TreeFile:
    """One file of a commit's tree, relative to the requested sub-folder."""

    path: str
    executable: bool
    content: bytes


@dataclass(frozen=True)
class SourceSnapshot:
    """The files of `subpath` at `commit`, as git holds them."""

    location: str
    commit: str
    subpath: str
    files: tuple[TreeFile, ...]
    origin: str
    """Where the source lives, for the bundle's `source` annotation: a URL when there is one
    (the location itself, or a local clone's `origin` remote), else the absolute path, so the
    same commit gives the same digest however the path was typed."""


NETWORK_TIMEOUT_SECONDS = 120
"""How long one git command that talks to a remote (clone, fetch, push) may take."""
_NO_PROMPTS = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": ""}
"""Git runs unattended: a remote that wants credentials git's helpers cannot give fails at once
instead of waiting for someone to type them (an empty GIT_ASKPASS also disables SSH_ASKPASS)."""


def _open(location: str, timeout: float) -> git.Repo:
    """The repository at a local path, or a fetched mirror of a remote one; talking to the
    remote takes at most `timeout` seconds."""
    try:
        if not is_git_url(location):
            return git.Repo(Path(location).expanduser(), search_parent_directories=False)
        mirror = cache_root() / "git" / hashlib.sha256(location.encode()).hexdigest()[:16]
        if mirror.exists():
            repo = git.Repo(mirror)
            repo.git.fetch("--prune", "origin", kill_after_timeout=timeout, env=_NO_PROMPTS)
            return repo
        # Cloned beside and renamed into place: a clone killed at its timeout leaves no
        # half-made mirror behind to be taken for a repository next time.
        staging = mirror.with_name(f".{mirror.name}.{uuid.uuid4().hex[:8]}.tmp")
        mirror.parent.mkdir(parents=True, exist_ok=True)
        try:
            git.Git().clone(
                "--mirror",
                "--",
                location,
                str(staging),
                kill_after_timeout=timeout,
                env=_NO_PROMPTS,
            )
            staging.rename(mirror)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return git.Repo(mirror)
    except git.NoSuchPathError as error:
        raise SourceError(f"git repository {without_userinfo(location)}: no such path") from error
    except git.InvalidGitRepositoryError as error:
        raise SourceError(f"{without_userinfo(location)} is not a git repository") from error
    except git.GitCommandError as error:
        raise InfrastructureError(
            without_userinfo(
                f"git repository {location}: `{' '.join(map(str, error.command))}` failed: "
                f"{_stderr(error)}"
            ),
            hint="check the URL, your network and your git credentials",
        ) from error


def _stderr(error: git.GitCommandError) -> str:
    return error.stderr.strip() if isinstance(error.stderr, str) else str(error.stderr)


def read_source(
    location: str, ref: str, subpath: str = ".", *, timeout: float = NETWORK_TIMEOUT_SECONDS
) -> SourceSnapshot:
    """The files under `subpath` at `ref` of the repository at `location`; fetching a remote
    one takes at most `timeout` seconds.

    Symlinks and submodules are reported as SourceError (a bundle must be self-contained).
    """
    repo = _open(location, timeout)
    shown = without_userinfo(location)
    try:
        # Resolved by git itself: GitPython's own parser crashes on some refs (`@{-1}` raises
        # IndexError) and reads others differently from git.
        sha = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except git.GitCommandError as error:
        raise SourceError(
            f"git repository {shown}: ref {ref!r} does not exist",
            hint="name a branch, tag or commit that the repository has",
        ) from error
    commit = repo.commit(sha)
    folder = PurePosixPath(subpath)
    if folder.is_absolute() or ".." in folder.parts:
        raise SourceError(
            f"source path {subpath!r} must be relative and stay inside the repository"
        )
    tree = commit.tree
    if str(folder) != ".":
        try:
            tree = tree / str(folder)
        except KeyError as error:
            raise SourceError(
                f"git repository {shown} at {commit.hexsha[:12]}: no folder {subpath!r}"
            ) from error
        if tree.type != "tree":
            raise SourceError(f"{shown}@{commit.hexsha[:12]}:{subpath} is not a folder")
    files = []
    for item in tree.traverse():
        if isinstance(item, tuple):  # traverse() yields tuples only for branched walks
            continue
        path = PurePosixPath(str(item.path))
        relative = str(path.relative_to(str(tree.path))) if tree.path else str(path)
        kind = {SYMLINK_MODE: "a symlink", SUBMODULE_MODE: "a submodule"}.get(item.mode)
        if kind:
            raise SourceError(
                f"{shown}@{commit.hexsha[:12]}:{path} is {kind}: "
                "a bundle source may hold regular files only"
            )
        if item.type == "blob":
            files.append(TreeFile(relative, bool(item.mode & 0o111), item.data_stream.read()))
    files.sort(key=lambda f: f.path)
    return SourceSnapshot(
        location, commit.hexsha, str(folder), tuple(files), _origin(repo, location)
    )


def branch_and_tag_heads(
    location: str, *, timeout: float = NETWORK_TIMEOUT_SECONDS
) -> dict[str, str]:
    """Every branch and tag of the repository at `location` (a remote one fetched first, in at
    most `timeout` seconds) by short name, with the commit it points at; a branch wins over a
    tag of the same name, as git resolves the name."""
    repo = _open(location, timeout)
    try:
        listing = repo.git.for_each_ref(
            "--format=%(refname)%09%(objectname)%09%(*objectname)", "refs/tags", "refs/heads"
        )
    except git.GitCommandError as error:
        raise SourceError(
            f"git repository {without_userinfo(location)}: cannot list its refs: {_stderr(error)}"
        ) from error
    heads: dict[str, str] = {}
    for line in listing.splitlines():
        name, target, peeled = [*line.split("\t"), "", ""][:3]
        short = name.removeprefix("refs/heads/").removeprefix("refs/tags/")
        heads[short] = peeled or target  # an annotated tag: the commit it names
    return heads


def _origin(repo: git.Repo, location: str) -> str:
    if is_git_url(location):
        return without_userinfo(location)
    remote = next((r for r in repo.remotes if r.name == "origin"), None)
    url = next(iter(remote.urls), None) if remote is not None else None
    return without_userinfo(url) if url else str(Path(location).expanduser().absolute())


# --- State repositories ---------------------------------------------------------------------------

MAIN = "main"
PUSH_ATTEMPTS = 10
HOST_LOCK_TIMEOUT_SECONDS = 600
"""How long a writer waits for this host's other writers of one state repository."""
_LOCK_POLL_SECONDS = 0.05
# Retry n (1-based) sleeps a random time up to min(cap, base * 2**n): jitter spreads the losers.
_BACKOFF_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 2.0
_TRACKING_REF = f"refs/remotes/origin/{MAIN}"
_FILE_MODE = 0o100644
_INITIAL_AUTHOR = git.Actor("Conveyor", "conveyor@localhost")
# What `git push --porcelain` reports when another writer moved `main` first: a lost race, retried.
_LOST_RACE = (
    "(fetch first)",
    "(non-fast-forward)",
    "failed to update ref",
    "cannot lock ref",
    "incorrect old value",
)

log = logging.getLogger(__name__)

Change: TypeAlias = bytes | Callable[[bytes | None], bytes | None] | None
"""New content for a path: bytes, None to delete it, or a function from its content at the tip
(None when absent) to either; a function is called again on the new tip after a lost race, so a
read-modify-write of a shared file keeps what the other writer added."""


@dataclass(frozen=True)
class Author:
    """Who a commit is by; it is recorded as both author and committer."""

    name: str
    email: str


@dataclass(frozen=True)
class LogEntry:
    """One commit of `git log main -- <path>`."""

    commit: str
    author: str
    date: datetime
    message: str


_clone_locks: dict[Path, threading.Lock] = {}
_clone_locks_guard = threading.Lock()


def _clone_lock(folder: Path) -> threading.Lock:
    """The lock serializing this process's threads on one working clone."""
    with _clone_locks_guard:
        return _clone_locks.setdefault(folder, threading.Lock())


def _check_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or str(pure) != path or {".", ".."} & set(pure.parts):
        raise StateError(
            f"state repository path {path!r} is not a normalized relative path",
            hint="write it like apps/web/prod.yaml: no leading or trailing slash, no . or ..",
        )
    return path


def _command_failed(location: str, error: git.GitCommandError) -> StateError:
    return StateError(
        without_userinfo(
            f"state repository {location}: `{' '.join(map(str, error.command))}` failed "
            f"(exit {error.status}): {_stderr(error)}"
        ),
        hint="check that the repository exists and is reachable, and your git credentials",
    )


@contextmanager
def _git_errors(location: str) -> Iterator[None]:
    """Map GitPython's exceptions to StateError, naming the repository and the command."""
    try:
        yield
    except git.GitCommandError as error:
        raise _command_failed(location, error) from error
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise StateError(
            without_userinfo(f"state repository {location}: {error} is not a git repository")
        ) from error


def _store(repo: git.Repo, kind: str, data: bytes) -> bytes:
    """Write an object into the repository's object database; return its binary sha."""
    stored = repo.odb.store(IStream(kind, len(data), io.BytesIO(data)))
    binsha: bytes = stored.binsha
    return binsha


def _root_commit(repo: git.Repo) -> git.Commit:
    """An empty commit (empty tree, no parent): the first commit of a new state repository."""
    tree = git.Tree(repo, _store(repo, "tree", b""))
    return git.Commit.create_from_tree(
        repo,
        tree,
        "Start the state repository\n",
        parent_commits=[],
        author=_INITIAL_AUTHOR,
        committer=_INITIAL_AUTHOR,
    )


def _create_bare(path: Path) -> None:
    """Create a bare repository with an empty first commit on `main`, atomically: it is built
    next to `path` and renamed into place, so a concurrent creator finds it complete or not at all.
    """
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with _git_errors(str(path)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            bare = git.Repo.init(staging, bare=True, initial_branch=MAIN)
            bare.git.update_ref(f"refs/heads/{MAIN}", _root_commit(bare).hexsha)
            bare.close()
            staging.rename(path)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if not path.is_dir():  # else another process created it first: use theirs
                raise StateError(
                    f"cannot create the state repository {path}: {error.strerror}",
                    hint="check that its parent folder is writable",
                ) from error


def _check_bare(path: Path) -> None:
    with _git_errors(str(path)):
        existing = git.Repo(path, search_parent_directories=False)
        bare = existing.bare
        existing.close()
    if not bare:
        raise StateError(
            f"state repository {path} is a repository with a work tree; writers push to it, so "
            "it must be bare",
            hint=f"use a bare copy: git clone --bare {path} {path}.git",
        )


class StateRepository:
    """A git repository of small files on `main`, read and written through a clone private to
    this process; safe to share between threads and to use from many processes at once.

    Writers on one host that share `workdir` (the default does) also take turns through a lock
    file there, so they queue instead of racing; writers elsewhere race, and retry when they lose.
    """

    def __init__(
        self,
        location: str,
        workdir: Path,
        *,
        push_attempts: int = PUSH_ATTEMPTS,
        network_timeout: float = NETWORK_TIMEOUT_SECONDS,
        lock_timeout: float = HOST_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.location = location
        self._workdir = workdir
        self._push_attempts = push_attempts
        self._network_timeout = network_timeout
        self._lock_timeout = lock_timeout
        self._key = hashlib.sha256(location.encode()).hexdigest()[:16]
        self._folder: Path | None = None
        self._repo: git.Repo | None = None
        self._claim: tuple[int, IO[str]] | None = None
        """(pid, open claim file) of the clone folder this object holds."""
        self._claiming = threading.Lock()

    def __str__(self) -> str:
        return without_userinfo(self.location)

    @contextmanager
    def _clone(self) -> Iterator[git.Repo]:
        """This object's working clone (a bare one: nothing is checked out), locked for the
        calling thread; see `_claimed_folder` for whose it is."""
        folder = self._claimed_folder()
        with _clone_lock(folder), _git_errors(self.location):
            if self._repo is None or self._folder != folder:
                self._repo = self._open_clone(folder)
                self._folder = folder
            yield self._repo

    def _claimed_folder(self) -> Path:
        """A clone folder no live process uses: the first numbered slot whose claim file this
        process can lock. The lock lasts as long as this object (or its process), so a slot is
        never shared, and the slot of a process that ended (a flow run, a reconcile cycle) is
        reused by the next one with its objects already fetched: the folder holds as many
        clones as processes ever ran at once, not one per process that ever ran. A forked child
        claims a slot of its own."""
        with self._claiming:
            if self._claim is not None and self._claim[0] == os.getpid():
                return Path(self._claim[1].name).with_suffix("")
            self._workdir.mkdir(parents=True, exist_ok=True)
            prefix = f"{self._key}-{socket.gethostname()}"
            slot = 0
            while True:
                path = self._workdir / f"{prefix}-{slot}.claim"
                claim = path.open("a")
                try:
                    fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    claim.close()
                    slot += 1
                    continue
                self._claim = (os.getpid(), claim)
                return path.with_suffix("")

    @contextmanager
    def _host_lock(self) -> Iterator[None]:
        """Make this host's writers (processes sharing `workdir`) take turns to write; wait at
        most `lock_timeout` seconds for a turn."""
        lock_file = self._workdir / f"{self._key}.lock"
        deadline = time.monotonic() + self._lock_timeout
        with lock_file.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StateError(
                            f"state repository {self}: waited {self._lock_timeout:g} s "
                            f"for the lock {lock_file}: another writer on this host holds it",
                            hint="see which process holds it with `fuser` and whether it is "
                            "stuck; retry when it is done",
                        ) from None
                    time.sleep(_LOCK_POLL_SECONDS)
            yield

    def _open_clone(self, folder: Path) -> git.Repo:
        try:
            if folder.exists():
                try:
                    repo = git.Repo(folder)
                    if repo.bare and repo.remote("origin").url == self.location:
                        return repo
                except (git.InvalidGitRepositoryError, ValueError):
                    pass  # a clone its creator did not finish: start again
                shutil.rmtree(folder)
            folder.parent.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(folder, bare=True)
            repo.create_remote("origin", self.location)
        except OSError as error:
            raise StateError(
                f"cannot create a working clone of {self} in {folder}: {error.strerror}",
                hint="pass a writable folder as the working folder",
            ) from error
        repo.git.update_environment(**_NO_PROMPTS)
        return repo

    def _fetch(self, repo: git.Repo) -> git.Commit | None:
        """Fetch `main`; return its tip, or None when the repository has no `main` yet."""
        status, _, stderr = repo.git.fetch(
            "--quiet",
            "--no-tags",
            "origin",
            f"+refs/heads/{MAIN}:{_TRACKING_REF}",
            with_extended_output=True,
            with_exceptions=False,
            kill_after_timeout=self._network_timeout,
        )
        tracking = git.RemoteReference(repo, _TRACKING_REF)
        if status != 0:
            if "couldn't find remote ref" not in stderr:
                raise _command_failed(
                    self.location,
                    git.GitCommandError(["git", "fetch", "origin", MAIN], status, stderr),
                )
            if tracking.is_valid():
                git.RemoteReference.delete(repo, tracking)
            return None
        return tracking.commit

    def _last_fetched(self, repo: git.Repo) -> git.Commit | None:
        """`main` as this clone last fetched it (None before the first fetch)."""
        tracking = git.RemoteReference(repo, _TRACKING_REF)
        return tracking.commit if tracking.is_valid() else None

    def _tip(self, repo: git.Repo) -> git.Commit:
        tip = self._fetch(repo)
        if tip is None:
            raise StateError(
                f"state repository {self} has no branch {MAIN!r}",
                hint="open it with open_state_repository(), which creates the branch",
            )
        return tip

    def _push(self, repo: git.Repo, commit: str) -> bool:
        """Push `commit` to `main` as a fast-forward; False when another writer got there first."""
        status, stdout, stderr = repo.git.push(
            "--porcelain",
            "origin",
            f"{commit}:refs/heads/{MAIN}",
            with_extended_output=True,
            with_exceptions=False,
            kill_after_timeout=self._network_timeout,
        )
        if status == 0:
            return True
        if any(marker in stdout or marker in stderr for marker in _LOST_RACE):
            return False
        raise _command_failed(
            self.location,
            git.GitCommandError(
                ["git", "push", "origin", f"{commit[:12]}:{MAIN}"], status, stderr or stdout
            ),
        )

    def _ensure_main(self) -> None:
        """Give a repository without `main` (a new, empty remote) an empty first commit there."""
        with self._clone() as repo:
            for _ in range(self._push_attempts):
                if self._fetch(repo) is not None or self._push(repo, _root_commit(repo).hexsha):
                    return

    def read(self, path: str, commit: str | None = None) -> bytes | None:
        """The content of `path` at the tip of `main` (fetched first) or at `commit`; None when
        there is no such file."""
        _check_path(path)
        with self._clone() as repo:
            try:
                tree = (repo.commit(commit) if commit else self._tip(repo)).tree
            except (git.BadName, ValueError) as error:
                raise StateError(f"state repository {self}: no commit {commit!r}") from error
            return self._blob(tree, path)

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """The content of each path at one tip of `main` (one fetch), None for missing files."""
        for path in paths:
            _check_path(path)
        with self._clone() as repo:
            tree = self._tip(repo).tree
            return {path: self._blob(tree, path) for path in paths}

    def _blob(self, tree: git.Tree, path: str) -> bytes | None:
        try:
            item = tree / path
        except KeyError:
            return None
        if item.type != "blob":
            raise StateError(f"state repository {self}: {path} is a folder")
        data: bytes = item.data_stream.read()
        return data

    def log(self, path: str) -> list[LogEntry]:
        """`git log main -- <path>`: the commits that changed `path`, newest first."""
        _check_path(path)
        with self._clone() as repo:
            return [
                LogEntry(
                    commit=commit.hexsha,
                    author=f"{commit.author.name} <{commit.author.email}>",
                    date=datetime.fromtimestamp(
                        commit.authored_date,
                        timezone(timedelta(seconds=-commit.author_tz_offset)),
                    ),
                    message=str(commit.message).rstrip("\n"),
                )
                for commit in repo.iter_commits(self._tip(repo).hexsha, paths=path)
            ]

    def commit_files(self, changes: Mapping[str, Change], message: str, author: Author) -> str:
        """Apply `changes` in one commit on top of `main` and push it; return the new tip.

        A lost race (another writer pushed first) fetches the new tip and applies the same
        changes again, up to `push_attempts` times with jittered, doubling sleeps (for 10
        attempts, at most about 11 s of sleep in all). Changes that leave the tree as it is make
        no commit: the tip is returned as it is.
        """
        for path in changes:
            _check_path(path)
        actor = git.Actor(author.name, author.email)
        message = message.rstrip("\n") + "\n"
        attempts = self._push_attempts
        with self._clone() as repo, self._host_lock():
            # The first attempt builds on `main` as this clone last fetched it (usually moments
            # ago, by a read): a push that is not a fast-forward is refused, so a stale guess
            # costs one refused push, while a right one saves a fetch.
            known = self._last_fetched(repo)
            attempt = 0
            while attempt < attempts:
                base = known or self._tip(repo)
                tree = _apply(repo, base.tree, changes)
                if tree.binsha == base.tree.binsha:
                    if known is None:
                        return base.hexsha
                    known = None  # unchanged on the guessed tip: make sure on the fetched one
                    continue
                commit = git.Commit.create_from_tree(
                    repo, tree, message, parent_commits=[base], author=actor, committer=actor
                )
                if self._push(repo, commit.hexsha):
                    return commit.hexsha
                if known is not None:  # refused on the guessed tip: fetch and build again
                    log.info(
                        "state repository %s: main moved since this clone last fetched it; "
                        "rebuilding on the new tip",
                        self,
                    )
                    known = None
                    continue
                attempt += 1
                if attempt == attempts:
                    break
                log.info(
                    "state repository %s: main moved during push (attempt %d of %d); retrying",
                    self,
                    attempt,
                    attempts,
                )
                time.sleep(
                    random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_SECONDS * 2**attempt))
                )
        raise StateError(
            f"state repository {self}: could not push to {MAIN} after {attempts} "
            "attempts: other writers kept moving it",
            hint="retry the operation; if this persists, fewer writers should write at once",
        )


def _apply(repo: git.Repo, base: git.Tree, changes: Mapping[str, Change]) -> git.Tree:
    """The tree `base` with `changes` applied (objects are written; nothing is checked out)."""
    index = git.IndexFile.new(repo, base)
    for path, change in changes.items():
        key = (path, 0)
        current = index.entries.get(key)
        if callable(change):
            old = repo.odb.stream(current.binsha).read() if current is not None else None
            change = change(old)
        if change is None:
            index.entries.pop(key, None)
            continue
        for entry_path, _ in index.entries:
            existing = str(entry_path)
            if existing.startswith(f"{path}/") or path.startswith(f"{existing}/"):
                origin = without_userinfo(repo.remote("origin").url)
                raise StateError(
                    f"state repository {origin}: cannot write {path}: "
                    f"{existing} is in the way (a file and a folder would share a name)"
                )
        binsha = _store(repo, "blob", change)
        index.entries[key] = git.IndexEntry.from_base(
            git.BaseIndexEntry((_FILE_MODE, binsha, 0, path))
        )
    if not index.entries:
        return git.Tree(repo, _store(repo, "tree", b""))
    return index.write_tree()


def open_state_repository(
    location: str,
    workdir: Path | None = None,
    *,
    push_attempts: int = PUSH_ATTEMPTS,
    network_timeout: float = NETWORK_TIMEOUT_SECONDS,
    lock_timeout: float = HOST_LOCK_TIMEOUT_SECONDS,
) -> StateRepository:
    """The state repository at `location` (a git URL or a local path), created when missing.

    A local path that does not exist becomes a bare repository with an empty first commit on
    `main`; a repository without `main` gets that commit too. Reads and writes go through a
    working clone under `workdir` (default: `state/` in the user's Conveyor cache, private to
    the user); a write that keeps losing races gives up after `push_attempts` attempts, a fetch
    or push after `network_timeout` seconds, a wait for this host's other writers after
    `lock_timeout` seconds.
    """
    if not is_git_url(location):
        path = Path(location).expanduser().absolute()
        if path.exists():
            _check_bare(path)
        else:
            _create_bare(path)
        location = str(path)
    repository = StateRepository(
        location,
        workdir or _private_folder(cache_root() / "state"),
        push_attempts=push_attempts,
        network_timeout=network_timeout,
        lock_timeout=lock_timeout,
    )
    repository._ensure_main()
    return repository


def _private_folder(folder: Path) -> Path:
    """`folder`, created when missing, readable by its owner only: the working clones hold the
    state repository's content and the lock its writers take turns with."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if folder.stat().st_uid != os.getuid():
            raise StateError(
                f"the state repository's working folder {folder} belongs to another user",
                hint="set $CONVEYOR_CACHE to a folder of your own",
            )
        folder.chmod(0o700)
    except OSError as error:
        raise StateError(
            f"cannot create the state repository's working folder {folder}: {error.strerror}",
            hint="set $CONVEYOR_CACHE to a writable folder",
        ) from error
    return folder
