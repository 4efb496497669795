"""The vectorised candidate tables (every shape x batch cap of a model in one cost-model call on
stacked terms) against the one-shape view of the same cost model: ``estimate_terms`` on every
candidate of every bundled problem, and the per-shape SLO view on every shape of two of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from solver.candidates import TableCache, _shape_eval, build_tables, lengths_key, partitions_for
from solver.catalog import load_catalog
from solver.costmodel import Shape, estimate_terms, shape_terms
from solver.costmodel.memory import prefix_reserve_bytes_gpu
from solver.costmodel.partition import partition_terms
from solver.costmodel.stacked import split_rows, stack_terms
from solver.lora import demand_terms
from solver.problem import load_problem
from solver.slo import Lengths
from solver.uncertainty import planning_multiplier
from solver.units import GIB

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = sorted((ROOT / "problems").glob("*.yaml"))
REL = 1e-9
"""Tight: the stacked and the one-shape evaluation do the same float operations in the same
order, so they differ by rounding noise only (1e-14 measured)."""


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _lengths(traffic, target) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Prompt and output lengths at a target's percentile (p99 without the target)."""
    q = target.percentile if target is not None else 99.0
    return traffic.input_tokens.percentile(q), traffic.output_tokens.percentile(q)


@pytest.mark.parametrize("path", PROBLEMS, ids=[p.stem for p in PROBLEMS])
def test_every_candidate_equals_the_one_shape_estimate(cat, path: Path) -> None:
    """Each candidate's zero-load TTFT, TPOT, zero-load E2E and service time are ``estimate``
    at its batch cap and the lengths at each target's percentile (the mean lengths for the
    service time), times the planning multiplier of ``--confidence``; KV and the memory limit
    at p99 prompt + p99 output (plus the cached shared prefix). Speculative candidates are
    evaluated one shape at a time by construction and are left out here."""
    problem = load_problem(path, cat)
    compared = 0
    for t in build_tables(problem, cat):
        d = t.demand
        tr, slo = d.traffic, d.slo
        engine = d.engine or cat.default_engine
        hit, prefix = tr.prefix_cache_hit_rate, tr.shared_prefix_tokens
        ln = Lengths.of(d)
        at = {axis: _lengths(tr, getattr(slo, axis)) for axis in ("ttft", "tpot", "e2e")}
        for c in t.candidates + tuple(t.best.values()):
            if c.speculative:
                continue
            shape = Shape(c.model_id, c.accelerator, c.system, c.quant, c.kv_dtype, c.tp, c.pp, c.ep, c.moe_tp)
            terms = shape_terms(cat, shape, engine)
            if c.partition:  # a MIG slice or a co-located share: the share's terms
                part = next(p for p in partitions_for(cat, d, c.accelerator) if p.label == c.partition)
                eng = cat.engine(terms.engine)
                terms = partition_terms(terms, part, eng.kv_memory_policy, eng.kv_memory_fraction)
            terms = demand_terms(cat, d, terms)
            m = planning_multiplier(cat, d.model, c.accelerator, c.quant, engine, problem.confidence,
                                    c.max_batch, d)
            est = {axis: estimate_terms(terms, *at[axis], c.max_batch, hit) for axis in at}
            assert _rel(c.tpot_p99_ms, est["tpot"].tpot_ms * m) < REL, c.label()
            assert _rel(c.ttft_min_ms, est["ttft"].ttft_ms * m) < REL, c.label()
            e2e = est["e2e"].ttft_ms + at["e2e"][1] * est["e2e"].tpot_ms
            assert _rel(c.e2e_min_ms, e2e * m) < REL, c.label()
            service = ln.osl_mean * estimate_terms(terms, ln.isl_mean, ln.osl_mean, c.max_batch, hit).tpot_ms / 1e3
            assert _rel(c.service_s, service * m) < REL, c.label()
            e = estimate_terms(terms, tr.input_tokens.percentile(99), tr.output_tokens.percentile(99),
                               c.max_batch, hit)
            kv = e.kv_gib_per_gpu + float(prefix_reserve_bytes_gpu(terms, prefix)) / GIB
            assert _rel(c.kv_gib_per_gpu, kv) < REL, c.label()
            assert c.weights_gib_per_gpu == pytest.approx(e.weights_gib_per_gpu, rel=REL)
            if prefix == 0:
                assert c.max_concurrency == max(e.max_concurrency, 0), c.label()
            compared += 1
    assert compared > 0


