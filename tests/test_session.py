"""The solve session: one identity from candidate to deployment, totals = per replica x
replicas, hints from a plan, and relaxations on one prepared model."""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.catalog import load_catalog
from solver.families import Family, Guard
from solver.plan import Termination
from solver.problem import load_problem
from solver.session import Session

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fleet_session():
    cat = load_catalog()
    return Session.prepare(load_problem(ROOT / "problems" / "multi-model-fleet.yaml", cat), cat)


def test_deployments_keep_the_candidates_identity_and_totals(fleet_session) -> None:
    s = fleet_session
    plan, sol = s.run()
    assert plan.termination is Termination.OPTIMAL
    chosen = s.chosen(sol)
    assert len(chosen) == len(plan.deployments)
    for (c, r), d in zip(chosen, plan.deployments):
        assert (d.shape, d.max_batch) == (c.shape, c.max_batch)
        assert d.replicas == r
        assert d.total_gpus == r * c.gpus_per_replica and d.gpus_per_replica == c.gpus_per_replica
        assert d.total_capacity_rps == pytest.approx(r * c.capacity_rps_per_replica)
        assert d.cost_usd_per_hour == pytest.approx(r * c.cost_usd_per_hour)
    assert sum(s.provisioned(sol, a) for a in {x.accelerator for x in plan.systems}) == plan.gpus


def test_a_plan_hints_its_own_solution(fleet_session) -> None:
    s = fleet_session
    plan, sol = s.run()
    assert s.hint_from(plan).replicas == sol.replicas
    again = s.solve(hint=plan)
    assert again.cost_cents == sol.cost_cents


def test_relaxing_a_fleet_limit_never_costs_more(fleet_session) -> None:
    s = fleet_session
    _, sol = s.run()
    for g in s.guards:
        relaxed = s.solve(relax=frozenset({g}))
        assert relaxed.status.has_plan and relaxed.cost_cents <= sol.cost_cents, g.name
    assert Guard(Family.BUDGET) in s.guards


def test_standalone_hint_covers_each_model_and_keeps_the_optimum(fleet_session) -> None:
    s = fleet_session
    hint = s.standalone_hint()
    ip = s.ip
    for m, demand in enumerate(ip.demand_mrps):
        chosen = [i for i in ip.by_model(m) if hint.replicas[i] > 0]
        assert len(chosen) == 1 and not ip.candidates[chosen[0]].violations
        assert hint.replicas[chosen[0]] * ip.candidates[chosen[0]].cap_mrps >= demand
    assert s.solve(hint=hint).cost_cents == s.solve().cost_cents
