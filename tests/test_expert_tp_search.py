"""Expert TP inside attention DP (``Shape.moe_tp``) in the search: which layouts are enumerated,
that the tables, ``estimate``, the plan and the verifier agree on them, that pruning them before
evaluation is exact (the dominance the pruning rests on holds on the unpruned tables, and the
optimum is the same with and without it), and the CLI's bad input."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from solver import api
from solver.candidates import build_tables, expert_tp_layouts
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, estimate_terms, shape_terms
from solver.lora import demand_terms
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.problem import query_problem
from solver.session import deployment
from solver.verify import violations


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _problem(cat, model: str, rps: float = 1.0, quants: list[str] | None = None):  # type: ignore[no-untyped-def]
    return query_problem(model, rps, (4000,) * 3, (1000,) * 3, 2000, 50, None, gpus=["h200-sxm"],
                         quants=quants, cat=cat)


def test_expert_tp_layouts_of_a_stage():
    # a stage of 8: attention TP 1, 2 or 4 (DP 8, 4, 2) x experts EP2 x TP4 or EP4 x TP2
    assert expert_tp_layouts(8, 256, 2048) == [(1, 2, 4), (1, 4, 2), (2, 2, 4), (2, 4, 2), (4, 2, 4), (4, 4, 2)]
    # a stage of 4: DP4 or DP2 with EP2 x TP2; a stage of 2 has no room for both
    assert expert_tp_layouts(4, 128, 1536) == [(1, 2, 2), (2, 2, 2)]
    assert expert_tp_layouts(2, 128, 1536) == []
    # EP must divide the experts, expert TP the intermediate width (6 / 4 does not)
    assert expert_tp_layouts(8, 2, 6) == []
    assert expert_tp_layouts(8, 4, 6) == [(1, 4, 2), (2, 4, 2), (4, 4, 2)]
    # wide stages (NVL72) keep pure expert parallelism
    assert expert_tp_layouts(16, 256, 2048) == []


def test_expert_tp_shape_counts(cat):
    # Qwen3-235B-A22B (128 experts, 1536 wide): DP8 attention, experts EP2 x TP4 on 8 GPUs
    s = Shape("qwen3-235b-a22b", "h200-sxm", None, "fp8", "fp8", tp=1, ep=2, moe_tp=4)
    t, ep8 = shape_terms(cat, s), shape_terms(cat, Shape("qwen3-235b-a22b", "h200-sxm", None, "fp8", "fp8", tp=1, ep=8))
    assert (t.gpus, t.dp_attn, t.moe_tp) == (8, 8, 4)
    # 128 / 2 = 64 expert slices per GPU and layer, each a quarter expert; EP8: 16 whole experts
    assert (t.experts_per_gpu_layer, ep8.experts_per_gpu_layer) == (64.0, 16.0)
    assert t.expert_bytes_per_expert_gpu * 4 == pytest.approx(ep8.expert_bytes_per_expert_gpu)
    # the same bytes per GPU as pure EP8: weights, KV room
    assert t.weight_bytes_gpu == pytest.approx(ep8.weight_bytes_gpu)
    assert t.usable_bytes == pytest.approx(ep8.usable_bytes)


def test_unpruned_tables_offer_expert_tp_and_pure_ep_dominates_it(cat):
    """Every expert-TP row of the unpruned table has a pure-EP sibling (same GPUs, attention TP
    and batch cap) with the same memory limit, no longer latencies and, where the expert-TP row
    meets the targets, at least its capacity: what pruning them before evaluation rests on."""
    for model in ("qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3"):
        t = build_tables(_problem(cat, model), cat, prune=False)[0]
        key = lambda c, ep, mtp: (c.system, c.quant, c.kv_dtype, c.tp, c.pp, ep, mtp, c.max_batch, c.partition)  # noqa: E731
        rows = {key(c, c.ep, c.moe_tp): c for c in t.candidates}
        expert_tp = [c for c in t.candidates if c.moe_tp]
        assert expert_tp, model
        compared = 0
        for c in expert_tp:
            assert c.gpus_per_replica == c.ep * c.moe_tp
            s = rows.get(key(c, c.ep * c.moe_tp, 0))
            if s is None:  # the sibling's row at this batch cap was rejected (capacity below 1 mrps)
                continue
            compared += 1
            assert s.max_concurrency == c.max_concurrency, c.label()
            assert s.tpot_p99_ms <= c.tpot_p99_ms + 1e-9 and s.ttft_min_ms <= c.ttft_min_ms + 1e-9, c.label()
            if not c.violations:
                assert not s.violations and s.capacity_rps_per_replica >= c.capacity_rps_per_replica, c.label()
        assert compared > 0.9 * len(expert_tp)


def test_pruned_tables_record_why_expert_tp_was_not_evaluated(cat):
    t = build_tables(_problem(cat, "deepseek-v3"), cat)[0]
    assert not any(c.moe_tp for c in t.candidates)
    why = [r for r in t.rejected if "MoE-TP" in r.what]
    assert why and all("dominated by TP" in r.reason for r in why)
    assert any(r.what.endswith("TP1 EP2 MoE-TP4") and "TP1 EP8" in r.reason for r in why)


def test_pruning_before_evaluation_keeps_the_optimum(cat):
    # CP-SAT over the unpruned table (expert-TP rows evaluated) = brute force on the pruned one
    problem = _problem(cat, "qwen3-235b-a22b", rps=3.0, quants=["fp8"])
    full = build_tables(problem, cat, prune=False)
    assert any(c.moe_tp for c in full[0].candidates)
    sol = FleetModel(encode(full, problem.fleet)).solve(30, 8)
    ref = brute_force(encode(build_tables(problem, cat), problem.fleet))
    assert ref.cost_cents is not None and sol.cost_cents == ref.cost_cents


def test_expert_tp_candidate_is_its_estimate_and_verifies(cat):
    problem = _problem(cat, "deepseek-v3", rps=0.2, quants=["fp8"])
    (d,) = problem.models
    t = build_tables(problem, cat, prune=False)[0]
    c = max((c for c in t.candidates if c.moe_tp and not c.violations and c.gpus_per_replica == 8), key=lambda c: c.capacity_rps_per_replica)
    # the row is the one-shape estimate of the shape with its expert TP
    terms = demand_terms(cat, d, shape_terms(cat, Shape("deepseek-v3", "h200-sxm", c.system, "fp8", c.kv_dtype,
                                                        c.tp, 1, c.ep, c.moe_tp)))
    assert c.tpot_p99_ms == pytest.approx(estimate_terms(terms, 4000, 1000, c.max_batch).tpot_ms, rel=1e-9)
    assert "MoE-TP" in c.label()
    # a plan serving the load on it verifies; the same deployment without its expert TP does not
    plan = api.solve(problem, cat)
    assert plan.status.has_plan and sum(dep.total_gpus for dep in plan.deployments) == 8
    load = sum(dep.load_rps for dep in plan.deployments)
    assert c.capacity_rps_per_replica >= load
    dep = deployment(c, d, 1, load)
    assert dep.moe_tp == c.moe_tp and dep.shape == c.shape
    swapped = dataclasses.replace(plan, deployments=(dep,), cost_usd_per_hour=dep.cost_usd_per_hour)
    assert [v for v in violations(swapped, problem, cat) if v.family != "cost"] == []
    lied = dataclasses.replace(swapped, deployments=(dataclasses.replace(dep, shape=dataclasses.replace(dep.shape, moe_tp=0)),))
    assert violations(lied, problem, cat)


ARGS = ["estimate", "--model", "qwen3-235b-a22b", "--gpu", "h200-sxm", "--quant", "fp8", "--kv-dtype", "fp8",
        "--isl", "4000", "--osl", "1000", "--concurrency", "64"]


def test_estimate_takes_expert_tp(cat):
    r = CliRunner().invoke(main, ARGS + ["--tp", "1", "--dp", "8", "--ep", "2", "--moe-tp", "4", "--json"])
    assert r.exit_code == 0, r.output
    import json

    out = json.loads(r.output)
    assert (out["gpus"], out["moe_tp"], out["dp_attn"]) == (8, 4, 8)


@pytest.mark.parametrize("flags, names", [
    (["--tp", "1", "--ep", "3", "--moe-tp", "2"], "ep=3"),             # EP does not divide 128 experts
    (["--tp", "1", "--ep", "2", "--moe-tp", "5"], "moe_tp=5"),         # 1536 / 5
    (["--tp", "4", "--ep", "3", "--moe-tp", "2"], "--moe-tp"),         # 6 GPUs, TP4
    (["--tp", "1", "--dp", "4", "--ep", "2", "--moe-tp", "4"], "--dp"),  # DP4 x TP1 != EP2 x TP4
])
def test_estimate_bad_expert_tp_is_one_line(flags, names):
    r = CliRunner().invoke(main, ARGS + flags)
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and names in lines[0], r.output