@pytest.mark.parametrize("name", ["multi-model-fleet", "lora-tenants"])
def test_stacked_evaluation_equals_one_shape_at_a_time(cat, name: str) -> None:
    """Every shape of every model (before pruning; dense, MoE, LoRA, every accelerator and
    format): the evaluation the tables are built from equals the per-shape one at every batch
    cap -- memory limit, batch caps, SLO view and KV."""
    problem = load_problem(ROOT / "problems" / f"{name}.yaml", cat)
    seen = 0
    for t in build_tables(problem, cat, prune=False):
        d = t.demand
        engine = d.engine or cat.default_engine
        cache = TableCache()
        shapes = sorted({Shape(c.model_id, c.accelerator, c.system, c.quant, c.kv_dtype, c.tp, c.pp, c.ep)
                         for c in t.candidates}, key=repr)
        stacked = cache.evaluate_many(cat, d, [(s, None) for s in shapes], engine, key=lengths_key(d))
        for s, ev in zip(shapes, stacked):
            one = _shape_eval(d, s, demand_terms(cat, d, shape_terms(cat, s, engine)))
            assert (ev.limit, ev.fits, ev.reason) == (one.limit, one.fits, one.reason)
            assert ev.view is not None and one.view is not None
            assert np.array_equal(ev.view.batch, one.view.batch)
            for field in ("service_s", "ttft0_ms", "tpot_ms", "e2e0_ms"):
                np.testing.assert_allclose(getattr(ev.view, field), getattr(one.view, field), rtol=REL)
            np.testing.assert_allclose(ev.kv_gib, one.kv_gib, rtol=REL)
            seen += 1
    assert seen > 100


def test_stacking_keeps_shared_fields_scalar_and_splits_rows_back(cat) -> None:
    """Fields equal on every shape stay scalars (what Python branches read); fields that differ
    become one entry per row; rows split back per shape."""
    a = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8", 1))
    b = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "bf16", "bf16", 8))
    s = stack_terms([a, b], [2, 3])
    assert s.num_layers == a.num_layers and np.ndim(s.num_layers) == 0
    assert list(s.tp) == [1, 1, 8, 8, 8]
    assert list(s.compute_dtype) == [a.compute_dtype] * 2 + [b.compute_dtype] * 3
    assert list(s.tp_cost.bandwidth_bytes_s) == [a.tp_cost.bandwidth_bytes_s] * 2 + [b.tp_cost.bandwidth_bytes_s] * 3
    parts = split_rows(s.weight_bytes_gpu, [2, 3])
    assert [list(p) for p in parts] == [[a.weight_bytes_gpu] * 2, [b.weight_bytes_gpu] * 3]


def test_stacking_refuses_shapes_the_cost_model_branches_apart(cat) -> None:
    """A dense and a MoE model differ in a field read by a Python ``if``: not one stack."""
    dense = shape_terms(cat, Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", 4))
    moe_id = next(m for m in sorted(cat.models) if cat.model(m).moe is not None)
    moe = shape_terms(cat, Shape(moe_id, "h200-sxm", None, "fp8", "fp8", 8))
    with pytest.raises(ValueError, match="branches on"):
        stack_terms([dense, moe])


def test_capacity_in_integers_on_arrays_equals_the_scalar_rounding() -> None:
    """The tables round capacities to milli-req/s on arrays; each entry equals
    ``scaling.capacity_mrps`` (binary noise, zero, negative, infinite and NaN included)."""
    from solver import scaling

    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.random(2000) * 50, rng.random(200) * 1e-3, np.array([2.69, 0.1 + 0.2, 1e-4, 0.0, -1.0,
                                                                  np.inf, np.nan, 1e9, 0.0009999999999])])
    got = scaling.capacity_mrps_array(values)
    assert got.dtype == np.int64
    assert got.tolist() == [scaling.capacity_mrps(float(x)) for x in values]
