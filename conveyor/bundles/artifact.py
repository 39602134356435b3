"""Build a bundle once from git, and read it back only through its verified digest.

This is the composition the rest of Conveyor uses: `build` reads a commit's source folder,
checks it (bundle.yaml, lint, size), builds its Kustomize overlay or vendors its repository's
Helm chart if it names one, pins its images by digest (images.py), and either finds the bundle
already built from the same source tree (no upload at all) or packs it reproducibly and pushes
it. `load` pulls a bundle by digest, verifies every byte, unpacks it in memory with the safe
reader and checks it again as a source, so nothing tampered with is ever rendered or applied.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.adapters import gitrepo, helm, kustomize, oci
from conveyor.adapters.image_registry import ImageRegistries, parse_mirrors
from conveyor.bundles import archive, charts, images, lint, render
from conveyor.bundles.charts import HelmChart
from conveyor.bundles.source import (
    DEFAULT_MAX_SOURCE_SIZE,
    KUSTOMIZE_OUTPUT,
    Source,
    SourceFile,
    source_from_files,
    tree_hash,
)
from conveyor.errors import ConveyorError, InputError, IntegrityError, RenderError, SourceError
from conveyor.kit.field_paths import field_path
from conveyor.kit.paths import cache_root
from conveyor.kit.progress import ProgressNote
from conveyor.kit.redaction import without_userinfo
from conveyor.kit.strict_yaml import JsonValue, decode_text, line_at

FIXED_CREATED = "1970-01-01T00:00:00Z"
"""`org.opencontainers.image.created` of every bundle: a real time would change the digest."""
REFERENCES_FORMAT = "conveyor.dev/image-references/v1"
"""Which image references a source tree names with given parameters never changes: a build
remembers them under <cache>/image-references/ (rendering every manifest again took 0.5 s of a
reused 200-manifest build); the digests are asked of the registries every time."""
DEFAULTS_ONLY: Mapping[str, Mapping[str, object]] = {"the bundle's defaults": {}}
"""What a build renders with to find images when it is told no target's parameters."""
CHART_DEFAULTS: Mapping[str, Mapping[str, object]] = {"the chart's default values": {}}
"""What a build also renders a Helm chart with: an image only the defaults name is pinned too."""


def open_store(location: str) -> oci.BundleStore:
    """The store at `location`, with registry credentials from the environment, if any.

    $CONVEYOR_REGISTRY_USERNAME and $CONVEYOR_REGISTRY_PASSWORD: never on a command line, where
    other users of the machine could read them.
    """
    return oci.open_store(
        location,
        username=os.environ.get("CONVEYOR_REGISTRY_USERNAME"),
        password=os.environ.get("CONVEYOR_REGISTRY_PASSWORD"),
    )


@dataclass(frozen=True)
class Built:
    """The outcome of a build: the digest every stage will use, and how it was obtained."""

    digest: str
    name: str
    tree_hash: str
    commit: str
    reused: bool
    size: int
    """Bytes of the tar.gz layer (0 when reused: nothing was packed)."""
    not_pinned_for: tuple[str, ...] = ()
    """Parameter sets (targets) whose render failed, so whose images the lock may lack: why."""


