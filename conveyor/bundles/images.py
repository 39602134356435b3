"""Container images pinned by digest: which fields name an image, the lock a build writes into
the bundle, and the rewrite every render makes from it.

Why: a bundle's digest pins its manifests, not the code they run. A tag can be moved in its
registry between staging and prod, and an image named by tag would then run code in prod that no
gate of an earlier stage saw. So the build resolves every image reference the app's renders can
produce (bundle defaults and every target's parameters) to the digest its registry serves at that
moment and writes the answers into the bundle as an image lock (LOCK_FILE). Every render of the
bundle rewrites each reference to `repository:tag@sha256:...` from the lock, and refuses a
reference the lock does not hold: a target's parameters cannot choose an image the build did not
see. A reference already written with a digest is used as written.

Where images are: the `image` of every item of a `containers`, `initContainers` or
`ephemeralContainers` list anywhere in an object (Pods, workload and CronJob templates, and
custom resources that embed a pod spec, such as Knative Services or Argo Rollouts), plus the
fields bundle.yaml names for custom resources that keep an image elsewhere:

    images:
      fields:                       # images in custom resources, by kind and field path
        - kind: Gateway
          path: spec.proxy.image    # `[*]` for every item of a list: spec.plugins[*].image
      unpinned:                     # left as written: the builder cannot reach their registry
        - repository: registry.internal.example/tools
          reason: only the cluster's network reaches this registry

A release may choose the tag of a repository for every stage (`conveyor release --image
registry.example/web=1.2.0`, or an image watch): the build resolves that tag instead of the one
the manifests or parameters name and records the choice in the lock, and every render uses it.

An unpinned repository matches the repository's every tag. It is shown by `bundle inspect`, in
the approval form and the promotion report, with its reason.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from conveyor.errors import SourceError
from conveyor.kit.field_paths import FieldPath, field_path
from conveyor.kit.strict_yaml import JsonValue

LOCK_FILE = "images.lock.json"
"""Written by the build at the bundle's root; a source may not hold a file of that name."""
LOCK_KIND = "ImageLock"
LOCK_API_VERSION = "conveyor.dev/v1alpha1"
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
DEFAULT_REGISTRY = "docker.io"


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-f]{32,}))?"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FIELD_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\[\*\])?(?:\.[A-Za-z0-9_-]+(?:\[\*\])?)*")


@dataclass(frozen=True)
class ImageReference:
    """A container image reference, as Docker and Kubernetes read it: `registry` is the host
    (docker.io when the first part does not look like one), `path` the repository inside it."""

    text: str
    registry: str
    path: str
    tag: str | None
    digest: str | None
    name: str
    """The reference as written, without its tag and digest."""

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}"

    def with_digest(self, digest: str) -> str:
        return f"{self.text}@{digest}"


def parse_reference(text: str) -> ImageReference:
    """`text` as an image reference; ValueError naming the fault when it is not one."""
    match = _REFERENCE.fullmatch(text)
    if not match:
        raise ValueError(
            f"{text!r} is not an image reference (registry/repository[:tag][@sha256:...], "
            "repository in lower case)"
        )
    domain, path = match.group("domain"), match.group("path")
    if domain is None or not ("." in domain or ":" in domain or domain == "localhost"):
        if domain is not None and not re.fullmatch(_COMPONENT, domain):
            raise ValueError(f"{text!r} is not an image reference (repository in lower case)")
        # `team/ledger` names Docker Hub's team/ledger; a first part is a host only if it
        # looks like one, as Docker reads it.
        path = f"{domain}/{path}" if domain else path
        domain = DEFAULT_REGISTRY
        if "/" not in path:
            path = f"library/{path}"
    name = text[: match.end("path")]
    return ImageReference(text, domain, path, match.group("tag"), match.group("digest"), name)


@dataclass(frozen=True)
class ImageField:
    """An image field of a custom resource kind: `path` splits at dots, `*` is every list item."""

    kind: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class UnpinnedRepository:
    """A repository whose images are left as written, and why a person decided so."""

    repository: str
    reason: str


@dataclass(frozen=True)
class ImageSettings:
    """bundle.yaml's `images`."""

    fields: tuple[ImageField, ...] = ()
    unpinned: tuple[UnpinnedRepository, ...] = ()

    def unpinned_reason(self, reference: ImageReference) -> str | None:
        for entry in self.unpinned:
            if entry.repository == reference.repository:
                return entry.reason
        return None


