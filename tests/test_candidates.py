"""Candidate tables, directly: identity, agreement with the one-shape ``estimate``, the flags
the SLO gives, pruning, and the shape-evaluation cache (cached tables equal fresh ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.api import single_model_problem
from solver.candidates import TableCache, build_tables, lengths_key, model_table
from solver.catalog import load_catalog
from solver.costmodel import Shape, estimate
from solver.families import Family
from solver.problem import LatencyTarget, Problem, load_problem

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = sorted((ROOT / "problems").glob("*.yaml"))


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def query70(cat):
    return single_model_problem(model="llama-3.1-70b", rps=10, isl=2000, osl=300, ttft_p99_ms=1000,
                                tpot_p99_ms=40, gpus=["h100-sxm", "l40s"], cat=cat)


def _scaled_targets(problem: Problem, factor: float) -> Problem:
    models = []
    for d in problem.models:
        upd = {}
        for axis in ("ttft", "tpot", "e2e"):
            t = getattr(d.slo, axis)
            if t is not None:
                upd[axis] = LatencyTarget(max_ms=t.max_ms * factor, percentile=t.percentile)
        models.append(d.model_copy(update={"slo": d.slo.model_copy(update=upd)}))
    return problem.model_copy(update={"models": models})


def test_candidates_equal_the_one_shape_estimate(cat, query70) -> None:
    """With fixed lengths every percentile is the same length, so each candidate's zero-load
    TTFT and its TPOT are exactly ``estimate`` at concurrency = its batch cap."""
    (t,) = build_tables(query70, cat, prune=False)
    assert len(t.candidates) > 50
    for c in t.candidates[::7]:
        shape = Shape(c.model_id, c.accelerator, c.system, c.quant, c.kv_dtype, c.tp, c.pp, c.ep)
        e = estimate(cat, shape, 2000, 300, c.max_batch)
        assert c.tpot_p99_ms == pytest.approx(e.tpot_ms, rel=1e-12), c.label()
        assert c.ttft_min_ms == pytest.approx(e.ttft_ms, rel=1e-12), c.label()
        assert c.max_concurrency == e.max_concurrency
        assert c.gpus_per_replica == e.gpus


def test_flags_follow_the_targets(cat, query70) -> None:
    (t,) = build_tables(query70, cat, prune=False)
    d = t.demand
    for c in t.candidates:
        assert (Family.TPOT in c.violations) == (c.tpot_p99_ms > d.slo.tpot.max_ms)
        assert (Family.TTFT in c.violations) == (c.ttft_min_ms > d.slo.ttft.max_ms)
        if not c.violations & {Family.TTFT}:
            # at capacity the queueing wait fills the TTFT budget, never more
            assert c.ttft_p99_ms <= d.slo.ttft.max_ms * (1 + 1e-6)
        assert c.capacity_rps_per_replica >= 1e-3


def test_identity_is_unique_within_a_table(cat, query70) -> None:
    (t,) = build_tables(query70, cat, prune=False)
    keys = [(c.accelerator, c.system, c.quant, c.kv_dtype, c.tp, c.pp, c.ep, c.max_batch) for c in t.candidates]
    assert len(keys) == len(set(keys))


def test_pruned_table_is_a_subset_and_keeps_the_best(cat, query70) -> None:
    (full,) = build_tables(query70, cat, prune=False)
    (pruned,) = build_tables(query70, cat)
    assert set(pruned.candidates) <= set(full.candidates)
    usable = [c for c in full.candidates if not c.violations]
    best = min(c.cost_usd_per_hour / c.capacity_rps_per_replica for c in usable)
    assert min(c.cost_usd_per_hour / c.capacity_rps_per_replica for c in pruned.candidates if not c.violations) == best


# -- the cache ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.stem)
def test_cached_tables_equal_fresh_ones(cat, path: Path) -> None:
    """A cache warmed by other targets (a Pareto sweep's points) gives the tables a fresh build
    gives, and evaluates nothing again."""
    problem = load_problem(path, cat)
    cache = TableCache()
    build_tables(_scaled_targets(problem, 0.6), cat, cache=cache)
    misses = cache.misses
    assert misses > 0
    assert build_tables(problem, cat, cache=cache) == build_tables(problem, cat)
    assert cache.misses == misses  # targets changed, lengths did not: every shape was a hit
    assert cache.hits >= misses


def test_a_repeated_build_is_reused_and_equals_a_fresh_one(cat, query70) -> None:
    """The same problem and catalog through one cache (a plan, then its confidence summary)
    returns the first build; another problem, catalog or prune flag builds again."""
    cache = TableCache()
    first = build_tables(query70, cat, cache=cache)
    assert build_tables(query70, cat, cache=cache) is first
    assert first == build_tables(query70, cat)
    assert build_tables(query70, cat, prune=False, cache=cache) is not first
    looser = _scaled_targets(query70, 2.0)
    other = build_tables(looser, cat, cache=cache)
    assert other is not first and other == build_tables(looser, cat)
    renamed = query70.model_copy(update={"models": [query70.models[0].model_copy(update={"name": "other"})]})
    assert build_tables(renamed, cat, cache=cache)[0].name == "other"


def test_whole_builds_kept_are_bounded_oldest_first(cat, query70) -> None:
    cache = TableCache()
    cache.max_builds = 2
    builds = [build_tables(_scaled_targets(query70, f), cat, cache=cache) for f in (1.0, 1.5, 2.0)]
    assert build_tables(_scaled_targets(query70, 2.0), cat, cache=cache) is builds[2]
    assert build_tables(_scaled_targets(query70, 1.5), cat, cache=cache) is builds[1]
    again = build_tables(_scaled_targets(query70, 1.0), cat, cache=cache)  # evicted: built again
    assert again is not builds[0] and again == builds[0]


def test_cache_keys_on_lengths_and_percentiles_not_on_targets(cat, query70) -> None:
    d = query70.models[0]
    looser = _scaled_targets(query70, 2.0).models[0]
    assert lengths_key(d) == lengths_key(looser)
    longer = d.model_copy(update={"traffic": d.traffic.model_copy(
        update={"input_tokens": d.traffic.input_tokens.model_copy(update={"p99": 4000})})})
    assert lengths_key(longer) != lengths_key(d)
    p90 = d.model_copy(update={"slo": d.slo.model_copy(
        update={"tpot": LatencyTarget(max_ms=40, percentile=90)})})
    assert lengths_key(p90) != lengths_key(d)
    other_load = d.model_copy(update={"traffic": d.traffic.model_copy(update={"peak_rps": 99.0})})
    assert lengths_key(other_load) == lengths_key(d)


def test_cache_hits_for_a_new_target_and_misses_for_new_lengths(cat, query70) -> None:
    cache = TableCache()
    d = query70.models[0]
    model_table(cat, query70, d, cache=cache)
    first = cache.misses
    model_table(cat, query70, _scaled_targets(query70, 1.5).models[0], cache=cache)
    assert cache.misses == first
    longer = d.model_copy(update={"traffic": d.traffic.model_copy(
        update={"output_tokens": d.traffic.output_tokens.model_copy(update={"p99": 900})})})
    model_table(cat, query70, longer, cache=cache)
    assert cache.misses == 2 * first


def test_tables_built_in_worker_processes_equal_serial_ones(cat) -> None:
    """Spreading tables over processes changes nothing in them (and keeps the caller's
    demands, names and order)."""
    problem = load_problem(ROOT / "problems" / "multi-model-fleet.yaml", cat)
    twin = problem.models[0].model_copy(update={"name": "router-b", "traffic": problem.models[0].traffic.model_copy(
        update={"peak_rps": 3.0})})
    problem = problem.model_copy(update={"models": list(problem.models) + [twin]})
    serial = build_tables(problem, cat, workers=1)
    parallel = build_tables(problem, cat, workers=2)
    assert parallel == serial
    assert [t.demand for t in parallel] == list(problem.models)
    assert all(t.demand is d for t, d in zip(parallel, problem.models))
