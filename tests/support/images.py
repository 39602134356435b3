"""Stand-in images for every image the test fixtures name, in the platform's registry.

The platform's registry mirrors every registry (`CONVEYOR_IMAGE_MIRRORS=*=<registry>`), so a
fixture can name `ghcr.io/launchpad/rocket:2.3.0`, as a stranger's app does, and its build pins a
real digest: the one of `launchpad/rocket:2.3.0` pushed here. Images written with a `${...}`
placeholder are the tests' own business (they set the parameters to images pushed here)."""

from __future__ import annotations

import fcntl
import re
from pathlib import Path

from conveyor.adapters.image_registry import ImageRegistries, push_small_image
from conveyor.bundles.images import parse_reference
from conveyor.errors import InputError
from conveyor.platform.local import LocalPlatform

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_WRITTEN_IMAGE = re.compile(r"""^\s*-?\s*image:\s*["']?([^\s"'$#]+)["']?\s*$""", re.MULTILINE)


CHART_IMAGES = ("registry.k8s.io/metrics-server/metrics-server:v0.7.2",)
"""Images the fixtures' Helm charts name through their values (repository and tag apart, so not
found by reading the files): the vendored metrics-server chart's, at its appVersion."""


def fixture_images() -> set[str]:
    """Every image reference written out in a fixture manifest, and the charts' images."""
    found: set[str] = set(CHART_IMAGES)
    for path in FIXTURES.rglob("*.y*ml"):
        found.update(_WRITTEN_IMAGE.findall(path.read_text()))
    return found


def mirror_path(image: str) -> tuple[str, str]:
    """Where the mirror keeps `image`: its repository path inside its registry, and its tag."""
    reference = parse_reference(image)
    return reference.path, reference.tag or "latest"


def push_stand_in(platform: LocalPlatform, image: str, content: str | None = None) -> str:
    """Push a small image standing in for `image` to the platform's registry; its digest."""
    repository, tag = mirror_path(image)
    return push_small_image(platform.registry.address, repository, tag, content or image)


def push_fixture_images(platform: LocalPlatform) -> None:
    """Push the fixtures' images that are not there yet (a tag already there, such as the
    example app's, is left where it is). One test process at a time: the registry answers 500
    to a read of a tag another writer is pushing, so each pytest-xdist worker waits for the
    one before it (a lock file in the platform's state folder) and finds its images there."""
    registries = ImageRegistries()
    with (platform.state / "fixture-images.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        for image in sorted(fixture_images()):
            repository, tag = mirror_path(image)
            try:
                registries.digest(platform.registry.address, repository, tag)
            except InputError:
                push_stand_in(platform, image)
