"""Reproducible tar.gz archives of a source, and a reader that trusts nothing in them.

Why: a bundle's identity is its digest, so packing the same files must give the same bytes on
any machine, from any checkout: members sorted by path, mtime 0, uid/gid 0, empty owner names,
mode 0644, GNU tar format (long names use GNU long-name entries, never pax headers), gzip with
level 9, header mtime 0 and no file name. The archive holds regular files only, no folder entries
(a folder is implied by the paths under it). gzip output may differ between zlib versions, which
is why a build finds an earlier bundle by its source tree hash, never by these bytes.

An archive read back may come from anywhere, so `read_archive` refuses absolute paths, `..`,
links, devices, duplicate members and anything that unpacks past a size limit, and never touches
the file system.
"""

from __future__ import annotations

import gzip
import io
import itertools
import tarfile
import zlib
from collections.abc import Iterable

from conveyor.bundles.source import SourceFile, path_problem
from conveyor.errors import SourceError

DEFAULT_MAX_UNPACKED_SIZE = 32 * 1024 * 1024
"""Room for a source at its 10 MiB limit plus the 512-byte headers and padding of many files."""

FILE_MODE = 0o644
COMPRESSION_LEVEL = 9
WHERE = "bundle archive"

_REFUSED_MEMBER_TYPES = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def pack(files: Iterable[SourceFile]) -> bytes:
    """The reproducible tar.gz of `files` (in any order); equal file sets give equal bytes."""
    ordered = sorted(files, key=lambda file: file.path)
    for file in ordered:
        problem = path_problem(file.path)
        if problem:
            raise SourceError(f"{WHERE}: the path {file.path!r} {problem}")
    for previous, current in itertools.pairwise(ordered):
        if previous.path == current.path:
            raise SourceError(f"{WHERE}: the path {current.path!r} is given twice")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
        for file in ordered:
            tar.addfile(_member_info(file), io.BytesIO(file.content))
    return gzip.compress(buffer.getvalue(), compresslevel=COMPRESSION_LEVEL, mtime=0)


def _member_info(file: SourceFile) -> tarfile.TarInfo:
    info = tarfile.TarInfo(file.path)
    info.type = tarfile.REGTYPE
    info.size = len(file.content)
    info.mode = FILE_MODE
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def read_archive(data: bytes, *, max_size: int = DEFAULT_MAX_UNPACKED_SIZE) -> dict[str, bytes]:
    """The files of a tar.gz as {path: bytes}, or SourceError naming the member at fault.

    `max_size` bounds the uncompressed tar stream (the zip-bomb guard). Folder entries are
    accepted and dropped; a path that is both a file and a folder is refused.
    """
    tar_stream = _gunzip(data, max_size)
    files: dict[str, bytes] = {}
    folders: set[str] = set()
    try:
        with tarfile.open(
            fileobj=io.BytesIO(tar_stream), mode="r:", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                _check_member(member, files, folders)
                if member.isdir():
                    folders.add(member.name)
                    continue
                extracted = tar.extractfile(member)
                assert extracted is not None, "regular members always have content"
                files[member.name] = extracted.read()
    except (tarfile.TarError, EOFError) as error:
        raise SourceError(
            f"{WHERE}: not a valid tar stream ({error})",
            hint="the archive is damaged or not a Conveyor bundle",
        ) from None
    _refuse_file_folder_clash(files, folders)
    return files


def _gunzip(data: bytes, max_size: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        tar_stream = inflater.decompress(data, max_size + 1)
    except zlib.error as error:
        raise SourceError(
            f"{WHERE}: not gzip data ({error})", hint="a bundle layer is a .tar.gz"
        ) from None
    if len(tar_stream) > max_size:
        raise SourceError(
            f"{WHERE}: unpacks to more than {max_size} bytes; refused (zip-bomb guard)",
            hint="bundles are small; if this one is meant to be this large, raise the limit",
        )
    if not inflater.eof:
        raise SourceError(f"{WHERE}: the gzip stream is truncated")
    if inflater.unused_data:
        raise SourceError(f"{WHERE}: unexpected data after the gzip stream")
    return tar_stream


def _check_member(member: tarfile.TarInfo, files: dict[str, bytes], folders: set[str]) -> None:
    where = f"{WHERE}: member {member.name!r}"
    problem = path_problem(member.name)
    if problem:
        raise SourceError(f"{where}: the path {problem}")
    if member.type in _REFUSED_MEMBER_TYPES:
        raise SourceError(f"{where}: is {_REFUSED_MEMBER_TYPES[member.type]}; only files allowed")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        raise SourceError(f"{where}: has the unsupported tar type {member.type!r}")
    if member.name in files or member.name in folders:
        raise SourceError(f"{where}: appears twice", hint="an archive lists each path once")


def _refuse_file_folder_clash(files: dict[str, bytes], folders: set[str]) -> None:
    """A file 'a' next to 'a/b' cannot both be unpacked (a same-named pair is _check_member's)."""
    for path in [*files, *folders]:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                raise SourceError(f"{WHERE}: member {parent!r} is both a file and a folder")