def build(
    location: str,
    ref: str,
    subpath: str,
    store: oci.BundleStore,
    *,
    environment_names: Sequence[str] = (),
    parameter_sets: Mapping[str, Mapping[str, object]] = DEFAULTS_ONLY,
    image_tags: Mapping[str, str] | None = None,
    registries: ImageRegistries | None = None,
    max_size: int = DEFAULT_MAX_SOURCE_SIZE,
    tags: Sequence[str] = (),
    progress: ProgressNote | None = None,
) -> Built:
    """The digest of the bundle for `location@ref:subpath`, pushing it only if it is new.

    Its image lock pins every image the app's manifests name when rendered with each of
    `parameter_sets` (by name: the targets that will render it), resolved through `registries`
    (by default: $CONVEYOR_IMAGE_MIRRORS and the store's credentials). `image_tags` (repository
    -> tag) chooses the tag of those repositories for every target, whatever the manifests or
    parameters name. A tag moved since an earlier build gives a new lock, so a new bundle."""
    shown = without_userinfo(location)
    if progress:
        progress(f"reading {shown}@{ref}:{subpath}")
    snapshot = gitrepo.read_source(location, ref, subpath)
    size = sum(len(file.content) for file in snapshot.files)
    label = f"{shown}@{snapshot.commit[:12]}:{subpath}"
    if size > max_size:
        raise InputError(
            f"{label}: the source holds {size} bytes, over the {max_size}-byte bundle limit",
            hint="keep large files out of the bundle, or raise the limit (--max-size)",
        )
    files = {file.path: file.content for file in snapshot.files}
    for path in files:
        if path in (images.LOCK_FILE, KUSTOMIZE_OUTPUT) or path.startswith(
            f"{charts.VENDOR_FOLDER}/"
        ):
            raise InputError(
                f"{label}/{path}: the build writes this file; a source may not hold it",
                hint=f"remove {path} from the source folder",
            )
    source = source_from_files(files, label)
    if source.spec.kustomize is not None:
        if progress:
            progress(f"building the Kustomize overlay {source.spec.kustomize}")
        files[KUSTOMIZE_OUTPUT] = kustomize.build(
            files,
            source.spec.kustomize,
            f"{label}/bundle.yaml: kustomize",
            kustomize.kubectl_path(),
        )
        source = source_from_files(files, label)
    chart = source.spec.helm
    if chart is not None and chart.repository is not None:
        if progress:
            progress(f"vendoring the Helm chart {chart.origin}")
        files.update(_pull_chart(chart, store, f"{label}/bundle.yaml"))
        source = source_from_files(files, label)
    if chart is not None and parameter_sets is not DEFAULTS_ONLY:
        parameter_sets = {**CHART_DEFAULTS, **parameter_sets}
    skipped: list[str] = []
    lock = _pin_images(
        source,
        parameter_sets,
        registries or image_registries(store),
        overrides=_image_overrides(image_tags or {}, label),
        progress=progress,
        skipped=skipped,
    )
    source = source_from_files({**files, images.LOCK_FILE: lock.to_bytes()}, label)
    tree = tree_hash(source.files)
    if progress:
        progress(f"checking the store for a bundle of tree {tree[:19]}")
    existing = store.find_by_tree_hash(tree)
    if existing:
        # The same tree passed lint when it was first built, and a bundle never changes.
        for tag in tags:
            store.tag(existing, tag)
        return Built(existing, source.spec.name, tree, snapshot.commit, True, 0, tuple(skipped))
    lint.lint_or_raise(source, environment_names)
    packed = archive.pack(source.files)
    if progress:
        progress(f"pushing {len(packed)} bytes to {store}")
    annotations = oci.BundleAnnotations(
        name=source.spec.name,
        tree_hash=tree,
        source=without_userinfo(snapshot.origin),  # immutable and public: no credentials
        revision=snapshot.commit,
        created=FIXED_CREATED,
        images=",".join(f"{image}@{lock.digests[image]}" for image in sorted(lock.digests)),
    )
    digest = store.push(packed, annotations, tags)
    return Built(
        digest, source.spec.name, tree, snapshot.commit, False, len(packed), tuple(skipped)
    )


def _pull_chart(chart: HelmChart, store: oci.BundleStore, where: str) -> dict[str, bytes]:
    """The files of a repository's chart, under the folder the bundle keeps it in. An OCI
    registry that is the bundle store's host gets the store's credentials."""
    assert chart.repository is not None and chart.version is not None
    host = chart.repository.removeprefix("oci://").split("/")[0]
    pulled = helm.pull(
        chart.repository,
        chart.chart,
        chart.version,
        where=where,
        helm=helm.helm_path(),
        credentials=_store_credentials(store).get(host),
        plain_http=chart.repository.startswith("oci://") and oci.is_plain_http_host(host),
    )
    return {f"{chart.folder}/{path}": content for path, content in pulled.items()}