def parse_image_settings(raw: object, where: str) -> ImageSettings:
    """bundle.yaml's `images` mapping, checked; SourceError naming the field otherwise."""
    if raw is None:
        return ImageSettings()
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: images: must be a mapping with fields and unpinned")
    unknown = sorted(set(raw) - {"fields", "unpinned"})
    if unknown:
        raise SourceError(
            f"{where}: images: unknown field(s) {', '.join(unknown)}; known: fields, unpinned"
        )
    fields = tuple(
        _image_field(item, f"images.fields[{index}]", where)
        for index, item in enumerate(_list(raw.get("fields", []), "images.fields", where))
    )
    unpinned = tuple(
        _unpinned(item, f"images.unpinned[{index}]", where)
        for index, item in enumerate(_list(raw.get("unpinned", []), "images.unpinned", where))
    )
    seen: set[str] = set()
    for index, entry in enumerate(unpinned):
        if entry.repository in seen:
            raise SourceError(
                f"{where}: images.unpinned[{index}]: {entry.repository} is listed twice"
            )
        seen.add(entry.repository)
    return ImageSettings(fields, unpinned)


def _list(raw: object, field: str, where: str) -> list[JsonValue]:
    if not isinstance(raw, list):
        raise SourceError(f"{where}: {field}: must be a list")
    return raw


def _entry(raw: object, field: str, where: str, keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) != set(keys):
        raise SourceError(f"{where}: {field}: must be a mapping with exactly {', '.join(keys)}")
    for key in keys:
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise SourceError(f"{where}: {field}.{key}: must be a non-empty string")
    return {key: str(raw[key]) for key in keys}


def _image_field(raw: object, field: str, where: str) -> ImageField:
    entry = _entry(raw, field, where, ("kind", "path"))
    if not _FIELD_PATH.fullmatch(entry["path"]):
        raise SourceError(
            f"{where}: {field}.path: {entry['path']!r} is not a field path",
            hint="write keys joined by dots, with [*] after a list: spec.plugins[*].image",
        )
    parts: list[str] = []
    for part in entry["path"].split("."):
        if part.endswith("[*]"):
            parts.extend((part[:-3], "*"))
        else:
            parts.append(part)
    return ImageField(entry["kind"], tuple(parts))


def _unpinned(raw: object, field: str, where: str) -> UnpinnedRepository:
    entry = _entry(raw, field, where, ("repository", "reason"))
    try:
        reference = parse_reference(entry["repository"])
    except ValueError as error:
        raise SourceError(f"{where}: {field}.repository: {error}") from None
    if reference.tag or reference.digest:
        raise SourceError(
            f"{where}: {field}.repository: {entry['repository']!r} names a tag or digest",
            hint="name the repository alone: every tag of it is left unpinned",
        )
    return UnpinnedRepository(reference.repository, entry["reason"].strip())


def image_fields(
    obj: dict[str, JsonValue], custom: Sequence[ImageField] = ()
) -> Iterator[tuple[FieldPath, JsonValue]]:
    """Every image field of `obj` with its path and value (any JSON value: the caller judges)."""
    yield from _container_images(obj, ())
    for image_field in custom:
        if obj.get("kind") == image_field.kind:
            yield from _follow(obj, image_field.path, ())


