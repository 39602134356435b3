"""Kubernetes objects that cluster tests and the cluster benchmark apply, as plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IMAGE = "example.invalid/app:1"
"""No container runs under KWOK: the image is never pulled."""


def deployment(
    name: str,
    replicas: int,
    *,
    labels: Mapping[str, str] | None = None,
    image: str = IMAGE,
    requests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of `replicas` pods with one container; its pods carry `labels` (by default
    `app: <name>`) and its selector matches them; the container requests `requests` (by
    default 100m CPU)."""
    selected = dict(labels) if labels is not None else {"app": name}
    container = {
        "name": "app",
        "image": image,
        "resources": {"requests": dict(requests) if requests is not None else {"cpu": "100m"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selected},
            "template": {
                "metadata": {"labels": dict(selected)},
                "spec": {"containers": [container]},
            },
        },
    }
