"""The OCI adapter without a registry: canonical manifests, locations, the OCI layout backend."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.adapters import oci
from conveyor.errors import InputError, IntegrityError, RegistryError

TREE = "0123456789abcdef" * 4
CREATED = "2024-01-01T00:00:00Z"
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def _annotations(tree_hash: str = TREE, name: str = "shop") -> oci.BundleAnnotations:
    return oci.BundleAnnotations(
        name=name,
        tree_hash=tree_hash,
        source="https://git.example.com/shop.git",
        revision="main@sha1:3f2a",
        created=CREATED,
    )


def _bundle(text: str = "manifests") -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _layout(tmp_path: Path) -> oci.BundleStore:
    return oci.open_store(f"oci:{tmp_path / 'layout'}")


# --- canonical manifests ---------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_has_no_whitespace() -> None:
    assert oci.canonical_json({"b": [1, {"d": 2, "c": "é"}], "a": None}) == (
        '{"a":null,"b":[1,{"c":"é","d":2}]}'.encode()
    )


def test_manifest_is_flux_compatible_and_canonical() -> None:
    bundle = _bundle()
    data = oci.build_manifest(bundle, _annotations())
    manifest = json.loads(data)

    assert data == oci.canonical_json(manifest), "serialized with sorted keys and no spaces"
    assert manifest == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.cncf.flux.config.v1+json",
            "digest": EMPTY_CONFIG_DIGEST,
            "size": 2,
        },
        "layers": [
            {
                "mediaType": "application/vnd.cncf.flux.content.v1.tar+gzip",
                "digest": "sha256:" + hashlib.sha256(bundle).hexdigest(),
                "size": len(bundle),
            }
        ],
        "annotations": {
            "org.opencontainers.image.source": "https://git.example.com/shop.git",
            "org.opencontainers.image.revision": "main@sha1:3f2a",
            "org.opencontainers.image.created": CREATED,
            "dev.conveyor.bundle.name": "shop",
            "dev.conveyor.bundle.tree-hash": TREE,
        },
    }
    assert oci.sha256_digest(oci.CONFIG_BYTES) == EMPTY_CONFIG_DIGEST


def test_manifest_digest_is_pinned() -> None:
    """The same inputs give this exact digest on every machine and Python version."""
    data = oci.build_manifest(b"\x1f\x8bbundle", _annotations())
    assert oci.sha256_digest(data) == (
        "sha256:5b185bb1dfc46892659c8c071f70ddbb24a3f7fce95e01b44adc0952af55c93a"
    )


@given(
    content=st.binary(max_size=64),
    name=st.text(min_size=1, max_size=20),
    tree=st.text(alphabet="0123456789abcdef", min_size=40, max_size=64),
)
def test_same_inputs_same_bytes_and_tree_hash_changes_digest(
    content: bytes, name: str, tree: str
) -> None:
    bundle = b"\x1f\x8b" + content
    first = oci.build_manifest(bundle, _annotations(tree, name))
    assert first == oci.build_manifest(bundle, _annotations(tree, name))
    other_tree = ("f" if tree[0] != "f" else "e") + tree[1:]
    assert first != oci.build_manifest(bundle, _annotations(other_tree, name))


@pytest.mark.parametrize(
    ("annotations", "bundle", "message"),
    [
        (_annotations(), b"plain tar", "not gzip"),
        (oci.BundleAnnotations("", TREE, "s", "r", CREATED), _bundle(), "`name` is empty"),
        (oci.BundleAnnotations("n", TREE, "s", "", CREATED), _bundle(), "`revision` is empty"),
        (oci.BundleAnnotations("n", TREE, "s", "r", "yesterday"), _bundle(), "RFC 3339"),
        (oci.BundleAnnotations("n", "xyz", "s", "r", CREATED), _bundle(), "tree hash"),
    ],
)
def test_bad_bundle_inputs_are_refused(
    annotations: oci.BundleAnnotations, bundle: bytes, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        oci.build_manifest(bundle, annotations)


def test_tree_tag_uses_the_first_40_hex_digits() -> None:
    assert oci.tree_tag(TREE) == "tree-" + TREE[:40]
    assert oci.tree_tag("sha256:" + TREE) == "tree-" + TREE[:40]
    for bad in ("", "ABCDEF" * 10, "abc", TREE + "g"):
        with pytest.raises(InputError, match="tree hash"):
            oci.tree_tag(bad)


# --- locations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "plain_http"),
    [
        ("127.0.0.1:5000/bundles", oci.RegistryLocation("127.0.0.1:5000", "bundles"), True),
        ("localhost/team/shop", oci.RegistryLocation("localhost", "team/shop"), True),
        (
            "registry.example.com/a/b-c/d__e.f",
            oci.RegistryLocation("registry.example.com", "a/b-c/d__e.f"),
            False,
        ),
        ("ghcr.io:443/org/app", oci.RegistryLocation("ghcr.io:443", "org/app"), False),
        ("[::1]:5000/conveyor/web", oci.RegistryLocation("[::1]:5000", "conveyor/web"), False),
    ],
)
def test_registry_locations(text: str, expected: oci.RegistryLocation, plain_http: bool) -> None:
    parsed = oci.parse_location(text)
    assert parsed == expected
    assert isinstance(parsed, oci.RegistryLocation)
    assert parsed.plain_http is plain_http
    assert str(parsed) == text


def test_layout_locations() -> None:
    assert oci.parse_location("oci:/var/bundles") == oci.LayoutLocation(Path("/var/bundles"))
    assert oci.parse_location("oci:relative/dir") == oci.LayoutLocation(Path("relative/dir"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("oci:", "names no folder"),
        ("http://127.0.0.1:5000/bundles", "URL scheme"),
        ("127.0.0.1:5000", "not `host"),
        ("127.0.0.1:5000/", "not `host"),
        ("/bundles", "not `host"),
        ("127.0.0.1:5000/Bundles", "not a valid OCI repository"),
        ("127.0.0.1:5000/bundles:latest", "not a valid OCI repository"),
        ("127.0.0.1:5000/a//b", "not a valid OCI repository"),
        ("bad host/x", "not `host"),
    ],
)
def test_bad_locations_are_refused_with_an_example(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as raised:
        oci.parse_location(text)
    assert raised.value.hint and "oci:/path" in raised.value.hint


def test_credentials_must_come_in_pairs_and_not_for_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="takes no credentials"):
        oci.open_store(f"oci:{tmp_path}", username="u", password="p")
    with pytest.raises(InputError, match="needs a password"):
        oci.open_store("127.0.0.1:1/x", username="u")
    assert isinstance(oci.open_store("127.0.0.1:1/x"), oci.RegistryStore)
    assert isinstance(oci.open_store(f"oci:{tmp_path}"), oci.LayoutStore)


# --- the OCI layout folder backend -----------------------------------------------------------


def test_layout_push_pull_roundtrip_and_files(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    bundle = _bundle()
    digest = store.push(bundle, _annotations(), ["dev"])

    manifest, content = store.pull(digest)
    assert content == bundle
    assert manifest["annotations"]["dev.conveyor.bundle.tree-hash"] == TREE
    folder = tmp_path / "layout"
    assert json.loads((folder / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((folder / "index.json").read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {
        e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"]
        for e in index["manifests"]
    } == {"dev": digest, oci.tree_tag(TREE): digest}
    blob_names = sorted(p.name for p in (folder / "blobs" / "sha256").iterdir())
    assert blob_names == sorted(
        d.removeprefix("sha256:") for d in (digest, EMPTY_CONFIG_DIGEST, oci.sha256_digest(bundle))
    ), "three blobs, no temporary files left behind"
    assert (
        hashlib.sha256((folder / "blobs/sha256" / digest[7:]).read_bytes()).hexdigest()
        == (digest[7:])
    )


def test_layout_push_is_idempotent_and_writes_no_blob_twice(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    digest = store.push(_bundle(), _annotations(), ["dev"])
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    inodes = {p.name: p.stat().st_ino for p in blobs.iterdir()}
    assert store.push(_bundle(), _annotations(), ["dev"]) == digest
    assert {p.name: p.stat().st_ino for p in blobs.iterdir()} == inodes


def test_layout_reuse_lookup_by_tree_hash(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    assert store.find_by_tree_hash(TREE) is None, "an empty (even absent) folder has nothing"
    digest = store.push(_bundle(), _annotations())
    assert store.find_by_tree_hash(TREE) == digest
    assert store.find_by_tree_hash("f" * 64) is None


def test_layout_tag_moves_one_tag_and_keeps_the_others(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    first = store.push(_bundle("one"), _annotations(), ["dev", "staging"])
    second = store.push(_bundle("two"), _annotations("f" * 64), ["dev"])
    manifest_blob = tmp_path / "layout" / "blobs" / "sha256" / first[7:]
    before = manifest_blob.read_bytes()

    store.tag(first, "prod")
    store.tag(second, "staging")

    assert store.resolve("prod") == first
    assert store.resolve("staging") == second
    assert store.resolve("dev") == second
    assert store.resolve(oci.tree_tag(TREE)) == first
    assert manifest_blob.read_bytes() == before, "tagging never rewrites the manifest"
    assert store.list_tags() == sorted(
        ["dev", "prod", "staging", oci.tree_tag(TREE), oci.tree_tag("f" * 64)]
    )


def test_layout_missing_things_are_input_errors(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    store.push(_bundle(), _annotations(), ["dev"])
    with pytest.raises(InputError, match="no bundle is tagged 'prod'"):
        store.resolve("prod")
    with pytest.raises(InputError, match="no bundle has digest"):
        store.pull("sha256:" + "0" * 64)
    with pytest.raises(InputError, match="no bundle has digest"):
        store.tag("sha256:" + "0" * 64, "prod")
    with pytest.raises(InputError, match="not a sha256 digest"):
        store.pull("dev")
    with pytest.raises(InputError, match="not a valid OCI tag"):
        store.tag(store.resolve("dev"), "-bad")
    with pytest.raises(InputError, match="not a valid OCI tag"):
        store.push(_bundle(), _annotations(), ["a:b"])


def _blob(tmp_path: Path, digest: str) -> Path:
    return tmp_path / "layout" / "blobs" / "sha256" / digest.removeprefix("sha256:")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: bytes([data[0] ^ 1]) + data[1:],
        lambda data: data + b"x",
        lambda data: data[:-1],
    ],
    ids=["same-size", "longer", "shorter"],
)
def test_layout_tampered_layer_is_detected(
    tmp_path: Path, tamper: Callable[[bytes], bytes]
) -> None:
    store = _layout(tmp_path)
    bundle = _bundle()
    digest = store.push(bundle, _annotations())
    layer = _blob(tmp_path, oci.sha256_digest(bundle))
    layer.write_bytes(tamper(layer.read_bytes()))

    with pytest.raises(IntegrityError) as raised:
        store.pull(digest)
    assert str(tmp_path / "layout") in str(raised.value)
    assert digest in str(raised.value)


def test_layout_tampered_or_missing_blobs_are_detected(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    bundle = _bundle()
    digest = store.push(bundle, _annotations())
    manifest = _blob(tmp_path, digest)
    original = manifest.read_bytes()

    manifest.write_bytes(original.replace(b"shop", b"sh0p"))
    with pytest.raises(IntegrityError, match="manifest read for"):
        store.pull(digest)
    with pytest.raises(IntegrityError, match="manifest read for"):
        store.tag(digest, "prod")

    manifest.write_bytes(original)
    _blob(tmp_path, oci.sha256_digest(bundle)).unlink()
    with pytest.raises(IntegrityError, match="which is missing"):
        store.pull(digest)


def test_layout_tree_tag_pointing_elsewhere_is_an_integrity_error(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    other = store.push(_bundle(), _annotations("f" * 64))
    store.tag(other, oci.tree_tag(TREE))
    with pytest.raises(IntegrityError, match="moved the tag"):
        store.find_by_tree_hash(TREE)


def test_layout_refuses_foreign_content(tmp_path: Path) -> None:
    store = _layout(tmp_path)
    store.push(_bundle(), _annotations())
    foreign = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}'
    digest = oci.sha256_digest(foreign)
    _blob(tmp_path, digest).write_bytes(foreign)
    with pytest.raises(InputError, match="not a Conveyor bundle"):
        store.pull(digest)
    with pytest.raises(InputError, match="not a Conveyor bundle"):
        store.tag(digest, "prod")

    (tmp_path / "layout" / "index.json").write_text("[]")
    with pytest.raises(RegistryError, match=r"index\.json is not an OCI image index"):
        store.list_tags()

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    with pytest.raises(RegistryError, match="not empty and has no oci-layout"):
        oci.open_store(f"oci:{tmp_path / 'elsewhere'}").push(_bundle(), _annotations())


def test_layout_unwritable_folder_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = oci.open_store(f"oci:{blocker / 'layout'}")
    with pytest.raises(RegistryError, match="writing blob") as raised:
        store.push(_bundle(), _annotations())
    assert raised.value.hint and "writable" in raised.value.hint


# --- references ------------------------------------------------------------------------------

DIGEST_A = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("staging", oci.Reference(None, "staging", None)),
        ("v1.2.3", oci.Reference(None, "v1.2.3", None)),
        (DIGEST_A, oci.Reference(None, None, DIGEST_A)),
        (
            f"127.0.0.1:5000/team/app@{DIGEST_A}",
            oci.Reference("127.0.0.1:5000/team/app", None, DIGEST_A),
        ),
        ("127.0.0.1:5000/team/app:prod", oci.Reference("127.0.0.1:5000/team/app", "prod", None)),
        (
            f"registry.example.com/app:v1@{DIGEST_A}",
            oci.Reference("registry.example.com/app", "v1", DIGEST_A),
        ),
        ("localhost/ledger", oci.Reference("localhost/ledger", None, None)),
        ("oci:/var/b:dev", oci.Reference("oci:/var/b", "dev", None)),
        (f"oci:rel/dir@{DIGEST_A}", oci.Reference("oci:rel/dir", None, DIGEST_A)),
        ("oci:bundles:prod", oci.Reference("oci:bundles", "prod", None)),
    ],
)
def test_references_are_read_like_skopeo_and_oras(text: str, expected: oci.Reference) -> None:
    assert oci.parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("sha256:abc", "not a sha256 digest"),
        ("127.0.0.1:5000", "neither a tag, a digest nor a full reference"),
        ("127.0.0.1:5000/app@md5:00", "after @ is not a sha256 digest"),
        (f"127.0.0.1:5000/App@{DIGEST_A}", "not a valid OCI repository"),
        ("127.0.0.1:5000/app:-bad", "not a valid OCI tag"),
        ("http://127.0.0.1:5000/app:v1", "URL scheme"),
    ],
)
def test_bad_references_name_the_wrong_part(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        oci.parse_reference(text)
