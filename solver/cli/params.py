"""Flag types that refuse what the library cannot use: NaN, infinities and numbers outside the
supported ranges (see :mod:`solver.problem` for the ranges and why), each with a one-line
message naming the flag."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.ParamType):
    """A finite float within ``[lo, hi]`` (``lo`` excluded when ``lo_open``)."""

    name = "float"

    def __init__(self, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open = lo, hi, lo_open

    def _range(self) -> str:
        lo = "" if self.lo is None else (f"> {self.lo:g}" if self.lo_open else f">= {self.lo:g}")
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        return " and ".join(x for x in (lo, hi) if x)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            x = value
        else:
            try:
                x = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            self.fail(f"{value!r} is out of range: must be {self._range()}", param, ctx)
        if self.hi is not None and x > self.hi:
            self.fail(f"{value!r} is out of range: must be {self._range()}", param, ctx)
        return x


def positive(hi: float) -> FiniteFloat:
    """A finite float in ``(0, hi]``."""
    return FiniteFloat(0.0, hi, lo_open=True)
