"""Many shapes at once: :class:`ShapeTerms` whose per-shape constants are numpy arrays.

The cost-model functions (:mod:`~solver.costmodel.memory`, :mod:`~solver.costmodel.compute`,
:mod:`~solver.costmodel.operating`, :func:`solver.slo.slo_view`) are elementwise numpy code, so
they accept terms whose fields are arrays as well as floats. :func:`stack_terms` builds such
terms from the per-shape ones: row ``j`` of every array field belongs to one (shape, batch cap)
pair, so one call of the *same* functions evaluates every shape x batch cap of a model; the
one-shape path (``estimate``, :func:`solver.slo.slo_view` on one shape) runs the identical
arithmetic on scalars. Nothing here is a formula of the cost model: this module only lays the
inputs out and splits the outputs back.

Rows are flat (``sum(counts)`` of them) rather than a (shapes x batch caps) grid, because each
shape has its own batch caps (those its memory holds).

A field equal on every stacked shape stays a scalar (the original object): the few places that
branch on a field in Python (``if terms.num_experts``, sliding-window layers, the engine's chunk
size) read model- or engine-level facts, which are the same for all shapes of one model under
one engine. :func:`branch_key` groups shapes that differ in one of them, so a stack never holds
two values of a field that code branches on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace
from operator import itemgetter
from typing import Any

import numpy as np

from solver.costmodel.shape import ShapeTerms

BRANCH_FIELDS = ("num_experts", "experts_per_token", "window_tokens", "window_attn_layers",
                 "prefill_chunk_tokens", "grouped_gemm_tile", "decode_gemm_tile")
"""Fields that cost-model code reads in a Python ``if``/``max`` (model- and engine-level facts):
shapes are stacked only with shapes that agree on all of them."""


def branch_key(terms: ShapeTerms) -> tuple[Any, ...]:
    """The values of :data:`BRANCH_FIELDS`: shapes with equal keys may share one stack."""
    return tuple(getattr(terms, f) for f in BRANCH_FIELDS)


def _uniform(values: list[Any]) -> bool:
    """All values equal (by ``==``, as the scalar code would compare them)."""
    try:
        return len(set(values)) == 1
    except TypeError:  # unhashable values
        return all(v == values[0] for v in values[1:])


def _column(values: list[Any]) -> Any:
    """One field over the stacked shapes: the value itself when all agree, else an array of
    the shapes' values (dataclass values field by field)."""
    first = values[0]
    if _uniform(values):
        return first
    if is_dataclass(first) and not isinstance(first, type):
        return replace(first, **{f.name: _column([getattr(v, f.name) for v in values]) for f in fields(first)})
    arr = np.array(values) if isinstance(first, (bool, int, float, str)) else None
    if arr is None or arr.ndim != 1 or arr.dtype == object:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    return arr


def _repeat(value: Any, counts: np.ndarray) -> Any:
    """A stacked field with shape ``i``'s entry repeated ``counts[i]`` times (scalars stay)."""
    if isinstance(value, np.ndarray):
        return np.repeat(value, counts)
    if is_dataclass(value) and not isinstance(value, type) and not isinstance(value, ShapeTerms):
        changed = {f.name: _repeat(getattr(value, f.name), counts) for f in fields(value)}
        if any(isinstance(v, np.ndarray) for v in changed.values()):
            return replace(value, **changed)
    return value


def stack_terms(terms: Sequence[ShapeTerms], counts: Sequence[int] | None = None) -> ShapeTerms:
    """Terms of several shapes as one :class:`ShapeTerms` of arrays: shape ``i`` fills
    ``counts[i]`` consecutive rows (default 1 each). Every shape must have the same
    :func:`branch_key` (``ValueError`` otherwise)."""
    if not terms:
        raise ValueError("nothing to stack")
    names = [f.name for f in fields(ShapeTerms)]
    columns = list(zip(*(itemgetter(*names)(vars(t)) for t in terms)))  # one tuple per field
    for n, col in zip(names, columns):
        if n in BRANCH_FIELDS and len(set(col)) > 1:
            raise ValueError(f"shapes differ in {n}, a field the cost model branches on "
                             "(stack them apart: branch_key)")
    stacked = replace(terms[0], **{n: _column(list(col)) for n, col in zip(names, columns)})
    return stacked if counts is None else repeat_rows(stacked, counts)


def repeat_rows(stacked: ShapeTerms, counts: Sequence[int]) -> ShapeTerms:
    """Stacked terms (one row per shape) with shape ``i``'s row repeated ``counts[i]`` times."""
    n = np.asarray(counts, dtype=np.int64)
    return replace(stacked, **{f.name: _repeat(getattr(stacked, f.name), n) for f in fields(ShapeTerms)})


def split_rows(values: Any, counts: Sequence[int]) -> list[np.ndarray]:
    """The inverse of the row layout: the stacked rows of ``values`` back to one array per shape
    (a scalar ``values`` -- equal for every row -- is broadcast first)."""
    ends = np.cumsum(counts).tolist()
    arr = np.broadcast_to(np.asarray(values), (ends[-1] if ends else 0,))
    return [arr[a:b] for a, b in zip([0] + ends[:-1], ends)]
