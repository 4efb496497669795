"""The exact one-model solve (solver.optimize.single) against CP-SAT: the same optimum on many
seeded queries (models x targets x rates x replica minimum / N+1 / configurations), the plan
JSON stays truthful (optimal, bound = cost, gap 0), and problems outside its class go to CP-SAT."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from solver.candidates import TableCache
from solver.catalog import load_catalog
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.single import applies, solve_single
from solver.plan import SolveStatus, Termination
from solver.problem import load_problem, query_problem
from solver.session import Session

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-30b-a3b")
LENGTHS = (((1000, 2000, 4000), (200, 400, 800)), ((2000, 2000, 2000), (300, 300, 300)))
TARGETS = ((1000.0, 40.0, None), (300.0, None, None), (None, 25.0, None), (None, None, 20000.0),
           (2000.0, 80.0, None))


def _cases(n: int, seed: int = 20261201):
    """``n`` seeded query problems (model, lengths, targets, rate, minimum, N+1, K)."""
    rng = random.Random(seed)
    cat = load_catalog()
    for _ in range(n):
        model = rng.choice(MODELS)
        isl, osl = rng.choice(LENGTHS)
        ttft, tpot, e2e = rng.choice(TARGETS)
        rps = round(rng.choice((0.2, 1.0, 3.0, 10.0, 40.0, 150.0)) * rng.uniform(0.7, 1.3), 2)
        p = query_problem(model, rps, isl, osl, ttft, tpot, e2e, cat=cat,
                          max_configs=rng.choice((1, 2, 3)), min_replicas=rng.choice((1, 1, 2, 3)))
        if rng.random() < 0.3:
            d = p.models[0].model_copy(update={"redundancy": "n+1"})
            p = p.model_copy(update={"models": [d]})
        yield p


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def cache():
    return TableCache()


def test_exact_solve_equals_cpsat_on_many_queries(cat, cache) -> None:
    """Same status and cost on every query; the same replicas, or else a tie (CP-SAT's plan
    costs exactly what the enumeration's does), with ties at most half the plans. Every plan
    passes the verifier."""
    seen = {"plans": 0, "infeasible": 0, "unique_equal": 0, "ties": 0, "spare": 0, "minimum": 0}
    for p in _cases(40):
        s = Session.prepare(p, cat, cache=cache)
        assert applies(s.ip)
        fast = solve_single(s.ip)
        assert fast is not None, p.name
        ref = FleetModel(s.ip).solve(10, 1)
        assert ref.termination is not Termination.UNKNOWN_AT_TIME_LIMIT
        assert fast.status is ref.status, p.name
        if not fast.status.has_plan:
            assert fast.termination is Termination.INFEASIBLE_PROVEN
            seen["infeasible"] += 1
            continue
        seen["plans"] += 1
        seen["spare"] += bool(s.ip.n_plus_one[0])
        seen["minimum"] += s.ip.min_replicas[0] > 1
        assert ref.termination is Termination.OPTIMAL
        assert fast.cost_cents == ref.cost_cents, p.name
        assert fast.provisioned == tuple(
            sum(r * c.gpus for r, c in zip(fast.replicas, s.ip.candidates) if c.system == k)
            for k in range(len(s.ip.systems)))
        if fast.replicas == ref.replicas:
            seen["unique_equal"] += 1
        else:  # a tie: CP-SAT's plan costs the same, and so does the enumeration's
            seen["ties"] += 1
            assert _cost(s.ip, ref.replicas) == _cost(s.ip, fast.replicas) == fast.cost_cents
        plan = s.plan(fast, 0.0)  # verify_plan raises on any violated constraint
        assert plan.cost_usd_per_hour == pytest.approx(fast.cost_cents / 100)
    assert seen["plans"] >= 25 and seen["spare"] >= 5 and seen["minimum"] >= 5, seen
    assert seen["unique_equal"] >= seen["plans"] // 2, seen


def _cost(ip, replicas) -> int:
    return sum(r * ip.systems[c.system].price_cents_per_gpu * c.gpus for r, c in zip(replicas, ip.candidates))


def test_exact_solve_equals_brute_force_on_small_tables(cat, cache) -> None:
    """On tables cut to a handful of candidates (few replicas each, so brute force stays
    small), the enumeration equals the brute-force reference (which knows nothing of its
    bounds)."""
    checked = 0
    for p in _cases(25, seed=7):
        s = Session.prepare(p, cat, cache=cache)
        ip = s.ip
        keep = [i for i, c in enumerate(ip.candidates) if not c.violations and c.max_replicas <= 8][:5]
        if not keep:
            continue
        small = replace(ip, candidates=tuple(ip.candidates[i] for i in keep),
                        source=tuple(ip.source[i] for i in keep))
        ref = brute_force(small)
        fast = solve_single(small)
        assert fast is not None
        assert fast.cost_cents == ref.cost_cents, p.name
        checked += ref.cost_cents is not None
    assert checked >= 10


def test_query_plan_reports_a_proven_optimum(cat, cache) -> None:
    p = query_problem("llama-3.1-70b", 10, (2000,) * 3, (300,) * 3, 1000, 40, None, cat=cat)
    s = Session.prepare(p, cat, cache=cache)
    plan, sol = s.run()
    assert s._model is None  # the CP-SAT model was never built
    assert plan.status is SolveStatus.OPTIMAL and plan.termination is Termination.OPTIMAL
    assert plan.bound_usd_per_hour == plan.cost_usd_per_hour and plan.gap == 0.0
    assert sol.cost_cents == FleetModel(s.ip).solve(10, 1).cost_cents


def test_node_limit_hands_the_problem_to_cpsat(cat, cache) -> None:
    p = query_problem("llama-3.1-8b", 30, (1000,) * 3, (200,) * 3, 500, 40, None, cat=cat)
    s = Session.prepare(p, cat, cache=cache)
    assert solve_single(s.ip, node_limit=1) is None
    assert solve_single(s.ip) is not None


def test_problems_with_shared_limits_or_several_models_go_to_cpsat(cat) -> None:
    for name in ("multi-model-fleet", "owned-h100-fleet", "agent-chain", "shared-small-models"):
        ip = Session.prepare(load_problem(ROOT / "problems" / f"{name}.yaml", cat), cat).ip
        assert not applies(ip) and solve_single(ip) is None, name
    p = query_problem("llama-3.1-8b", 5, (1000,) * 3, (200,) * 3, 500, 40, None, cat=cat)
    base = Session.prepare(p, cat).ip
    assert applies(base)
    for change in ({"inventory": {base.systems[0].accelerator: 8}}, {"whole_nodes": True},
                   {"power_limit_w": 10_000}, {"budget_cents": 10_000}):
        other = replace(base, **change)
        assert not applies(other), change


def test_a_query_no_candidate_serves_is_proven_infeasible(cat, cache) -> None:
    p = query_problem("llama-3.1-70b", 10, (2000,) * 3, (300,) * 3, 5, 2, None, cat=cat)
    ip = Session.prepare(p, cat, cache=cache).ip
    fast, ref = solve_single(ip), FleetModel(ip).solve(10, 1)
    assert fast is not None and fast.status is ref.status is SolveStatus.INFEASIBLE
    assert fast.termination is Termination.INFEASIBLE_PROVEN
