"""The verifier's public function, per constraint family: a plan that passes, then the same plan
against a problem (or with a field) that breaks one family, which must be named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from solver import api
from solver.catalog import load_catalog
from solver.problem import LatencyTarget, load_problem
from solver.verify import PlanViolation, verify_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def solved(cat):
    problem = load_problem(ROOT / "problems" / "chat-assistant-70b.yaml", cat)
    plan = api.solve(problem, cat)
    assert plan.status.has_plan
    return problem, plan


def _model_update(problem, **update):
    return problem.model_copy(update={"models": [problem.models[0].model_copy(update=update)]})


def _fleet_update(problem, **update):
    return problem.model_copy(update={"fleet": problem.fleet.model_copy(update=update)})


def test_the_solved_plan_passes(cat, solved) -> None:
    problem, plan = solved
    verify_plan(plan, problem, cat)


@pytest.mark.parametrize("family, change, message", [
    ("accelerators", lambda p, d: _model_update(p, allowed_accelerators=["l40s"] if d.accelerator != "l40s" else ["h100-sxm"]),
     "accelerator not allowed"),
    ("formats", lambda p, d: _model_update(p, allowed_quantizations=["bf16"] if d.quant != "bf16" else ["fp8"]),
     "quantization not allowed"),
    ("inventory", lambda p, d: _fleet_update(p, inventory={d.accelerator: d.total_gpus - 1}), "inventory of"),
    ("power", lambda p, d: _fleet_update(p, power_kw=0.1), "power"),
    ("budget", lambda p, d: _fleet_update(p, budget_usd_per_hour=0.5), "budget"),
    ("ttft", lambda p, d: _model_update(p, slo=p.models[0].slo.model_copy(
        update={"ttft": LatencyTarget(max_ms=d.ttft_p99_ms * 0.5)})), "ttft p99"),
    ("load", lambda p, d: _model_update(p, traffic=p.models[0].traffic.model_copy(
        update={"peak_rps": p.models[0].traffic.peak_rps * 50})), "capacity"),
])
def test_each_family_is_checked(cat, solved, family, change, message) -> None:
    problem, plan = solved
    broken = change(problem, plan.deployments[0])
    with pytest.raises(PlanViolation, match=message):
        verify_plan(plan, broken, cat)


def test_misreported_latency_is_caught(cat, solved) -> None:
    problem, plan = solved
    d = plan.deployments[0]
    lied = dataclasses.replace(d, tpot_p99_ms=d.tpot_p99_ms * 0.5)
    with pytest.raises(PlanViolation, match="reported"):
        verify_plan(dataclasses.replace(plan, deployments=(lied,) + plan.deployments[1:]), problem, cat)
