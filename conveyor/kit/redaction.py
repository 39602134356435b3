"""What Conveyor shows instead of a secret: a hash of it, and URLs without their credentials.

Why: everything Conveyor prints or records (logs, drift tables, approval forms, artifacts, git)
is read by more people than may read a Secret or a token. A value's hash still tells whether two
sides agree, and a URL without its user-info still tells where a repository is. Each rule is
defined once here, so every place that prints or records applies the same one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

from conveyor.kit.digests import canonical_json, json_digest

SHORT_HASH_HEX = 8
"""Hex digits of a value's hash shown in drift tables, forms and reports."""
SECRET_HASH = re.compile(r"(scrypt|sha256):[0-9a-f]{64}")
"""A recorded secret's hash: scrypt now; sha256 in records written before it."""
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 << 20}
"""About 40 ms and 16 MiB a hash: a record in git must not let a weak password be guessed at a
billion tries a second, as a plain sha256 would."""
_SALT = b"conveyor-secret-hash-v1"

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def value_hash(value: Any) -> str:
    """`scrypt:<64 hex>` of a value's canonical JSON: what a record keeps of a secret, and what
    people are shown of it (shortened). Slow on purpose, so remembered per value."""
    return _scrypt(canonical_json(value))


@functools.lru_cache(maxsize=4096)
def _scrypt(data: bytes) -> str:
    return "scrypt:" + hashlib.scrypt(data, salt=_SALT, **_SCRYPT).hex()


def hash_matches(value: Any, recorded: str) -> bool:
    """Whether `value` is the secret `recorded` (a `value_hash`, or the sha256 of older
    records) was made of."""
    if recorded.startswith("sha256:"):
        return json_digest(value) == recorded
    return value_hash(value) == recorded


def short_hash(value: Any) -> str:
    """`scrypt:1a2b3c4d…`: what a person is shown of a secret, enough to tell two apart."""
    return shortened(value_hash(value))


def shortened(digest: str) -> str:
    """A `value_hash` as a person is shown it: `scrypt:1a2b3c4d…`."""
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:SHORT_HASH_HEX]}…"


def without_userinfo(text: str) -> str:
    """`text` with the user-info (`user:token@`) taken out of every URL in it, so
    `https://user:token@host/repo.git` reads `https://host/repo.git`; the rest is unchanged."""
    return _USERINFO.sub(r"\g<scheme>", text)
