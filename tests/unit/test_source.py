"""Reading a source folder: bundle.yaml validation, the safe walk, and the tree hash."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.bundles.schema import ValueSchema
from conveyor.bundles.source import (
    AcceptedFinding,
    SourceFile,
    load_source,
    path_problem,
    read_tree,
    source_from_files,
    tree_hash,
)
from conveyor.errors import SourceError

HEADER = "apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: web\n"
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
ACCEPT = "rule: environment-name, file: manifests/app.yaml, path: metadata.name, reason: fine"


def files_with(bundle: str, **extra: bytes) -> dict[str, bytes]:
    return {"bundle.yaml": bundle.encode(), "manifests/app.yaml": DEPLOYMENT.encode(), **extra}


def parameters(properties: str, tail: str = "") -> str:
    return f"{HEADER}parameters:\n  type: object\n  properties:\n{properties}{tail}"


def write(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return root


# --- the sample source ----------------------------------------------------------------------


def test_sample_source_loads_with_its_spec_and_sorted_files(sample_folder: Path) -> None:
    source = load_source(sample_folder)

    assert source.spec.name == "web"
    assert source.spec.tests == ("manifests/smoke-job.yaml",)
    assert source.spec.allow_plaintext_secrets is False
    assert source.spec.parameters.names == (
        "image",
        "tag",
        "replicas",
        "port",
        "debug",
        "cpu",
        "hosts",
        "tier",
    )
    replicas = source.spec.parameters.get("replicas")
    assert replicas is not None
    assert replicas.schema == ValueSchema(type="integer", minimum=1, maximum=50)
    assert replicas.default == 1 and not replicas.required
    image = source.spec.parameters.get("image")
    assert image is not None and image.required and image.default is None
    assert [file.path for file in source.files] == [
        "README.md",
        "bundle.yaml",
        "manifests/deployment.yaml",
        "manifests/service.yaml",
        "manifests/smoke-job.yaml",
    ]
    assert [file.path for file in source.app_manifests] == [
        "manifests/deployment.yaml",
        "manifests/service.yaml",
    ]
    assert [file.path for file in source.test_manifests] == ["manifests/smoke-job.yaml"]
    assert source.label == str(sample_folder)


def test_files_are_sorted_by_full_path_not_by_walk_order(tmp_path: Path) -> None:
    # '-' sorts before '/', so "a-b/x" comes before "a/x" although the folder "a" sorts first.
    write(tmp_path, files_with(HEADER, **{"a/x": b"1", "a-b/x": b"2", "a0": b"3"}))

    paths = [file.path for file in read_tree(tmp_path)]

    assert paths == sorted(paths)
    assert paths.index("a-b/x") < paths.index("a/x") < paths.index("a0")


def test_label_is_the_folder_as_given_and_prefixes_messages(tmp_path: Path) -> None:
    write(tmp_path / "web", files_with(HEADER + "kind: Other\n"))

    with pytest.raises(SourceError) as raised:
        load_source(tmp_path / "web")

    assert str(raised.value).startswith(f"{tmp_path}/web/bundle.yaml:")


# --- bundle.yaml ----------------------------------------------------------------------------

BUNDLE_ERRORS = [
    ("invalid-yaml", HEADER + "tests: [\n", "web/bundle.yaml:5: invalid YAML"),
    ("not-a-mapping", "- a\n- b\n", "web/bundle.yaml: must hold exactly one YAML mapping"),
    ("two-documents", HEADER + "---\n" + HEADER, "must hold exactly one YAML mapping"),
    ("empty", "", "must hold exactly one YAML mapping"),
    ("duplicate-field", HEADER + "name: api\n", "found the key 'name' twice (first on line 3)"),
    (
        "duplicate-field-through-a-merge-key",
        HEADER + "<<: {name: api}\n",
        "found the key 'name' twice",
    ),
    ("unknown-field", HEADER + "replicas: 3\n", "web/bundle.yaml: replicas: unknown field"),
    (
        "api-version",
        HEADER.replace("v1alpha1", "v1"),
        "apiVersion: must be 'conveyor.dev/v1alpha1', got 'conveyor.dev/v1'",
    ),
    ("kind", HEADER.replace("Bundle", "Kustomization"), "kind: must be 'Bundle'"),
    ("name-missing", HEADER.replace("name: web\n", ""), "name: must be a DNS-1123 label"),
    ("name-uppercase", HEADER.replace("web", "Web"), "got 'Web'"),
    (
        "plaintext-flag-not-bool",
        HEADER + "allowPlaintextSecrets: 'no'\n",
        "allowPlaintextSecrets: must be true or false, got 'no'",
    ),
    ("tests-not-list", HEADER + "tests: manifests/app.yaml\n", "tests: must be a list"),
    ("lint-not-a-mapping", HEADER + "lint: [a]\n", "lint: must be a mapping (accept: [...]), got"),
    (
        "lint-unknown-field",
        HEADER + "lint: {ignore: []}\n",
        "lint.ignore: unknown field; known: accept",
    ),
    ("accept-not-a-list", HEADER + "lint: {accept: x}\n", "lint.accept: must be a list of {rule"),
    (
        "accept-entry-not-a-mapping",
        HEADER + "lint: {accept: [x]}\n",
        "lint.accept[0]: must be a mapping",
    ),
    (
        "accept-unknown-field",
        HEADER + "lint:\n  accept:\n    - {" + ACCEPT + ", line: 3}\n",
        "lint.accept[0].line: unknown field; known: rule, file, path, reason",
    ),
    (
        "accept-without-reason",
        HEADER + "lint:\n  accept:\n    - {" + ACCEPT.replace(", reason: fine", "") + "}\n",
        "lint.accept[0].reason: is missing",
    ),
    (
        "accept-blank-reason",
        HEADER
        + "lint:\n  accept:\n    - {"
        + ACCEPT.replace("reason: fine", "reason: ' '")
        + "}\n",
        "lint.accept[0].reason: must be a non-empty string, got ' '",
    ),
    (
        "accept-path-not-a-string",
        HEADER
        + "lint:\n  accept:\n    - {"
        + ACCEPT.replace("path: metadata.name", "path: [a]")
        + "}\n",
        'lint.accept[0].path: must be a non-empty string, got ["a"]',
    ),
    (
        "accept-a-rule-that-cannot-be",
        HEADER + "lint:\n  accept:\n    - {" + ACCEPT.replace("environment-name", "yaml") + "}\n",
        "lint.accept[0].rule: 'yaml' cannot be accepted; "
        "acceptable: environment-name, plaintext-secret",
    ),
    (
        "accept-a-file-that-is-not-a-manifest",
        HEADER
        + "lint:\n  accept:\n    - {"
        + ACCEPT.replace("manifests/app.yaml", "app.yaml")
        + "}\n",
        "lint.accept[0].file: 'app.yaml' is not a manifest of this source",
    ),
    (
        "accept-twice",
        HEADER
        + "lint:\n  accept:\n    - {"
        + ACCEPT
        + "}\n    - {"
        + ACCEPT.replace("fine", "other")
        + "}\n",
        "lint.accept[1]: environment-name at manifests/app.yaml metadata.name is accepted twice",
    ),
    ("tests-not-string", HEADER + "tests: [3]\n", "tests[0]: must be a path, got 3"),
    (
        "tests-escape-folder",
        HEADER + "tests: [../other/job.yaml]\n",
        "tests[0]: the path '../other/job.yaml' has a '..' component",
    ),
    (
        "tests-absolute",
        HEADER + "tests: [/etc/job.yaml]\n",
        "tests[0]: the path '/etc/job.yaml' is absolute",
    ),
    (
        "tests-not-a-manifest",
        HEADER + "tests: [manifests/missing.yaml]\n",
        "tests[0]: 'manifests/missing.yaml' is not a manifest of this source",
    ),
    (
        "tests-twice",
        HEADER + "tests: [manifests/app.yaml, manifests/app.yaml]\n",
        "tests[1]: 'manifests/app.yaml' is listed twice",
    ),
    (
        "parameters-not-mapping",
        HEADER + "parameters: [replicas]\n",
        "parameters: must be a mapping",
    ),
    (
        "parameters-type-not-object",
        HEADER + "parameters: {type: array}\n",
        "parameters.type: must be 'object', got 'array'",
    ),
    (
        "additional-properties-true",
        HEADER + "parameters: {type: object, additionalProperties: true}\n",
        "parameters.additionalProperties: may only be false",
    ),
    (
        "parameters-unknown-keyword",
        HEADER + "parameters: {type: object, patternProperties: {}}\n",
        "parameters.patternProperties: unsupported keyword here",
    ),
    (
        "unknown-type",
        parameters("    replicas: {type: int}\n"),
        "web/bundle.yaml: parameters.properties.replicas.type: unknown type 'int'",
    ),
    ("type-missing", parameters("    replicas: {default: 1}\n"), "replicas.type: missing"),
    ("object-type", parameters("    resources: {type: object}\n"), "unknown type 'object'"),
    (
        "unsupported-keyword",
        parameters("    url: {type: string, format: uri}\n"),
        "parameters.properties.url.format: unsupported keyword here; supported: type, description",
    ),
    (
        "keyword-of-another-type",
        parameters("    replicas: {type: integer, pattern: '^1'}\n"),
        "parameters.properties.replicas.pattern: unsupported keyword",
    ),
    (
        "parameter-name",
        parameters("    my-param: {type: string}\n"),
        "parameters.properties.my-param: a parameter name is letters, digits and '_'",
    ),
    (
        "property-not-mapping",
        parameters("    replicas: integer\n"),
        "parameters.properties.replicas: must be a mapping, got 'integer'",
    ),
    (
        "default-wrong-type",
        parameters("    replicas: {type: integer, default: '3'}\n"),
        "parameters.properties.replicas.default: must be an integer, got '3'",
    ),
    (
        "default-float-for-integer",
        parameters("    replicas: {type: integer, default: 3.0}\n"),
        "replicas.default: must be an integer, got 3.0",
    ),
    (
        "default-bool-for-number",
        parameters("    cpu: {type: number, default: true}\n"),
        "cpu.default: must be a number, got true",
    ),
    (
        "default-below-minimum",
        parameters("    replicas: {type: integer, minimum: 1, default: 0}\n"),
        "replicas.default: must be at least 1, got 0",
    ),
    (
        "default-null",
        parameters("    image: {type: string, default: null}\n"),
        "image.default: must be a string, got null",
    ),
    (
        "default-not-in-enum",
        parameters("    tier: {type: string, enum: [free, paid], default: gold}\n"),
        'tier.default: must be one of ["free", "paid"], got \'gold\'',
    ),
    (
        "enum-empty",
        parameters("    tier: {type: string, enum: []}\n"),
        "tier.enum: must be a non-empty list",
    ),
    (
        "enum-value-wrong-type",
        parameters("    tier: {type: string, enum: [free, 2]}\n"),
        "tier.enum[1]: must be a string, got 2",
    ),
    (
        "minimum-not-number",
        parameters("    replicas: {type: integer, minimum: one}\n"),
        "replicas.minimum: must be a number, got 'one'",
    ),
    (
        "min-length-negative",
        parameters("    tag: {type: string, minLength: -1}\n"),
        "tag.minLength: must be a non-negative integer, got -1",
    ),
    (
        "pattern-invalid",
        parameters("    tag: {type: string, pattern: '(['}\n"),
        "tag.pattern: not a valid regular expression",
    ),
    (
        "pattern-not-string",
        parameters("    tag: {type: string, pattern: 3}\n"),
        "tag.pattern: must be a string, got 3",
    ),
    (
        "array-without-items",
        parameters("    hosts: {type: array}\n"),
        "hosts.items: missing; an array parameter says what its items are",
    ),
    (
        "items-with-default",
        parameters("    hosts: {type: array, items: {type: string, default: a}}\n"),
        "hosts.items.default: unsupported keyword here",
    ),
    (
        "items-bad-type",
        parameters("    hosts: {type: array, items: {type: str}}\n"),
        "hosts.items.type: unknown type 'str'",
    ),
    (
        "description-not-string",
        parameters("    tag: {type: string, description: [a]}\n"),
        "tag.description: must be a string",
    ),
    (
        "required-not-declared",
        parameters("    tag: {type: string}\n", "  required: [image]\n"),
        "parameters.required[0]: 'image' is not a declared property",
    ),
    (
        "required-twice",
        parameters("    tag: {type: string}\n", "  required: [tag, tag]\n"),
        "parameters.required[1]: 'tag' is listed twice",
    ),
    (
        "required-not-list",
        parameters("    tag: {type: string}\n", "  required: tag\n"),
        "parameters.required: must be a list of parameter names",
    ),
]


@pytest.mark.parametrize(
    ("bundle", "message"),
    [case[1:] for case in BUNDLE_ERRORS],
    ids=[case[0] for case in BUNDLE_ERRORS],
)
def test_bad_bundle_yaml_names_the_file_and_field(bundle: str, message: str) -> None:
    with pytest.raises(SourceError) as raised:
        source_from_files(files_with(bundle), "web")

    assert message in str(raised.value)
    assert str(raised.value).startswith("web/bundle.yaml")


def test_accepted_findings_are_read_in_order_with_their_reasons() -> None:
    bundle = (
        HEADER + "lint:\n  accept:\n    - {" + ACCEPT + "}\n"
        "    - rule: plaintext-secret\n      file: manifests/app.yaml\n      path: data\n"
        "      reason: '  the demo token  '\n"
    )

    spec = source_from_files(files_with(bundle), "web").spec

    assert spec.accepted_findings == (
        AcceptedFinding("environment-name", "manifests/app.yaml", "metadata.name", "fine"),
        AcceptedFinding("plaintext-secret", "manifests/app.yaml", "data", "the demo token"),
    )
    assert source_from_files(files_with(HEADER + "lint: {}\n"), "web").spec.accepted_findings == ()
    assert source_from_files(files_with(HEADER), "web").spec.accepted_findings == ()


VALID_SCHEMAS = [
    ("no-parameters", HEADER, ()),
    ("empty-properties", HEADER + "parameters: {type: object}\n", ()),
    (
        "every-type",
        parameters(
            "    s: {type: string, minLength: 1, maxLength: 9, pattern: '^a', default: ab}\n"
            "    i: {type: integer, minimum: 0, maximum: 9, exclusiveMaximum: 10, default: 0}\n"
            "    n: {type: number, exclusiveMinimum: 0, default: 1}\n"
            "    b: {type: boolean, default: true, description: a flag}\n"
            "    a: {type: array, items: {type: integer}, minItems: 1, maxItems: 2, default: [1]}\n"
            "    e: {type: number, enum: [1, 2.5], default: 1.0}\n",
            "  required: [s]\n  additionalProperties: false\n  description: knobs\n",
        ),
        ("s", "i", "n", "b", "a", "e"),
    ),
]


@pytest.mark.parametrize(
    ("bundle", "names"),
    [case[1:] for case in VALID_SCHEMAS],
    ids=[case[0] for case in VALID_SCHEMAS],
)
def test_valid_parameter_schemas_load(bundle: str, names: tuple[str, ...]) -> None:
    source = source_from_files(files_with(bundle), "web")

    assert source.spec.parameters.names == names


# --- the folder walk ------------------------------------------------------------------------


def make_symlink_to_file(root: Path) -> str:
    (root / "manifests/link.yaml").symlink_to(root / "manifests/app.yaml")
    return "manifests/link.yaml"


def make_symlink_outside(root: Path) -> str:
    (root.parent / "secret.txt").write_text("s3cret")
    (root / "escape.txt").symlink_to("../secret.txt")
    return "escape.txt"


def make_symlinked_folder(root: Path) -> str:
    (root.parent / "elsewhere").mkdir()
    (root / "more").symlink_to(root.parent / "elsewhere", target_is_directory=True)
    return "more"


def make_fifo(root: Path) -> str:
    os.mkfifo(root / "manifests/pipe.yaml")
    return "manifests/pipe.yaml"


def make_socket(root: Path) -> str:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    return "sock"


def make_character_device(root: Path) -> str:
    os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return "null"


def make_non_utf8_name(root: Path) -> str:
    with open(os.fsencode(root) + b"/bad-\xff.txt", "wb") as stream:
        stream.write(b"x")
    return "bad-"


def make_newline_name(root: Path) -> str:
    (root / "two\nlines.txt").write_text("x")
    return "two\nlines.txt"


WALK_ERRORS = [
    ("symlink-to-file", make_symlink_to_file, "is a symlink; a bundle holds regular files only"),
    ("symlink-outside", make_symlink_outside, "is a symlink"),
    ("symlinked-folder", make_symlinked_folder, "is a symlink"),
    ("fifo", make_fifo, "is a FIFO"),
    ("socket", make_socket, "is a socket"),
    ("character-device", make_character_device, "is a character device"),
    ("non-utf8-name", make_non_utf8_name, "the path is not valid UTF-8"),
    ("control-character-name", make_newline_name, "the path contains a control character"),
]


@pytest.mark.parametrize(
    ("make_bad_entry", "message"),
    [case[1:] for case in WALK_ERRORS],
    ids=[case[0] for case in WALK_ERRORS],
)
def test_walk_refuses_what_is_not_a_plain_file_inside(
    tmp_path: Path, make_bad_entry: Callable[[Path], str], message: str
) -> None:
    root = write(tmp_path / "web", files_with(HEADER))
    bad_path = make_bad_entry(root)

    with pytest.raises(SourceError) as raised:
        load_source(root)

    assert message in str(raised.value)
    assert str(raised.value).startswith(f"{root}/{bad_path}")


def test_walk_refuses_a_source_over_the_size_limit_naming_the_file(tmp_path: Path) -> None:
    root = write(tmp_path / "web", files_with(HEADER, **{"z-big.bin": b"x" * 2000}))

    with pytest.raises(SourceError) as raised:
        load_source(root, max_size=2000)

    assert str(raised.value).startswith(f"{root}/z-big.bin: the source grows past")
    assert "2000 bytes" in str(raised.value)


def test_walk_accepts_a_source_exactly_at_the_size_limit(tmp_path: Path) -> None:
    root = write(tmp_path / "web", files_with(HEADER))
    total = sum(len(file.content) for file in read_tree(root))

    assert len(load_source(root, max_size=total).files) == 2


def test_walk_refuses_something_that_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    with pytest.raises(SourceError, match="file: not a folder"):
        load_source(tmp_path / "file")


def test_empty_folders_are_not_part_of_a_source(tmp_path: Path) -> None:
    root = write(tmp_path / "web", files_with(HEADER))
    (root / "empty").mkdir()

    assert [file.path for file in load_source(root).files] == ["bundle.yaml", "manifests/app.yaml"]


LAYOUT_ERRORS = [
    ("no-bundle-yaml", {"manifests/app.yaml": b"a: 1"}, "web: has no bundle.yaml"),
    ("no-manifests", {"bundle.yaml": HEADER.encode()}, "web: no manifests"),
    (
        "manifests-is-a-file",
        {"bundle.yaml": HEADER.encode(), "manifests": b"a: 1"},
        "web: no manifests",
    ),
    (
        "not-yaml-under-manifests",
        files_with(HEADER, **{"manifests/notes.txt": b"x"}),
        "web/manifests/notes.txt: not a manifest; only .yaml and .yml files",
    ),
    (
        "bundle-not-utf8",
        {"bundle.yaml": b"name: \xff", "manifests/a.yaml": b""},
        "web/bundle.yaml: not UTF-8 text",
    ),
    (
        "path-escapes",
        files_with(HEADER, **{"../x.yaml": b""}),
        "web/../x.yaml: the path has a '..' component",
    ),
    (
        "kustomize-folder-without-kustomization",
        {"bundle.yaml": (HEADER + "kustomize: k/overlay\n").encode(), "k/overlay/x.yaml": b""},
        "web/bundle.yaml: kustomize: 'k/overlay' holds no kustomization.yaml",
    ),
    (
        "kustomize-under-manifests",
        {
            "bundle.yaml": (HEADER + "kustomize: manifests/k\n").encode(),
            "manifests/k/kustomization.yaml": b"resources: []",
        },
        "web/bundle.yaml: kustomize: 'manifests/k' is under manifests/",
    ),
    (
        "kustomize-not-a-path",
        {"bundle.yaml": (HEADER + "kustomize: [a]\n").encode()},
        "web/bundle.yaml: kustomize: must be a folder path",
    ),
    (
        "kustomize-escapes",
        {"bundle.yaml": (HEADER + "kustomize: ../other\n").encode()},
        "web/bundle.yaml: kustomize: the path '../other' has a '..' component",
    ),
]


def test_a_kustomize_source_needs_no_manifests_of_its_own() -> None:
    source = source_from_files(
        {
            "bundle.yaml": (HEADER + "kustomize: kustomize/\n").encode(),
            "kustomize/kustomization.yaml": b"resources: [deployment.yaml]",
        },
        "web",
    )
    assert source.spec.kustomize == "kustomize"
    assert source.manifests == ()


@pytest.mark.parametrize(
    ("files", "message"),
    [case[1:] for case in LAYOUT_ERRORS],
    ids=[case[0] for case in LAYOUT_ERRORS],
)
def test_layout_errors(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(SourceError) as raised:
        source_from_files(files, "web")

    assert message in str(raised.value)


def test_yml_manifests_and_other_files_are_accepted() -> None:
    source = source_from_files(
        files_with(HEADER, **{"manifests/b.yml": b"", "docs/README.md": b"hi"}), "web"
    )

    assert [file.path for file in source.manifests] == ["manifests/app.yaml", "manifests/b.yml"]
    assert "docs/README.md" in [file.path for file in source.files]


# --- paths ----------------------------------------------------------------------------------

PATHS = [
    ("plain", "manifests/app.yaml", None),
    ("unicode", "manifests/déploiement.yaml", None),
    ("dotfile", ".gitignore", None),
    ("empty", "", "is empty"),
    ("absolute", "/etc/passwd", "is absolute"),
    ("parent", "a/../../b", "has a '..' component"),
    ("only-parent", "..", "has a '..' component"),
    ("dot-component", "./a", "is not in normal form"),
    ("double-slash", "a//b", "is not in normal form"),
    ("trailing-slash", "a/", "is not in normal form"),
    ("backslash", "a\\..\\b", "contains a backslash"),
    ("nul", "a\0b", "contains a control character"),
    ("surrogate", "a\udcffb", "is not valid UTF-8"),
]


@pytest.mark.parametrize(
    ("path", "problem"), [case[1:] for case in PATHS], ids=[case[0] for case in PATHS]
)
def test_path_problem(path: str, problem: str | None) -> None:
    found = path_problem(path)

    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


# --- the tree hash --------------------------------------------------------------------------

BASE = (SourceFile("bundle.yaml", b"b"), SourceFile("manifests/a.yaml", b"a"))
TREE_CHANGES = [
    ("content-byte", (SourceFile("bundle.yaml", b"c"), BASE[1])),
    ("renamed", (BASE[0], SourceFile("manifests/b.yaml", b"a"))),
    ("file-added", (*BASE, SourceFile("README.md", b""))),
    ("file-removed", BASE[:1]),
    ("content-moved", (SourceFile("bundle.yaml", b"a"), SourceFile("manifests/a.yaml", b"b"))),
]


@pytest.mark.parametrize(
    "changed", [case[1] for case in TREE_CHANGES], ids=[case[0] for case in TREE_CHANGES]
)
def test_tree_hash_changes_with_any_change_of_the_tree(changed: tuple[SourceFile, ...]) -> None:
    assert tree_hash(changed) != tree_hash(BASE)


def test_tree_hash_ignores_the_order_files_are_given_in() -> None:
    assert tree_hash(reversed(BASE)) == tree_hash(BASE)
    assert tree_hash(BASE).startswith("sha256:") and len(tree_hash(BASE)) == 71


def test_tree_hash_ignores_location_timestamps_modes_and_owners(tmp_path: Path) -> None:
    files = files_with(HEADER, **{"bin/run.sh": b"#!/bin/sh\n"})
    one = write(tmp_path / "one" / "web", files)
    two = write(tmp_path / "elsewhere" / "copy", dict(reversed(files.items())))
    for path in two.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
        os.chown(path, 4242, 4343)

    assert tree_hash(load_source(one).files) == tree_hash(load_source(two).files)