def image_registries(store: oci.BundleStore | None = None) -> ImageRegistries:
    """The image registries as the environment describes them: mirrors from
    $CONVEYOR_IMAGE_MIRRORS (`registry=mirror,...`), and the registry credentials for the bundle
    store's host when it is a registry."""
    mirrors = parse_mirrors(os.environ.get("CONVEYOR_IMAGE_MIRRORS", ""), "$CONVEYOR_IMAGE_MIRRORS")
    return ImageRegistries(mirrors=mirrors, credentials=_store_credentials(store))


def _store_credentials(store: oci.BundleStore | None) -> dict[str, tuple[str, str]]:
    """{the store's registry host: (username, password)} from the environment (as `open_store`
    reads them), for other requests to that host; empty for a folder store or no credentials."""
    username = os.environ.get("CONVEYOR_REGISTRY_USERNAME")
    password = os.environ.get("CONVEYOR_REGISTRY_PASSWORD")
    if isinstance(store, oci.RegistryStore) and username and password:
        return {store.location.host: (username, password)}
    return {}


def _pin_images(
    source: Source,
    parameter_sets: Mapping[str, Mapping[str, object]],
    registries: ImageRegistries,
    *,
    overrides: Mapping[str, str],
    progress: ProgressNote | None,
    skipped: list[str],
) -> images.ImageLock:
    """The lock of every image `source` renders with any of `parameter_sets`; a set that does
    not render is left out (its reason added to `skipped`) unless none renders."""
    key = hashlib.sha256(
        json.dumps(
            [
                REFERENCES_FORMAT,
                tree_hash(source.files),
                parameter_sets,
                overrides,
                render.renderer_of(source),
            ],
            sort_keys=True,
            default=dict,  # the configuration's read-only mappings
        ).encode()
    ).hexdigest()
    cached = cache_root() / "image-references" / f"{key}.json"
    try:
        remembered = json.loads(cached.read_text())
        places, not_rendered = dict(remembered["places"]), list(remembered["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        places, not_rendered = _image_places(source, parameter_sets, overrides, progress)
        _remember(cached, {"places": places, "skipped": not_rendered})
    skipped.extend(not_rendered)
    found = {
        text: (images.parse_reference(text), f"{source.label}/{place}")
        for text, place in places.items()
    }
    digests: dict[str, str] = {}
    for text, (reference, place) in sorted(found.items()):
        if progress:
            progress(f"resolving image {text}")
        try:
            digests[text] = registries.digest(
                reference.registry, reference.path, reference.tag or "latest"
            )
        except ConveyorError as error:
            raise type(error)(f"{place}: {error.message}", hint=error.hint) from None
    unused = sorted(set(overrides) - {reference.repository for reference, _ in found.values()})
    if unused:
        raise InputError(
            f"{source.label}: a tag was chosen for {', '.join(unused)}, which no manifest runs",
            hint="name a repository the manifests use, as they write it (registry/path)",
        )
    return images.ImageLock(digests, dict(overrides))


def _image_places(
    source: Source,
    parameter_sets: Mapping[str, Mapping[str, object]],
    overrides: Mapping[str, str],
    progress: ProgressNote | None,
) -> tuple[dict[str, str], list[str]]:
    """Each image reference the renders name (after `overrides`), with the place (file:line:
    field, relative to the source) of its first use; and why parameter sets did not render."""
    places: dict[str, str] = {}
    rendered: list[tuple[SourceFile, int, dict[str, JsonValue]]] = []
    failures: list[RenderError] = []
    for name, parameters in parameter_sets.items():
        try:
            rendered += render.render_documents(source, parameters)
        except RenderError as error:
            # That target cannot render this source at all (a value it lacks): it will fail
            # at its own render, and an image only it would name is refused there.
            failures.append(
                RenderError(f"{error.message} (rendering with {name}, to find its images)")
            )
            if progress:
                progress(f"not pinning for {name}: {error.message}")
    if failures and len(failures) == len(parameter_sets):
        hint = failures[0].hint
        if parameter_sets is DEFAULTS_ONLY:
            hint = "give the build each target's parameters (bundle build --values FILE)"
        raise RenderError(failures[0].message, hint=hint)
    for file, number, obj in rendered:
        where = source.where(file.path)
        try:
            for path, reference in images.references(obj, source.spec.images):
                chosen = images.overridden(reference, overrides)
                if chosen.text in places:  # its first place is named already
                    continue
                line = line_at(decode_text(file.content, where), number, path)
                place = f"{file.path}:{line}" if line else f"{file.path}: document {number}"
                places[chosen.text] = f"{place}: {field_path(path)}"
        except images.ImageProblem as problem:
            line = line_at(decode_text(file.content, where), number, problem.path)
            raise SourceError(
                f"{where}:{line or '?'}: {field_path(problem.path)}: {problem.message}",
                hint=problem.hint,
            ) from None
    return places, [failure.message for failure in failures]


def _remember(path: Path, value: object) -> None:
    """Write `value` as JSON to `path` whole or not at all (a cache: failures are ignored)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.write_text(json.dumps(value))
        staging.replace(path)
    except OSError:
        pass


def _image_overrides(image_tags: Mapping[str, str], label: str) -> dict[str, str]:
    """`image_tags` by canonical repository (`nginx` is docker.io/library/nginx)."""
    overrides: dict[str, str] = {}
    for repository, tag in image_tags.items():
        try:
            reference = images.parse_reference(f"{repository}:{tag}")
        except ValueError as error:
            raise InputError(f"{label}: the image tag chosen for {repository}: {error}") from None
        if reference.digest is not None or reference.name != repository:
            raise InputError(
                f"{label}: {repository}={tag} is not a repository and a tag",
                hint="write e.g. registry.example/web=1.2.0",
            )
        overrides[reference.repository] = tag
    return overrides


@dataclass(frozen=True)
class Loaded:
    """A bundle read back by digest: every byte verified, the source checked again."""

    digest: str
    annotations: dict[str, str]
    source: Source
    data: bytes
    """The tar.gz layer, as stored."""


def load(store: oci.BundleStore, digest: str) -> Loaded:
    """The verified bundle `digest` from `store`."""
    manifest, data = store.pull(digest)
    files = archive.read_archive(data)
    annotations = dict(manifest.get("annotations", {}))
    name = annotations.get(oci.ANNOTATION_NAME, "bundle")
    source = source_from_files(files, f"{name}@{digest[:19]}")
    if source.image_lock is None:
        raise InputError(
            f"{store}: bundle {digest} has no image lock ({images.LOCK_FILE}): it was built "
            "before Conveyor pinned images by digest",
            hint="build it again (`conveyor release` or `conveyor bundle build`)",
        )
    if tree_hash(source.files) != annotations.get(oci.ANNOTATION_TREE_HASH):
        raise IntegrityError(
            f"{store}: bundle {digest} does not hold the source tree its annotation names",
            hint="this artifact was not built by Conveyor from a source; rebuild it",
        )
    return Loaded(digest, annotations, source, data)


def resolve(store: oci.BundleStore, reference: oci.Reference) -> str:
    """The digest `reference` names in `store`: its digest, else what its tag points at. A
    reference with both must agree, as `repo:tag@digest` promises."""
    if reference.tag is None:
        if reference.digest is None:
            raise InputError(
                f"{store}: the reference names neither a tag nor a digest",
                hint=f"write `{store}:TAG` or `{store}@sha256:...`",
            )
        return reference.digest
    tagged = store.resolve(reference.tag)
    if reference.digest is not None and reference.digest != tagged:
        raise InputError(
            f"{store}: tag {reference.tag!r} points at {tagged}, not at {reference.digest}",
            hint="drop the tag or the digest, or re-tag the bundle you mean",
        )
    return tagged
