"""Content digests, defined once: `sha256:<hex>` of bytes, and of canonical JSON.

A digest names content everywhere in Conveyor (OCI blobs and manifests, rendered manifests,
parameter values), so the same value must give the same bytes, hence the same digest, on every
machine: sorted keys, no whitespace, UTF-8, no NaN.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from conveyor.errors import InputError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
"""What a digest looks like wherever one is given: `sha256:` and 64 lowercase hex digits."""


def check_digest(value: str, given_as: str = "") -> str:
    """`value` if it is a digest; InputError otherwise, naming where it was given (`--digest`)."""
    if not DIGEST.fullmatch(value):
        where = f"{given_as}: " if given_as else ""
        raise InputError(f"{where}{value!r} is not a sha256 digest (sha256:<64 lowercase hex>)")
    return value


def sha256_digest(data: bytes) -> str:
    """The OCI-style digest (`sha256:<hex>`) of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """One byte sequence per JSON value: keys sorted, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def json_digest(value: Any) -> str:
    """The digest of a value's canonical JSON."""
    return sha256_digest(canonical_json(value))
