"""The vectorised shape terms (:func:`solver.costmodel.stacked_shapes.stacked_shape_terms`)
against the one-shape ones (:func:`solver.costmodel.shape_terms`): every shape of the catalog
that a table enumerates (every model, accelerator, node shape, format, KV dtype and
parallelism), row by row and field by field, exactly; and laid out as ``stack_terms`` lays out
the one-shape terms, so the cost model downstream sees the same arrays."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any

import numpy as np
import pytest

from solver import api
from solver.candidates import _shapes
from solver.catalog import load_catalog
from solver.costmodel import Shape, ShapeTerms, check_shape, shape_terms
from solver.costmodel.stacked import branch_key, stack_terms
from solver.costmodel.stacked_shapes import PARALLEL_FIELDS, stacked_shape_terms
from solver.errors import InputError

CAT = load_catalog()


def _catalog_shapes() -> list[Shape]:
    """Every shape a candidate table enumerates, over every model, accelerator and node shape
    (duplicate KV choices and expert-TP layouts kept)."""
    out: list[Shape] = []
    for mid in sorted(CAT.models):
        d = api.single_model_problem(model=mid, rps=1, isl=1000, osl=100, ttft_p99_ms=1000, tpot_p99_ms=50,
                                     cat=CAT).models[0]
        for gpu in sorted(CAT.accelerators):
            for system in CAT.systems_for(gpu):
                out += [s for s, _ in _shapes(CAT, d, gpu, system.id, False, [])]
    return out


SHAPES = _catalog_shapes()


def _row(stacked: ShapeTerms, j: int) -> ShapeTerms:
    """Row ``j`` of stacked terms as one shape's terms (each field's value, or its entry ``j``)."""
    def pick(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v[j].item() if v.dtype != object else v[j]
        if is_dataclass(v) and not isinstance(v, type):
            return replace(v, **{f.name: pick(getattr(v, f.name)) for f in fields(v)})
        return v
    return replace(stacked, **{f.name: pick(getattr(stacked, f.name)) for f in fields(ShapeTerms)})


def _same_layout(a: Any, b: Any) -> bool:
    """Equal values laid out alike: both scalars (equal) or both arrays (equal elementwise), and
    dataclasses field by field."""
    if is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(_same_layout(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and bool((a == b).all())
    return bool(a == b)


def _check(engine: str, shapes: list[Shape]) -> None:
    stacks = stacked_shape_terms(CAT, shapes, engine)
    got: dict[int, ShapeTerms] = {}
    for index, stacked in stacks:  # each stack is stack_terms of the one-shape terms, field by field
        one = []
        for i in index:
            got[i] = shape_terms(CAT, shapes[i], engine)
            one.append(got[i])
        assert len({branch_key(t) for t in one}) == 1
        expected = stack_terms(one)
        for f in fields(ShapeTerms):
            assert _same_layout(getattr(stacked, f.name), getattr(expected, f.name)), f.name
    # the shapes left out are exactly those that cannot run
    for i, s in enumerate(shapes):
        if i not in got:
            assert check_shape(CAT, s, engine) is not None
            with pytest.raises(InputError):
                shape_terms(CAT, s, engine)


def test_every_catalog_shape_under_the_default_engine() -> None:
    assert len(SHAPES) > 50_000
    _check(CAT.default_engine, SHAPES)


@pytest.mark.parametrize("engine", sorted(e for e in CAT.engines if e != CAT.default_engine))
def test_every_seventh_catalog_shape_under_the_other_engines(engine: str) -> None:
    """Other engines change the memory rule, chunk size and host times (every seventh shape: the
    enumeration cycles through formats and parallelisms much faster than that)."""
    _check(engine, SHAPES[::7])


def test_parallel_fields_are_all_that_differ_within_a_group() -> None:
    """The fields taken from a group's first shape are the same for every shape of the group:
    every shape's terms agree with its group's first outside :data:`PARALLEL_FIELDS`."""
    groups: dict[tuple[Any, ...], ShapeTerms] = {}
    seen = 0
    for s in SHAPES[::3]:
        if check_shape(CAT, s, CAT.default_engine) is not None:
            continue
        t = shape_terms(CAT, s)
        first = groups.setdefault((s.model, s.accelerator, s.system, s.quant, s.kv_dtype), t)
        if first is not t:
            seen += 1
            assert replace(t, **{k: getattr(first, k) for k in PARALLEL_FIELDS}) == first
    assert seen > 1000


def test_rows_are_the_one_shape_terms() -> None:
    """Row by row: each row read back is the shape's own terms (a dense and an MoE model, every
    format and parallelism on two accelerators)."""
    shapes = [s for s in SHAPES if s.model in ("llama-3.1-70b", "qwen3-235b-a22b")
              and s.accelerator in ("h100-sxm", "mi300x")]
    stacks = stacked_shape_terms(CAT, shapes)
    assert sum(len(index) for index, _ in stacks) > 200
    for index, stacked in stacks:
        for j, i in enumerate(index):
            assert _row(stacked, j) == shape_terms(CAT, shapes[i]), shapes[i]


def test_a_system_left_to_its_default_and_named_are_grouped_apart() -> None:
    """``system=None`` (the accelerator's default node shape) and the same node shape named give
    the same terms but for the shape itself."""
    named = Shape("llama-3.1-8b", "h100-sxm", CAT.default_system("h100-sxm").id, "fp8", "fp8", 2)
    shapes = [replace(named, system=None), named, replace(named, tp=4)]
    (index, stacked), = stacked_shape_terms(CAT, shapes)
    rows = {i: _row(stacked, j) for j, i in enumerate(index)}
    assert rows == {i: shape_terms(CAT, s) for i, s in enumerate(shapes)}
