"""The written forms Conveyor checks or writes in more than one place, each defined once.

Names of apps, targets, stages, clusters and bundles are DNS-1123 labels; times in files and
annotations are RFC 3339 date-times with an offset; a repository is a git URL or a local path; a
registry is `host[:port]` with an optional repository prefix; and messages name a Kubernetes
object `Kind/namespace/name`. The configuration, the state files, bundle.yaml, the OCI and git
adapters and the cluster code all read or write these forms, so each lives here, in one place,
and a value one of them accepts is a value every other one accepts too.
"""

from __future__ import annotations

import re
from datetime import datetime

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_LABEL_RULE = (
    "a DNS-1123 label: lowercase letters, digits and '-', at most 63, no '-' at the ends"
)

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE_URL = re.compile(r"[^/@:]+@[^/:]+:")

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?"
_REPOSITORY_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_REPOSITORY_COMPONENT}(?:/{_REPOSITORY_COMPONENT})*"

REGISTRY_HOST = re.compile(_HOST)
"""`host[:port]` of a registry: a DNS name or IPv4 address, or an IPv6 address in brackets."""
REPOSITORY = re.compile(_REPOSITORY)
"""An OCI repository name: lowercase components separated by `/`, no tag or digest."""
REGISTRY = re.compile(rf"{_HOST}(?:/{_REPOSITORY})?")
"""The configuration's `registry`: `host[:port]`, optionally followed by `/prefix`."""


def parse_rfc3339(text: str) -> datetime | None:
    """The time `text` writes as an RFC 3339 date-time with an offset (`2024-05-01T12:00:00Z`),
    or None when it is not one (no offset, a date only, a 13th month)."""
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:
        return None


def is_git_url(location: str) -> bool:
    """Whether `location` names a repository by URL (`scheme://...`, or scp-like
    `user@host:path`) rather than by a local path."""
    return bool(_URL_SCHEME.match(location) or _SCP_LIKE_URL.match(location))


def object_path(kind: str, namespace: str | None, name: str) -> str:
    """`Kind/namespace/name`, or `Kind/name` for a cluster-scoped object: how messages, reports
    and readiness listings name a Kubernetes object."""
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
