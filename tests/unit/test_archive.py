"""Reproducible packing, digest checks and the safe archive reader."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.bundles.archive import pack, read_archive
from conveyor.bundles.source import SourceFile, load_source, tree_hash
from conveyor.errors import SourceError

SOURCE_FILES = {
    "bundle.yaml": b"apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: web\n",
    "manifests/app.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
    "manifests/nested/job.yaml": b"apiVersion: batch/v1\nkind: Job\nmetadata: {name: t}\n",
    "README.md": b"hello\n",
}


def source_files(files: dict[str, bytes]) -> list[SourceFile]:
    return [SourceFile(path, content) for path, content in files.items()]


def write_folder(root: Path, order: list[str]) -> Path:
    for relative in order:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SOURCE_FILES[relative])
    return root


# --- reproducibility ------------------------------------------------------------------------


def test_two_checkouts_with_other_times_modes_and_owners_pack_identically(tmp_path: Path) -> None:
    one = write_folder(tmp_path / "checkout-1" / "web", list(SOURCE_FILES))
    two = write_folder(tmp_path / "elsewhere" / "copy", list(reversed(SOURCE_FILES)))
    for index, path in enumerate(sorted(two.rglob("*"))):
        os.utime(path, (1_600_000_000 + index, 1_600_000_000 + index))
        os.chmod(path, 0o750 if path.is_dir() else 0o600 + index % 2 * 0o111)
        os.chown(path, 1234 + index, 5678)
    assert (two / "README.md").stat().st_uid != (one / "README.md").stat().st_uid

    archive_one = pack(load_source(one).files)
    archive_two = pack(load_source(two).files)

    assert archive_one == archive_two
    assert gzip.decompress(archive_one) == gzip.decompress(archive_two), "the tars inside too"


def test_one_changed_byte_gives_another_digest() -> None:
    changed = dict(SOURCE_FILES, **{"README.md": b"hellp\n"})

    original, modified = pack(source_files(SOURCE_FILES)), pack(source_files(changed))

    assert original != modified
    assert gzip.decompress(original) != gzip.decompress(modified)


def test_packing_twice_gives_the_same_bytes() -> None:
    assert pack(source_files(SOURCE_FILES)) == pack(reversed(source_files(SOURCE_FILES)))


def test_members_are_sorted_regular_files_with_fixed_metadata_and_no_pax() -> None:
    archive = pack(source_files(SOURCE_FILES))

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        members = tar.getmembers()
        assert tar.pax_headers == {}
    assert [member.name for member in members] == sorted(SOURCE_FILES)
    for member in members:
        assert member.type == tarfile.REGTYPE
        assert (member.mtime, member.uid, member.gid) == (0, 0, 0)
        assert (member.uname, member.gname) == ("", "")
        assert member.mode == 0o644
        assert member.pax_headers == {}


def test_gzip_header_has_no_time_no_name_and_maximum_compression() -> None:
    data = pack(source_files(SOURCE_FILES))

    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] == 0, "no FNAME, FEXTRA or FCOMMENT flag"
    assert data[4:8] == b"\0\0\0\0", "mtime 0"
    assert data[8] == 2, "XFL 2: maximum compression (level 9)"


def test_long_and_unicode_paths_round_trip_without_pax_headers() -> None:
    long_path = "manifests/" + "/".join(["a-rather-long-folder-name"] * 8) + "/deployment.yaml"
    files = {long_path: b"long", "manifests/déploiement-ünïcode.yaml": b"unicode"}

    archive = pack(source_files(files))

    assert len(long_path) > 155
    assert read_archive(archive) == files
    assert b"PaxHeader" not in gzip.decompress(archive)
    assert archive == pack(source_files(files))


PACK_ERRORS = [
    ("absolute-path", [SourceFile("/etc/x", b"")], "the path '/etc/x' is absolute"),
    ("duplicate-path", [SourceFile("a", b"1"), SourceFile("a", b"2")], "'a' is given twice"),
]


@pytest.mark.parametrize(
    ("files", "message"), [c[1:] for c in PACK_ERRORS], ids=[c[0] for c in PACK_ERRORS]
)
def test_pack_refuses_files_it_could_not_read_back(files: list[SourceFile], message: str) -> None:
    with pytest.raises(SourceError, match=message):
        pack(files)


# --- the reader -----------------------------------------------------------------------------

TarBuilder = Callable[[tarfile.TarFile], None]


def tar_gz(build: TarBuilder, tar_format: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        build(tar)
    return gzip.compress(buffer.getvalue())


def add_file(tar: tarfile.TarFile, name: str, content: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, target: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def test_reader_accepts_folder_entries_and_drops_them() -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_special(tar, "manifests", tarfile.DIRTYPE)
        add_file(tar, "manifests/a.yaml", b"a")

    assert read_archive(tar_gz(build)) == {"manifests/a.yaml": b"a"}


READER_ERRORS: list[tuple[str, bytes, str]] = [
    (
        "absolute-path",
        tar_gz(lambda tar: add_file(tar, "/etc/cron.d/x")),
        "member '/etc/cron.d/x': the path is absolute",
    ),
    (
        "dot-dot",
        tar_gz(lambda tar: add_file(tar, "manifests/../../x")),
        "member 'manifests/../../x': the path has a '..' component",
    ),
    (
        "pax-path-escape",
        tar_gz(lambda tar: add_file(tar, "../" + "x" * 120), tarfile.PAX_FORMAT),
        "the path has a '..' component",
    ),
    (
        "symlink",
        tar_gz(lambda tar: add_special(tar, "link", tarfile.SYMTYPE, "/etc/passwd")),
        "member 'link': is a symlink",
    ),
    (
        "hard-link",
        tar_gz(lambda tar: add_special(tar, "hard", tarfile.LNKTYPE, "x")),
        "member 'hard': is a hard link",
    ),
    (
        "character-device",
        tar_gz(lambda tar: add_special(tar, "null", tarfile.CHRTYPE)),
        "member 'null': is a character device",
    ),
    (
        "block-device",
        tar_gz(lambda tar: add_special(tar, "sda", tarfile.BLKTYPE)),
        "member 'sda': is a block device",
    ),
    (
        "fifo",
        tar_gz(lambda tar: add_special(tar, "pipe", tarfile.FIFOTYPE)),
        "member 'pipe': is a FIFO",
    ),
    (
        "unsupported-type",
        tar_gz(lambda tar: add_special(tar, "contiguous", tarfile.CONTTYPE)),
        "member 'contiguous': has the unsupported tar type",
    ),
    (
        "duplicate-member",
        tar_gz(lambda tar: [add_file(tar, "a.yaml", b"1"), add_file(tar, "a.yaml", b"2")]),
        "member 'a.yaml': appears twice",
    ),
    (
        "file-then-folder-entry",
        tar_gz(lambda tar: [add_file(tar, "a"), add_special(tar, "a", tarfile.DIRTYPE)]),
        "member 'a': appears twice",
    ),
    (
        "file-and-file-below-it",
        tar_gz(lambda tar: [add_file(tar, "a"), add_file(tar, "a/b")]),
        "member 'a' is both a file and a folder",
    ),
    (
        "folder-entry-below-a-file",
        tar_gz(lambda tar: [add_file(tar, "a"), add_special(tar, "a/b", tarfile.DIRTYPE)]),
        "member 'a' is both a file and a folder",
    ),
    ("not-gzip", b"PK\x03\x04 a zip file", "not gzip data"),
    ("empty-input", b"", "the gzip stream is truncated"),
    ("truncated-gzip", pack([SourceFile("a", b"x" * 1000)])[:-12], "truncated"),
    (
        "trailing-data",
        pack([SourceFile("a", b"x")]) + b"junk",
        "unexpected data after the gzip stream",
    ),
    ("gzip-of-garbage", gzip.compress(b"not a tar" * 100), "not a valid tar stream"),
    (
        "truncated-member",
        gzip.compress(gzip.decompress(pack([SourceFile("a", b"x" * 5000)]))[:2048]),
        "not a valid tar stream",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [c[1:] for c in READER_ERRORS], ids=[c[0] for c in READER_ERRORS]
)
def test_reader_refuses_unsafe_or_damaged_archives(data: bytes, message: str) -> None:
    with pytest.raises(SourceError) as raised:
        read_archive(data)

    assert message in str(raised.value)
    assert str(raised.value).startswith("bundle archive: ")


def test_reader_refuses_an_archive_that_unpacks_past_the_limit() -> None:
    bomb = pack([SourceFile("zeros", bytes(4 * 1024 * 1024))])
    assert len(bomb) < 10 * 1024

    with pytest.raises(SourceError, match="unpacks to more than 1048576 bytes; refused"):
        read_archive(bomb, max_size=1024 * 1024)


def test_reader_accepts_an_archive_within_the_limit() -> None:
    archive = pack([SourceFile("zeros", bytes(1000))])
    tar_size = len(gzip.decompress(archive))

    assert read_archive(archive, max_size=tar_size) == {"zeros": bytes(1000)}


# --- properties -----------------------------------------------------------------------------

_COMPONENT = st.text(alphabet=st.sampled_from("abcXYZ019-_. éü漢"), min_size=1, max_size=40).filter(
    lambda part: part not in (".", "..")
)
_PATH = st.lists(_COMPONENT, min_size=1, max_size=4).map("/".join)


def _no_file_is_a_folder(files: dict[str, bytes]) -> bool:
    return not any(other.startswith(path + "/") for path in files for other in files)


FILE_SETS = st.dictionaries(_PATH, st.binary(max_size=600), max_size=8).filter(_no_file_is_a_folder)


@settings(max_examples=150, deadline=None)
@given(FILE_SETS)
def test_pack_then_read_round_trips_any_file_set(files: dict[str, bytes]) -> None:
    archive = pack(source_files(files))

    assert read_archive(archive) == files
    assert tree_hash(source_files(read_archive(archive))) == tree_hash(source_files(files))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise_anything_but_a_source_error(data: bytes) -> None:
    try:
        files = read_archive(data)
    except SourceError as error:
        assert str(error).startswith("bundle archive: ")
        return
    assert isinstance(files, dict)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_gzipped_arbitrary_bytes_never_raise_anything_but_a_source_error(data: bytes) -> None:
    try:
        files = read_archive(gzip.compress(data))
    except SourceError:
        return
    assert isinstance(files, dict)


VALID_TAR = gzip.decompress(
    pack([SourceFile("manifests/app.yaml", b"a: 1\n"), SourceFile("b" * 120, b"long")])
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_tar_headers_never_raise_anything_but_a_source_error(
    corruptions: list[tuple[int, int]],
) -> None:
    tar = bytearray(VALID_TAR)
    for position, value in corruptions:
        tar[position] = value  # the first 2 KiB hold the long-name entry and the first member
    try:
        files = read_archive(gzip.compress(bytes(tar)))
    except SourceError:
        return
    assert all(isinstance(content, bytes) for content in files.values())