def _container_images(value: JsonValue, path: FieldPath) -> Iterator[tuple[FieldPath, JsonValue]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in CONTAINER_LISTS and isinstance(item, list):
                for index, container in enumerate(item):
                    if isinstance(container, dict) and "image" in container:
                        yield (*path, key, index, "image"), container["image"]
            else:
                yield from _container_images(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _container_images(item, (*path, index))


def _follow(
    value: JsonValue, rest: tuple[str, ...], path: FieldPath
) -> Iterator[tuple[FieldPath, JsonValue]]:
    if not rest:
        yield path, value
    elif rest[0] == "*":
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _follow(item, rest[1:], (*path, index))
    elif isinstance(value, dict) and rest[0] in value:
        yield from _follow(value[rest[0]], rest[1:], (*path, rest[0]))


@dataclass(frozen=True)
class ImageLock:
    """What the build resolved: each image reference, as rendered, and its digest; and the
    tags a release chose for some repositories (`overrides`, repository -> tag), which every
    render uses instead of the tag the manifests or parameters name."""

    digests: Mapping[str, str]
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_bytes(self) -> bytes:
        document: dict[str, object] = {
            "apiVersion": LOCK_API_VERSION,
            "kind": LOCK_KIND,
            "images": [
                {"image": image, "digest": self.digests[image]} for image in sorted(self.digests)
            ],
        }
        if self.overrides:
            document["overrides"] = [
                {"repository": repository, "tag": self.overrides[repository]}
                for repository in sorted(self.overrides)
            ]
        return (json.dumps(document, indent=2) + "\n").encode()


def overridden(reference: ImageReference, overrides: Mapping[str, str]) -> ImageReference:
    """`reference` with the tag `overrides` gives its repository, if any."""
    tag = overrides.get(reference.repository)
    return reference if tag is None else parse_reference(f"{reference.name}:{tag}")


def parse_lock(data: bytes, where: str) -> ImageLock:
    """The image lock in `data`; SourceError when it is not one Conveyor wrote."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"{where}: is not JSON; the image lock is written by the build") from None
    if (
        not isinstance(document, dict)
        or document.get("kind") != LOCK_KIND
        or document.get("apiVersion") != LOCK_API_VERSION
        or not isinstance(document.get("images"), list)
    ):
        raise SourceError(f"{where}: is not an {LOCK_API_VERSION} {LOCK_KIND}")
    digests: dict[str, str] = {}
    for index, entry in enumerate(document["images"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("image"), str)
            or not isinstance(entry.get("digest"), str)
            or not _DIGEST.fullmatch(entry["digest"])
            or entry["image"] in digests
        ):
            raise SourceError(
                f"{where}: images[{index}]: must be a new image and its sha256 digest"
            )
        digests[entry["image"]] = entry["digest"]
    overrides: dict[str, str] = {}
    for index, entry in enumerate(document.get("overrides", [])):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("repository"), str)
            or not isinstance(entry.get("tag"), str)
            or entry["repository"] in overrides
        ):
            raise SourceError(f"{where}: overrides[{index}]: must be a new repository and a tag")
        overrides[entry["repository"]] = entry["tag"]
    return ImageLock(digests, overrides)


class ImageProblem(Exception):
    """An image field a render or build cannot use: where in the object, and why."""

    def __init__(self, path: FieldPath, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.path, self.message, self.hint = path, message, hint


def references(
    obj: dict[str, JsonValue], settings: ImageSettings
) -> Iterator[tuple[FieldPath, ImageReference]]:
    """The image references of `obj` a build must resolve: not written with a digest and not in
    an unpinned repository. ImageProblem for a field that is not an image reference."""
    for path, value in image_fields(obj, settings.fields):
        reference = _reference_at(path, value)
        if reference.digest is None and settings.unpinned_reason(reference) is None:
            yield path, reference


def pin(
    obj: dict[str, JsonValue], lock: ImageLock, settings: ImageSettings
) -> dict[str, JsonValue]:
    """A copy of `obj` with every image reference rewritten to its locked digest.

    ImageProblem for a reference the lock does not hold: the target's parameters chose an image
    the build did not resolve."""
    pinned = copy.deepcopy(obj)
    for path, written in list(references(obj, settings)):
        reference = overridden(written, lock.overrides)
        digest = lock.digests.get(reference.text)
        if digest is None:
            known = ", ".join(sorted(lock.digests)) or "none"
            raise ImageProblem(
                path,
                f"the image {reference.text!r} is not in the bundle's image lock (the build "
                f"pinned: {known})",
                hint="a target's parameters may not choose an image the build did not see: "
                "set it in every target before the build, or build again",
            )
        _set(pinned, path, reference.with_digest(digest))
    return pinned


def _reference_at(path: FieldPath, value: JsonValue) -> ImageReference:
    if not isinstance(value, str):
        raise ImageProblem(path, f"an image must be a string, got {json.dumps(value)}")
    try:
        return parse_reference(value)
    except ValueError as error:
        raise ImageProblem(path, str(error)) from None


def _set(obj: JsonValue, path: FieldPath, value: str) -> None:
    for part in path[:-1]:
        obj = obj[part]  # type: ignore[index]
    obj[path[-1]] = value  # type: ignore[index]


def running_images(objects: Sequence[dict[str, JsonValue]]) -> dict[str, str]:
    """Each container image of `objects` by where it is: `Kind name: field path`."""
    found: dict[str, str] = {}
    for obj in objects:
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        for path, value in _container_images(obj, ()):
            if isinstance(value, str):
                found[f"{obj.get('kind')} {name}: {field_path(path)}"] = value
    return found


def changed_images(
    before: Mapping[str, Sequence[dict[str, JsonValue]]],
    after: Mapping[str, Sequence[dict[str, JsonValue]]],
) -> list[str]:
    """Where a target of `after` would run an image that no target of `before` runs at the same
    place (both renders of one bundle): one line per place, naming both values. Empty when every
    stage runs the same code."""
    seen: dict[str, set[str]] = {}
    for objects in before.values():
        for place, image in running_images(objects).items():
            seen.setdefault(place, set()).add(image)
    changes = []
    for target, objects in after.items():
        for place, image in running_images(objects).items():
            if place in seen and image not in seen[place]:
                earlier = " or ".join(sorted(seen[place]))
                changes.append(f"{target}: {place}: {image} (the stage before runs {earlier})")
    return changes
