"""Image references, the fields that hold them, the lock and the pinning render (pure, no
registry)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.bundles import images
from conveyor.bundles.images import (
    ImageLock,
    ImageProblem,
    ImageSettings,
    parse_image_settings,
    parse_lock,
    parse_reference,
    pin,
)
from conveyor.errors import SourceError

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("team/ledger:1", "docker.io", "team/ledger", "1", None),
        ("ghcr.io/launchpad/rocket:2.3.0", "ghcr.io", "launchpad/rocket", "2.3.0", None),
        ("localhost/web", "localhost", "web", None, None),
        ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000", "a/b", "c", None),
        ("registry.example/web:1.0.0@" + DIGEST, "registry.example", "web", "1.0.0", DIGEST),
        ("registry.example/web@" + DIGEST, "registry.example", "web", None, DIGEST),
        ("dev:5000/ledger:1.4", "dev:5000", "ledger", "1.4", None),
        ("a.b/c__d/e-f.g:v_1", "a.b", "c__d/e-f.g", "v_1", None),
    ],
)
def test_references_are_read_as_docker_reads_them(
    text: str, registry: str, path: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_reference(text)
    assert (reference.registry, reference.path, reference.tag, reference.digest) == (
        registry,
        path,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    "text",
    ["", "Web:1", "registry.example/web:", "web:1@sha256:zz", "-web", "web::1", "a//b", " web"],
)
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an image reference"):
        parse_reference(text)


def _pod_spec(image: str, init: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if init:
        spec["initContainers"] = [{"name": "init", "image": init}]
    return spec


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"kind": "Pod", "spec": _pod_spec("a:1")}, {("spec", "containers", 0, "image"): "a:1"}),
        (
            {"kind": "Deployment", "spec": {"template": {"spec": _pod_spec("a:1", "b:2")}}},
            {
                ("spec", "template", "spec", "containers", 0, "image"): "a:1",
                ("spec", "template", "spec", "initContainers", 0, "image"): "b:2",
            },
        ),
        (
            {
                "kind": "CronJob",
                "spec": {"jobTemplate": {"spec": {"template": {"spec": _pod_spec("c:3")}}}},
            },
            {("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "image"): "c:3"},
        ),
        (
            {
                "kind": "Service",
                "apiVersion": "serving.knative.dev/v1",
                "spec": {"template": {"spec": {"containers": [{"image": "k:1"}]}}},
            },
            {("spec", "template", "spec", "containers", 0, "image"): "k:1"},
        ),
        (
            {"kind": "Pod", "spec": {"ephemeralContainers": [{"name": "dbg", "image": "d:1"}]}},
            {("spec", "ephemeralContainers", 0, "image"): "d:1"},
        ),
        ({"kind": "ConfigMap", "data": {"containers": "image: x"}}, {}),
        ({"kind": "CRD", "spec": {"containers": {"image": "schema, not a list"}}}, {}),
    ],
    ids=["pod", "deployment-with-init", "cronjob", "knative", "ephemeral", "configmap", "schema"],
)
def test_container_images_are_found_wherever_a_pod_spec_is(
    obj: dict[str, Any], expected: dict[tuple[Any, ...], str]
) -> None:
    assert dict(images.image_fields(obj)) == expected


def test_fields_named_in_bundle_yaml_hold_images_of_their_kind_only() -> None:
    settings = parse_image_settings(
        {"fields": [{"kind": "Gateway", "path": "spec.plugins[*].image"}]}, "bundle.yaml"
    )
    gateway = {"kind": "Gateway", "spec": {"plugins": [{"image": "p:1"}, {"image": "q:2"}]}}
    other = {"kind": "Other", "spec": {"plugins": [{"image": "p:1"}]}}
    assert dict(images.image_fields(gateway, settings.fields)) == {
        ("spec", "plugins", 0, "image"): "p:1",
        ("spec", "plugins", 1, "image"): "q:2",
    }
    assert dict(images.image_fields(other, settings.fields)) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("yes", "images: must be a mapping"),
        ({"pinned": []}, "unknown field"),
        ({"fields": {}}, "images.fields: must be a list"),
        ({"fields": [{"kind": "X"}]}, r"images.fields\[0\]: must be a mapping with exactly"),
        ({"fields": [{"kind": "X", "path": "spec..image"}]}, "is not a field path"),
        ({"unpinned": [{"repository": "r.example/a"}]}, "exactly repository, reason"),
        ({"unpinned": [{"repository": "r.example/a", "reason": " "}]}, "non-empty string"),
        ({"unpinned": [{"repository": "r.example/a:1", "reason": "x"}]}, "names a tag"),
        ({"unpinned": [{"repository": "R/a", "reason": "x"}]}, "not an image reference"),
        (
            {
                "unpinned": [
                    {"repository": "nginx", "reason": "x"},
                    {"repository": "docker.io/library/nginx", "reason": "y"},
                ]
            },
            "listed twice",
        ),
    ],
)
def test_bad_image_settings_are_refused_naming_the_field(raw: object, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_image_settings(raw, "web/bundle.yaml")


def test_lock_round_trips_and_refuses_what_the_build_did_not_write() -> None:
    lock = ImageLock({"b:1": OTHER, "a:1": DIGEST})
    data = lock.to_bytes()
    assert data.index(b'"a:1"') < data.index(b'"b:1"'), "sorted: the same lock, the same bytes"
    assert parse_lock(data, "images.lock.json") == lock
    for bad in (
        b"not json",
        b'{"kind": "ImageLock", "images": []}',
        b'{"apiVersion": "conveyor.dev/v1alpha1", "kind": "ImageLock", "images": '
        b'[{"image": "a:1", "digest": "sha256:short"}]}',
        b'{"apiVersion": "conveyor.dev/v1alpha1", "kind": "ImageLock", "images": '
        b'[{"image": "a:1", "digest": "'
        + DIGEST.encode()
        + b'"}, {"image": "a:1", "digest": "'
        + DIGEST.encode()
        + b'"}]}',
    ):
        with pytest.raises(SourceError, match=r"images\.lock\.json"):
            parse_lock(bad, "images.lock.json")


def _deployment(*images_: str) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images_)]
    return {"kind": "Deployment", "spec": {"template": {"spec": {"containers": containers}}}}


def _images_of(obj: dict[str, Any]) -> list[str]:
    return [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]]


UNPINNED = ImageSettings(unpinned=(images.UnpinnedRepository("registry.internal/tools", "why"),))


@pytest.mark.parametrize(
    ("written", "rendered"),
    [
        ("registry.example/web:1.0.0", f"registry.example/web:1.0.0@{DIGEST}"),
        ("nginx", f"nginx@{OTHER}"),
        (f"registry.example/web:9@{OTHER}", f"registry.example/web:9@{OTHER}"),
        ("registry.internal/tools:any", "registry.internal/tools:any"),
    ],
    ids=["tag-pinned", "no-tag-pinned", "written-with-digest", "unpinned-repository"],
)
def test_pin_rewrites_each_reference_from_the_lock(written: str, rendered: str) -> None:
    lock = ImageLock({"registry.example/web:1.0.0": DIGEST, "nginx": OTHER})
    obj = _deployment(written)
    pinned = pin(obj, lock, UNPINNED)
    assert _images_of(pinned) == [rendered]
    assert _images_of(obj) == [written], "the input is left as it was"


def test_pin_refuses_an_image_the_build_did_not_resolve_naming_the_field() -> None:
    lock = ImageLock({"registry.example/web:1.0.0": DIGEST})
    with pytest.raises(ImageProblem) as raised:
        pin(_deployment("registry.example/web:1.0.0", "registry.example/web:2.0.0"), lock, UNPINNED)
    assert raised.value.path == ("spec", "template", "spec", "containers", 1, "image")
    assert "'registry.example/web:2.0.0' is not in the bundle's image lock" in raised.value.message
    assert "registry.example/web:1.0.0" in raised.value.message


@pytest.mark.parametrize("value", [3, None, ["a:1"], "Not/A:Ref"])
def test_an_image_field_that_is_not_a_reference_is_a_problem(value: object) -> None:
    obj = {"kind": "Pod", "spec": {"containers": [{"image": value}]}}
    with pytest.raises(ImageProblem) as raised:
        list(images.references(obj, ImageSettings()))
    assert raised.value.path == ("spec", "containers", 0, "image")


def test_a_chosen_tag_replaces_the_written_one_in_every_render() -> None:
    lock = ImageLock(
        {"registry.example/web:1.2.0": DIGEST, "nginx:1": OTHER},
        overrides={"registry.example/web": "1.2.0"},
    )
    assert parse_lock(lock.to_bytes(), "images.lock.json") == lock
    pinned = pin(_deployment("registry.example/web:1.0.0", "nginx:1"), lock, UNPINNED)
    assert _images_of(pinned) == [f"registry.example/web:1.2.0@{DIGEST}", f"nginx:1@{OTHER}"]
