"""Where a value sits in a JSON document, and how messages write that place.

Why a module of its own: rendering, image pinning, lint and comparison all name fields of
Kubernetes objects in their messages and keys, and they must name a field the same way (the
image check compares places across renders by this text).
"""

from __future__ import annotations

import json
import re

FieldPath = tuple[str | int, ...]
"""Keys and list indexes from the document's root."""

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def field_path(path: FieldPath) -> str:
    """A field path for messages: spec.containers[0].image, metadata.labels["app.k8s.io/x"]."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text or "(the document)"
