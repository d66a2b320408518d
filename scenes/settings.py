"""Bounds of numeric settings, declared where the setting is: on the config dataclass's field.

``count: Annotated[int, Range(lo=1)] = 50`` says that ``count`` is at least 1. The command line and
config files (`tasks.cli`) check every field of a config against its bounds before anything runs,
and name the flag in the error. Fields without a `Range` get the default rule of their type
(`default_range`): an integer is >= 0 (counts, sizes, steps, seeds), a float is finite (it may be
an offset, a bias, a reward); a field that must be positive, or lie in an interval, says so with
its own `Range`. A field's own default value is always accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``lo`` <= value <= ``hi`` (``lo`` < value when
    ``strict_lo``); None = unbounded on that side. Non-finite values are never allowed."""

    lo: float | None = None
    hi: float | None = None
    strict_lo: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range (None when it is in range)."""
        if not math.isfinite(value):
            return f"expected a finite number, got {value}"
        if self.lo is not None and (value <= self.lo if self.strict_lo else value < self.lo):
            return f"expected a number {'>' if self.strict_lo else '>='} {self.lo:g}, got {value:g}"
        if self.hi is not None and value > self.hi:
            return f"expected a number <= {self.hi:g}, got {value:g}"
        return None


POSITIVE = Range(lo=0.0, strict_lo=True)
"""Strictly positive (a length, a rate, a duration)."""
AT_LEAST_ONE = Range(lo=1)
"""One or more (a count of things that must exist)."""
ANY_FINITE = Range()
"""Any finite number, negative included (an offset, a reward)."""


def default_range(kind: type) -> Range:
    """The rule for a numeric field without a `Range` of its own: integers >= 0, floats finite."""
    return Range(lo=0) if kind is int else ANY_FINITE
