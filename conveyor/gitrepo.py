"""The git adapter: the only module that imports GitPython.

Conveyor reads app sources from git (a local path or a URL, a ref, a sub-folder) and, later,
records desired state in a git repository. Reading a source never needs a work tree: the files are
taken straight from the commit's tree, so a build is exactly what the commit holds, whatever the
checkout on disk looks like. Remote repositories are mirrored once into the cache folder and
fetched on each read. GitPython's exceptions are mapped here, once, to Conveyor's errors.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

from conveyor.errors import InfrastructureError, SourceError
from conveyor.paths import cache_root

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


def _is_remote(location: str) -> bool:
    return "://" in location or (location.count(":") == 1 and "@" in location.split(":")[0])


def _open(location: str) -> git.Repo:
    """The repository at a local path, or a fetched mirror of a remote one."""
    try:
        if not _is_remote(location):
            return git.Repo(Path(location).expanduser(), search_parent_directories=False)
        mirror = cache_root() / "git" / hashlib.sha256(location.encode()).hexdigest()[:16]
        if mirror.exists():
            repo = git.Repo(mirror)
            repo.remote("origin").fetch(prune=True)
            return repo
        mirror.parent.mkdir(parents=True, exist_ok=True)
        return git.Repo.clone_from(location, mirror, mirror=True)
    except git.NoSuchPathError as error:
        raise SourceError(f"git repository {location}: no such path") from error
    except git.InvalidGitRepositoryError as error:
        raise SourceError(f"{location} is not a git repository") from error
    except git.GitCommandError as error:
        raise InfrastructureError(
            f"git repository {location}: `{' '.join(map(str, error.command))}` failed: "
            f"{error.stderr.strip()}",
            hint="check the URL, your network and your git credentials",
        ) from error


def read_source(location: str, ref: str, subpath: str = ".") -> SourceSnapshot:
    """The files under `subpath` at `ref` of the repository at `location`.

    Symlinks and submodules are reported as SourceError (a bundle must be self-contained).
    """
    repo = _open(location)
    try:
        commit = repo.commit(ref)
    except (git.BadName, ValueError) as error:
        raise SourceError(
            f"git repository {location}: ref {ref!r} does not exist",
            hint="name a branch, tag or commit that the repository has",
        ) from error
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
                f"git repository {location} at {commit.hexsha[:12]}: no folder {subpath!r}"
            ) from error
        if tree.type != "tree":
            raise SourceError(f"{location}@{commit.hexsha[:12]}:{subpath} is not a folder")
    files = []
    for item in tree.traverse():
        if isinstance(item, tuple):  # traverse() yields tuples only for branched walks
            continue
        path = PurePosixPath(str(item.path))
        relative = str(path.relative_to(str(tree.path))) if tree.path else str(path)
        kind = {SYMLINK_MODE: "a symlink", SUBMODULE_MODE: "a submodule"}.get(item.mode)
        if kind:
            raise SourceError(
                f"{location}@{commit.hexsha[:12]}:{path} is {kind}: "
                "a bundle source may hold regular files only"
            )
        if item.type == "blob":
            files.append(TreeFile(relative, bool(item.mode & 0o111), item.data_stream.read()))
    files.sort(key=lambda f: f.path)
    return SourceSnapshot(location, commit.hexsha, str(folder), tuple(files))


def write_snapshot(snapshot: SourceSnapshot, destination: Path) -> None:
    """Write a snapshot's files under `destination` (which must not exist yet)."""
    destination.mkdir(parents=True)
    for file in snapshot.files:
        target = destination / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
        os.chmod(target, 0o755 if file.executable else 0o644)
