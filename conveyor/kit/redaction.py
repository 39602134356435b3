"""What Conveyor shows instead of a secret: a hash of it, and URLs without their credentials.

Why: everything Conveyor prints or records (logs, drift tables, approval forms, artifacts, git)
is read by more people than may read a Secret or a token. A value's hash still tells whether two
sides agree, and a URL without its user-info still tells where a repository is. Each rule is
defined once here, so every place that prints or records applies the same one.
"""

from __future__ import annotations

import re
from typing import Any

from conveyor.kit.digests import json_digest

SHORT_HASH_HEX = 8
"""Hex digits of a value's hash shown in drift tables, forms and reports."""

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def value_hash(value: Any) -> str:
    """`sha256:<64 hex>` of a value's canonical JSON: what a record keeps of a secret."""
    return json_digest(value)


def short_hash(value: Any) -> str:
    """`sha256:1a2b3c4d…`: what a person is shown of a secret, enough to tell two apart."""
    return shortened(value_hash(value))


def shortened(digest: str) -> str:
    """A `value_hash` as a person is shown it: `sha256:1a2b3c4d…`."""
    return digest[: len("sha256:") + SHORT_HASH_HEX] + "…"


def without_userinfo(text: str) -> str:
    """`text` with the user-info (`user:token@`) taken out of every URL in it, so
    `https://user:token@host/repo.git` reads `https://host/repo.git`; the rest is unchanged."""
    return _USERINFO.sub(r"\g<scheme>", text)
