"""Termination reasons: a time-out is never reported as infeasibility (issue 10).

A CP-SAT time limit of 0 s stops the search before it proves anything, which is how these tests
make conflict search and solves run out of time deterministically.
"""

from __future__ import annotations

from pathlib import Path

from solver.api import solve
from solver.catalog import load_catalog
from solver.families import Family, Guard
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.plan import SolveStatus, Termination
from solver.problem import Fleet, load_problem
from test_optimizer import cand, demand, table

ROOT = Path(__file__).resolve().parent.parent
NO_PLAN_EVEN_RELAXED = "no plan exists even with every constraint family relaxed"


def _infeasible_tpot() -> FleetModel:
    d = demand("chat", 5.0)
    t = table(d, [cand("chat", "gpu-a", 1, 2.0, [Family.TPOT]), cand("chat", "gpu-b", 2, 4.0, [Family.TPOT])])
    return FleetModel(encode([t], Fleet()))


def test_conflict_search_out_of_time_is_unknown_not_an_empty_conflict() -> None:
    fm = _infeasible_tpot()
    conflict = fm.core(time_limit_s=0.0)
    assert conflict.termination is Termination.UNKNOWN_AT_TIME_LIMIT
    assert conflict.guards == ()
    assert not conflict.proven


def test_conflict_search_with_time_proves_the_conflict() -> None:
    conflict = _infeasible_tpot().core()
    assert conflict.termination is Termination.INFEASIBLE_PROVEN
    assert conflict.guards == (Guard(Family.TPOT, "chat"),)
    assert conflict.proven and conflict.minimal


def test_solve_out_of_time_is_unknown_at_time_limit() -> None:
    sol = _infeasible_tpot().solve(time_limit_s=0.0)
    assert sol.status is SolveStatus.UNKNOWN
    assert sol.termination is Termination.UNKNOWN_AT_TIME_LIMIT


def test_solve_terminations_of_proven_answers() -> None:
    fm = _infeasible_tpot()
    assert fm.solve(time_limit_s=5).termination is Termination.INFEASIBLE_PROVEN
    relaxed = fm.solve(time_limit_s=5, relax=frozenset({Guard(Family.TPOT, "chat")}))
    assert relaxed.termination is Termination.OPTIMAL


def test_api_plan_never_claims_infeasible_when_conflict_search_times_out() -> None:
    cat = load_catalog()
    problem = load_problem(ROOT / "problems" / "impossible-latency.yaml", cat)
    plan = solve(problem, cat, conflict_time_limit_s=0.0)
    assert plan.status is SolveStatus.INFEASIBLE  # the main solve proved it
    assert plan.termination is Termination.INFEASIBLE_PROVEN
    assert plan.conflict_termination is Termination.UNKNOWN_AT_TIME_LIMIT
    assert plan.conflict == ()
    assert NO_PLAN_EVEN_RELAXED not in " ".join(plan.explanation)
    assert "unknown" in " ".join(plan.explanation)
    assert plan.to_dict()["conflict_termination"] == "unknown at time limit"


def test_api_plan_with_time_names_the_conflict() -> None:
    cat = load_catalog()
    problem = load_problem(ROOT / "problems" / "impossible-latency.yaml", cat)
    plan = solve(problem, cat)
    assert plan.conflict_termination is Termination.INFEASIBLE_PROVEN
    assert plan.conflict
