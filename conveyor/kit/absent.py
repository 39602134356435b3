"""ABSENT, the one marker for "this side has no value here".

Comparisons (a bundle against a bundle, a manifest against the live object) must tell a field
that is missing from one set to None or null, which is a value; both use this marker, so a
difference reads the same in `conveyor diff`, drift tables and the approval form.
"""

from __future__ import annotations


class Absent:
    """The value of a parameter or field that one side does not have."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = Absent()
