"""solver.explain directly, on hand-built tables through a Session: the sentences of a conflict,
which families bind a plan and by how much; and the session's optimum against brute force."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_optimizer import cand, demand, table

from solver.candidates import TableCache, build_tables
from solver.catalog import load_catalog
from solver.explain import bindings, infeasibility_sentences
from solver.families import Family, Guard
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.problem import Fleet, LatencyTarget, Problem, load_problem
from solver.session import Session

ROOT = Path(__file__).resolve().parent.parent


def session_of(tables, fleet: Fleet) -> Session:
    problem = Problem(name="t", models=[t.demand for t in tables], fleet=fleet)
    ip = encode(tables, fleet)
    return Session(problem, load_catalog(), tuple(tables), ip, FleetModel(ip),
                   {t.name: m for m, t in enumerate(tables)})


def test_conflict_sentences_say_what_relaxing_each_family_gives() -> None:
    # gpu-a covers 8 req/s with 8 GPUs but only 4 exist; gpu-b costs 8 x $3.50 = $28/h > $20/h
    t = table(demand("m", 8.0), [cand("m", "gpu-a", 1, 1.0), cand("m", "gpu-b", 1, 1.0)])
    s = session_of([t], Fleet(inventory={"gpu-a": 4}, budget_usd_per_hour=20.0))
    conflict = s.conflict()
    assert set(conflict.guards) == {Guard(Family.INVENTORY, "gpu-a"), Guard(Family.BUDGET)}
    text = dict(zip(conflict.guards, infeasibility_sentences(s, conflict.guards)))
    assert text[Guard(Family.INVENTORY, "gpu-a")] == (
        "inventory of gpu-a: 4 GPUs; the cheapest plan within the other limits needs 8 ($16.00/h)")
    # without the budget, inventory kept: 4 x gpu-a ($8) + 4 x gpu-b ($14)
    assert text[Guard(Family.BUDGET)] == (
        "budget <= $20/h: the cheapest plan within the other limits costs $22.00/h")


def test_a_model_without_any_usable_shape_is_named() -> None:
    s = session_of([table(demand("lonely", 1.0), [])], Fleet())
    conflict = s.conflict()
    assert conflict.proven and conflict.guards == ()
    (sentence,) = infeasibility_sentences(s, ())
    assert sentence.startswith("lonely: no shape of llama-3.1-8b can serve it")


def test_inventory_binds_a_split_plan_and_relaxing_it_is_priced() -> None:
    # 10 req/s: 6 on scarce cheap gpu-a ($2) + 4 on gpu-b ($3.50) = $26/h; unlimited gpu-a: $20/h
    t = table(demand("m", 10.0), [cand("m", "gpu-a", 1, 1.0), cand("m", "gpu-b", 1, 1.0)])
    s = session_of([t], Fleet(inventory={"gpu-a": 6}))
    sol = s.solve(10, 1)
    assert sol.cost_cents == 2600
    (inv,) = [b for b in bindings(s, sol, 10, 1) if b.family == "inventory"]
    assert inv.binding and inv.cost_if_relaxed_usd_per_hour == pytest.approx(20.0)
    assert inv.detail.startswith("plan uses 6 of 6 gpu-a GPUs")


def test_slack_family_does_not_bind() -> None:
    # the TPOT-violating candidate is dearer than the good one: relaxing TPOT changes nothing
    t = table(demand("m", 4.0), [cand("m", "gpu-a", 1, 1.0), cand("m", "gpu-b", 1, 1.0, [Family.TPOT])])
    s = session_of([t], Fleet())
    sol = s.solve(10, 1)
    (tpot,) = [b for b in bindings(s, sol, 10, 1) if b.family == "tpot"]
    assert not tpot.binding
    assert tpot.cost_if_relaxed_usd_per_hour == pytest.approx(8.0)


def test_a_real_binding_target_is_found() -> None:
    """On the bundled chat problem, TTFT sets each replica's capacity (the queueing wait fills
    the budget): explain says it binds."""
    cat = load_catalog()
    problem = load_problem(ROOT / "problems" / "chat-assistant-70b.yaml", cat)
    s = Session.prepare(problem, cat)
    plan, sol = s.run()
    found = {b.family: b for b in bindings(s, sol, 10, 1)}
    assert found["ttft"].binding
    assert "the target sets the capacity per replica" in found["ttft"].detail


def test_session_on_a_warm_cache_still_matches_brute_force() -> None:
    """Tables from a cache warmed at other targets give the optimum brute force finds on
    freshly built tables (few candidates per model, so brute force is exact and quick)."""
    cat = load_catalog()
    base = Problem.model_validate({"name": "t", "models": [{
        "name": "chat", "model": "llama-3.1-8b",
        "traffic": {"peak_rps": 6, "input_tokens": {"p50": 500, "p90": 1500, "p99": 3000},
                    "output_tokens": {"p50": 150, "p90": 300, "p99": 600}},
        "slo": {"ttft": {"max_ms": 800}, "tpot": {"max_ms": 50}},
        "allowed_accelerators": ["l40s", "h100-sxm"], "allowed_quantizations": ["fp8"]}],
        "fleet": {"inventory": {"h100-sxm": 2}}})
    cache = TableCache()
    looser = base.model_copy(update={"models": [base.models[0].model_copy(update={"slo": base.models[0].slo.model_copy(
        update={"ttft": LatencyTarget(max_ms=2000)})})]})
    Session.prepare(looser, cat, cache=cache)
    warm = Session.prepare(base, cat, cache=cache)
    sol = warm.solve(10, 1)
    fresh = encode(build_tables(base, cat), base.fleet)
    assert len(fresh.candidates) <= 40
    assert sol.cost_cents == brute_force(fresh).cost_cents
