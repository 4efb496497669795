"""The optimiser on real catalog tables: brute force agrees with CP-SAT, pruning is safe, plans
pass the independent verifier (and a tampered plan does not), solves are deterministic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from solver import api
from solver.candidates import build_tables
from solver.catalog import load_catalog
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.plan import SolveStatus
from solver.problem import Problem, load_problem
from solver.verify import PlanViolation, verify_plan

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _problem(models: list[dict], fleet: dict | None = None) -> Problem:
    return Problem.model_validate({"name": "t", "models": models, "fleet": fleet or {}})


def _model(name: str, model: str, rps: float, gpus: list[str], quants: list[str], ttft: float = 1500,
           tpot: float = 60) -> dict:
    return {
        "name": name, "model": model,
        "traffic": {"peak_rps": rps, "input_tokens": {"p50": 500, "p90": 1500, "p99": 3000},
                    "output_tokens": {"p50": 150, "p90": 300, "p99": 600}},
        "slo": {"ttft": {"max_ms": ttft}, "tpot": {"max_ms": tpot}},
        "allowed_accelerators": gpus, "allowed_quantizations": quants, "headroom": 0.2,
    }


def _cpsat_vs_brute(problem: Problem, cat) -> int | None:
    ip = encode(build_tables(problem, cat), problem.fleet)
    sol = FleetModel(ip).solve(10, 8)
    ref = brute_force(ip)
    assert (sol.cost_cents if sol.status.has_plan else None) == ref.cost_cents
    if ref.cost_cents is not None:
        assert sol.status is SolveStatus.OPTIMAL
    return ref.cost_cents


def test_single_model_real_table_brute_force(cat):
    problem = load_problem(PROBLEMS / "chat-assistant-70b.yaml", cat)
    assert _cpsat_vs_brute(problem, cat) is not None


def test_single_model_scarce_type_splits(cat):
    base = _model("chat", "llama-3.1-8b", 200, ["l40s", "h100-sxm"], ["fp8"])
    free = _problem([base])
    cost_free = _cpsat_vs_brute(free, cat)
    plan_free = api.solve(free, cat)
    # the type the unconstrained plan leans on most (the cost model decides whether it mixes)
    per_type: dict[str, int] = {}
    for d in plan_free.deployments:
        per_type[d.accelerator] = per_type.get(d.accelerator, 0) + d.total_gpus
    gpu = max(per_type, key=lambda a: (per_type[a], a))
    used = per_type[gpu]
    scarce = _problem([base], {"inventory": {gpu: max(used // 2, 1)}})
    cost_scarce = _cpsat_vs_brute(scarce, cat)
    plan = api.solve(scarce, cat)
    assert {d.accelerator for d in plan.deployments} == {"l40s", "h100-sxm"}
    assert cost_scarce is not None and cost_free is not None and cost_scarce > cost_free


def test_two_models_share_inventory_nodes_and_power(cat):
    problem = _problem(
        [_model("small", "llama-3.1-8b", 20, ["l40s", "h100-sxm"], ["fp8"]),
         _model("mid", "qwen3-32b", 4, ["l40s", "h100-sxm"], ["fp8"], ttft=2000, tpot=80)],
        {"inventory": {"l40s": 8, "h100-sxm": 16}, "whole_nodes": True, "power_kw": 12},
    )
    assert _cpsat_vs_brute(problem, cat) is not None
    plan = api.solve(problem, cat)
    for s in plan.systems:
        assert s.gpus_provisioned % 8 == 0  # whole 8-GPU nodes


def test_pruning_is_safe_on_real_tables(cat):
    problem = _problem(
        [_model("a", "llama-3.1-8b", 30, ["l40s", "h100-sxm"], ["fp8", "bf16"]),
         _model("b", "qwen3-32b", 5, ["h100-sxm", "a100-80gb"], ["fp8"], ttft=2000, tpot=80)],
        {"inventory": {"h100-sxm": 8}, "power_kw": 20},
    )
    pruned = api.solve(problem, cat)
    full = api.solve(problem, cat, prune=False)
    assert sum(pruned.pruned.values()) > 0
    assert pruned.cost_usd_per_hour == pytest.approx(full.cost_usd_per_hour)


@pytest.mark.parametrize("name", sorted(p.stem for p in PROBLEMS.glob("*.yaml")))
def test_example_problems_solve_and_verify(cat, name):
    problem = load_problem(PROBLEMS / f"{name}.yaml", cat)
    plan = api.solve(problem, cat)
    assert plan.solve_seconds < 10
    if name.startswith("impossible"):  # deliberately infeasible examples are explained
        assert plan.status is SolveStatus.INFEASIBLE and plan.conflict and plan.explanation
        return
    assert plan.status is SolveStatus.OPTIMAL
    verify_plan(plan, problem, cat)  # api.solve already did; once more, explicitly


def test_verifier_rejects_tampered_plans(cat):
    problem = load_problem(PROBLEMS / "chat-assistant-70b.yaml", cat)
    plan = api.solve(problem, cat)
    d = plan.deployments[0]
    fewer = dataclasses.replace(d, replicas=d.replicas - 1, total_gpus=d.total_gpus - d.gpus_per_replica)
    with pytest.raises(PlanViolation):
        verify_plan(dataclasses.replace(plan, deployments=(fewer,)), problem, cat)
    bigger_batch = dataclasses.replace(d, max_batch=4096)
    with pytest.raises(PlanViolation, match="batch cap"):
        verify_plan(dataclasses.replace(plan, deployments=(bigger_batch,)), problem, cat)
    cheaper = dataclasses.replace(plan, cost_usd_per_hour=plan.cost_usd_per_hour - 1)
    with pytest.raises(PlanViolation, match="plan cost"):
        verify_plan(cheaper, problem, cat)
    tighter = problem.model_copy(update={"fleet": problem.fleet.model_copy(update={"budget_usd_per_hour": 1.0})})
    with pytest.raises(PlanViolation, match="budget"):
        verify_plan(plan, tighter, cat)


def test_same_input_same_plan(cat):
    problem = _problem(
        [_model("small", "llama-3.1-8b", 50, ["l40s", "h100-sxm", "a100-80gb"], ["fp8", "bf16"]),
         _model("mid", "qwen3-32b", 6, ["l40s", "h100-sxm", "a100-80gb"], ["fp8"], ttft=2000, tpot=80)],
        {"inventory": {"h100-sxm": 4, "l40s": 8}, "whole_nodes": True},
    )
    a = api.solve(problem, cat).to_dict()
    b = api.solve(problem, cat).to_dict()
    a.pop("solve_seconds"), b.pop("solve_seconds")
    assert a == b


def test_infeasible_real_problem_is_explained(cat):
    problem = _problem([_model("chat", "llama-3.1-70b", 5, ["h100-sxm"], ["fp8"], tpot=4)])
    plan = api.solve(problem, cat)
    assert plan.status is SolveStatus.INFEASIBLE
    assert plan.conflict == ("tpot[chat]",)
    assert "TPOT p99 <= 4 ms for chat (llama-3.1-70b): the fastest allowed candidate reaches" in plan.explanation[0]
    assert "h100-sxm" in plan.explanation[0]


def test_infeasible_inventory_core_on_real_tables(cat):
    problem = _problem([_model("chat", "llama-3.1-70b", 40, ["h100-sxm"], ["fp8"])],
                       {"inventory": {"h100-sxm": 4}})
    plan = api.solve(problem, cat)
    assert plan.status is SolveStatus.INFEASIBLE
    assert plan.conflict == ("inventory[h100-sxm]",)
    assert "inventory of h100-sxm: 4 GPUs" in plan.explanation[0]


def test_model_that_fits_nowhere_is_explained(cat):
    problem = _problem([_model("big", "llama-3.1-405b", 1, ["l4"], ["bf16"])])
    plan = api.solve(problem, cat)
    assert plan.status is SolveStatus.INFEASIBLE
    assert plan.explanation and "big" in plan.explanation[0]


def test_capacity_inverse_question(cat):
    problem = api.single_model_problem("llama-3.1-8b", 1.0, 1000, 200, 500, 40, gpus=["h100-sxm"], cat=cat)
    ans = api.capacity(problem, cat, 8)
    assert ans.status is SolveStatus.OPTIMAL and 0 < ans.gpus_used <= 8
    assert ans.output_tokens_per_s == pytest.approx(ans.requests_per_s * 200)
    # the answer is consistent with the forward question: that much traffic is servable on 8 GPUs
    fwd = api.solve(api.single_model_problem("llama-3.1-8b", ans.requests_per_s * 0.999, 1000, 200, 500, 40,
                                             gpus=["h100-sxm"], cat=cat), cat)
    assert fwd.status.has_plan and fwd.gpus <= 8


def test_time_limit_returns_best_plan_with_bound(cat):
    problem = load_problem(PROBLEMS / "chat-assistant-70b.yaml", cat)
    plan = api.solve(problem, cat, time_limit_s=0.001, workers=1)
    assert plan.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE, SolveStatus.UNKNOWN)
    if plan.status.has_plan:
        assert plan.gap is not None and 0 <= plan.gap <= 1
        assert plan.bound_usd_per_hour is not None and plan.bound_usd_per_hour <= plan.cost_usd_per_hour + 0.01
    else:
        assert plan.cost_usd_per_hour is None and not plan.explanation


def test_verifier_checks_whole_node_packing(cat):
    from solver.verify import _pack_nodes

    assert _pack_nodes([4, 2, 2, 1, 1, 1, 1], 8) == 2
    assert _pack_nodes([16, 8, 4, 4], 8) == 4
    assert _pack_nodes([], 8) == 0
    problem = _problem([_model("small", "llama-3.1-8b", 20, ["h100-sxm"], ["fp8"])], {"whole_nodes": True})
    plan = api.solve(problem, cat)
    (use,) = plan.systems
    assert use.gpus_provisioned == 8 * use.nodes >= use.gpus_used
    short = dataclasses.replace(use, nodes=0, gpus_provisioned=0, cost_usd_per_hour=0.0)
    with pytest.raises(PlanViolation, match="nodes"):
        verify_plan(dataclasses.replace(plan, systems=(short,), cost_usd_per_hour=0.0), problem, cat)


def test_repeated_models_share_one_table_evaluation(cat):
    from solver.candidates import model_table

    problem = _problem([_model("app-a", "llama-3.1-8b", 20, ["l40s", "h100-sxm"], ["fp8"]),
                        _model("app-b", "llama-3.1-8b", 70, ["l40s", "h100-sxm"], ["fp8"]),
                        _model("app-c", "llama-3.1-8b", 20, ["l40s", "h100-sxm"], ["fp8"], tpot=30)])
    shared = build_tables(problem, cat)
    alone = [model_table(cat, problem, d) for d in problem.models]
    for a, b in zip(shared, alone):
        assert a.candidates == b.candidates and a.rejected == b.rejected and a.best == b.best
        assert a.load_rps == b.load_rps and all(c.model == a.name for c in a.candidates)
