"""CP-SAT model on hand-built candidate tables: agreement with brute force, pruning safety,
infeasibility cores, inventory, whole nodes, heterogeneous splits, determinism."""

from __future__ import annotations

import random

import pytest

from solver.candidates import Candidate, ModelTable, prune_dominated
from solver.costmodel import Shape
from solver.families import Family, Guard
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.plan import SolveStatus
from solver.problem import Fleet, LatencyTarget, ModelDemand, Slo, TokenLengths, Traffic

SYSTEMS = {"gpu-a": ("sys-a", 8, 2.0, 700.0), "gpu-b": ("sys-b", 8, 3.5, 700.0), "gpu-c": ("sys-c", 4, 1.0, 300.0)}


def demand(name: str, rps: float, headroom: float = 0.0) -> ModelDemand:
    lengths = TokenLengths(p50=100, p90=200, p99=400)
    return ModelDemand(name=name, model="llama-3.1-8b",
                       traffic=Traffic(peak_rps=rps, input_tokens=lengths, output_tokens=lengths),
                       slo=Slo(tpot=LatencyTarget(max_ms=50)), headroom=headroom)


def cand(model: str, gpu: str, gpus: int, cap: float, violations=(), batch: int = 8, quant: str = "fp8") -> Candidate:
    system, per_node, price, tdp = SYSTEMS[gpu]
    return Candidate(
        model=model, shape=Shape("llama-3.1-8b", gpu, system, quant,
        "fp8", gpus), max_batch=batch, gpus_per_replica=gpus, gpus_per_node=per_node,
        usd_per_gpu_hour=price, price_id=f"{gpu}-price", tdp_w=tdp, quality_loss_points=0.0,
        capacity_rps_per_replica=cap, ttft_p99_ms=100.0, ttft_min_ms=50.0, tpot_p99_ms=40.0 if Family.TPOT not in violations else 80.0,
        e2e_p99_ms=1000.0, e2e_min_ms=900.0, service_s=1.0, max_concurrency=64,
        violations=frozenset(violations),
    )


def table(d: ModelDemand, cands: list[Candidate]) -> ModelTable:
    return ModelTable(d, tuple(cands), ())


def solve(tables, fleet: Fleet):
    ip = encode(tables, fleet)
    return ip, FleetModel(ip).solve(time_limit_s=10, workers=1)


def test_single_model_matches_brute_force():
    d = demand("m", 10.0)
    t = table(d, [cand("m", "gpu-a", 1, 1.5), cand("m", "gpu-a", 2, 3.4), cand("m", "gpu-b", 1, 2.6),
                  cand("m", "gpu-c", 1, 0.7)])
    ip, sol = solve([t], Fleet())
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.cost_cents == brute_force(ip).cost_cents
    # the objective is integer cents: GPUs x price x 100
    assert sol.cost_cents == sum(p * s.price_cents_per_gpu for p, s in zip(sol.provisioned, ip.systems))


def _random_fleet(rng: random.Random) -> tuple[list[ModelTable], Fleet]:
    tables = []
    for m in range(rng.choice([1, 2])):
        name = f"m{m}"
        d = demand(name, rng.choice([2.0, 5.0, 7.5]), rng.choice([0.0, 0.2]))
        cands = []
        for _ in range(rng.randint(2, 4)):
            gpu = rng.choice(list(SYSTEMS))
            viol = [Family.TPOT] if rng.random() < 0.15 else []
            cands.append(cand(name, gpu, rng.choice([1, 2, 4]), round(rng.uniform(0.8, 4.0), 3), viol,
                              batch=rng.choice([8, 16, 32])))
        tables.append(table(d, cands))
    inv = {g: rng.choice([4, 8, 16]) for g in SYSTEMS if rng.random() < 0.5} or None
    fleet = Fleet(inventory=inv, whole_nodes=rng.random() < 0.3,
                  power_kw=rng.choice([None, 6.0, 12.0]), budget_usd_per_hour=rng.choice([None, 30.0, 60.0]),
                  max_configs_per_model=rng.choice([1, 2]))
    return tables, fleet


@pytest.mark.parametrize("seed", range(25))
def test_random_small_fleets_match_brute_force(seed):
    tables, fleet = _random_fleet(random.Random(seed))
    ip, sol = solve(tables, fleet)
    ref = brute_force(ip)
    if ref.cost_cents is None:
        assert sol.status is SolveStatus.INFEASIBLE
    else:
        assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == ref.cost_cents


@pytest.mark.parametrize("seed", range(25))
def test_pruning_never_removes_an_optimum(seed):
    rng = random.Random(1000 + seed)
    tables, fleet = _random_fleet(rng)
    # add near-duplicates so that pruning has something to do
    grown = []
    for t in tables:
        extra = [cand(t.name, c.accelerator, c.gpus_per_replica * 2, c.capacity_rps_per_replica * rng.uniform(1.5, 2.5), c.violations, batch=c.max_batch * 2)
                 for c in t.candidates]
        extra += [cand(t.name, c.accelerator, c.gpus_per_replica, c.capacity_rps_per_replica * rng.uniform(0.5, 1.0), c.violations, batch=c.max_batch // 2)
                  for c in t.candidates]
        grown.append(table(t.demand, list(t.candidates) + extra))
    pruned = [table(t.demand, prune_dominated(t.candidates)[0]) for t in grown]
    assert sum(len(t.candidates) for t in pruned) <= sum(len(t.candidates) for t in grown)
    ip_full, full = solve(grown, fleet)
    ip_pruned, part = solve(pruned, fleet)
    assert full.status == part.status
    assert full.cost_cents == part.cost_cents
    # and relaxing any guard keeps the agreement (pruning is safe under every relaxation)
    for g in FleetModel(ip_full).guards:
        a = FleetModel(ip_full).solve(10, 1, relax=frozenset({g}))
        b = FleetModel(ip_pruned).solve(10, 1, relax=frozenset({g}))
        assert a.cost_cents == b.cost_cents, g


def test_pruning_keeps_a_candidate_with_fewer_violations():
    fast = cand("m", "gpu-a", 1, 1.0)
    slow_but_big = cand("m", "gpu-a", 1, 5.0, [Family.TPOT])
    double = cand("m", "gpu-a", 2, 1.9)  # two replicas of `fast` give 2.0 >= 1.9
    kept, dropped = prune_dominated([fast, slow_but_big, double])
    assert kept == [fast, slow_but_big] and dropped == 1
    other_system = cand("m", "gpu-b", 2, 1.9)
    assert other_system in prune_dominated([fast, other_system])[0]


def test_infeasible_tpot_core_names_the_target():
    d = demand("chat", 5.0)
    t = table(d, [cand("chat", "gpu-a", 1, 2.0, [Family.TPOT]), cand("chat", "gpu-b", 2, 4.0, [Family.TPOT])])
    ip = encode([t], Fleet())
    fm = FleetModel(ip)
    assert fm.solve(5, 1).status is SolveStatus.INFEASIBLE
    assert fm.core().guards == (Guard(Family.TPOT, "chat"),)


def test_infeasible_inventory_and_budget_core():
    d = demand("m", 8.0)
    t = table(d, [cand("m", "gpu-a", 1, 1.0), cand("m", "gpu-b", 1, 1.0)])
    # a covers with 8 GPUs but only 4 exist; b costs 8 x 3.5 = 28 $/h > budget 20
    fleet = Fleet(inventory={"gpu-a": 4}, budget_usd_per_hour=20.0)
    ip = encode([t], fleet)
    fm = FleetModel(ip)
    assert fm.solve(5, 1).status is SolveStatus.INFEASIBLE
    assert set(fm.core().guards) == {Guard(Family.INVENTORY, "gpu-a"), Guard(Family.BUDGET)}
    assert brute_force(ip).cost_cents is None


def test_no_candidates_gives_an_empty_core():
    ip = encode([table(demand("m", 1.0), [])], Fleet())
    fm = FleetModel(ip)
    assert fm.solve(5, 1).status is SolveStatus.INFEASIBLE
    assert fm.core().guards == () and fm.core().proven


def test_heterogeneous_split_when_cheap_type_is_scarce():
    d = demand("m", 10.0)
    t = table(d, [cand("m", "gpu-a", 1, 1.0), cand("m", "gpu-b", 1, 1.0)])
    ip, sol = solve([t], Fleet(inventory={"gpu-a": 6}))
    reps = dict(zip([c.accelerator for c in ip.source], sol.replicas))
    assert reps == {"gpu-a": 6, "gpu-b": 4}
    assert sol.cost_cents == 6 * 200 + 4 * 350 == brute_force(ip).cost_cents
    # with one configuration per model the split is impossible: all on gpu-b
    ip1, sol1 = solve([t], Fleet(inventory={"gpu-a": 6}, max_configs_per_model=1))
    assert sol1.cost_cents == 10 * 350


def test_whole_nodes_and_inventory_packing():
    d = demand("m", 3.0)
    t = table(d, [cand("m", "gpu-c", 1, 1.0), cand("m", "gpu-a", 1, 1.0)])
    # per GPU gpu-c is cheapest; 3 GPUs in 4-GPU nodes cost 4 GPUs when whole nodes are bought
    ip, sol = solve([t], Fleet(whole_nodes=True))
    assert sol.cost_cents == 4 * 100 and sum(sol.nodes) == 1
    # whole nodes and an inventory of 3 gpu-c GPUs (less than one node): gpu-a's 8-GPU node
    ip2, sol2 = solve([t], Fleet(whole_nodes=True, inventory={"gpu-c": 3}))
    assert sol2.cost_cents == 8 * 200 == brute_force(ip2).cost_cents
    # without whole nodes the same inventory lets 3 gpu-c GPUs do it
    ip3, sol3 = solve([t], Fleet(inventory={"gpu-c": 3}))
    assert sol3.cost_cents == 3 * 100


def test_multi_model_share_inventory_and_power():
    a, b = demand("a", 4.0), demand("b", 4.0)
    ta = table(a, [cand("a", "gpu-c", 1, 1.0), cand("a", "gpu-b", 1, 1.0)])
    tb = table(b, [cand("b", "gpu-c", 1, 1.0), cand("b", "gpu-b", 1, 1.0)])
    ip, sol = solve([ta, tb], Fleet(inventory={"gpu-c": 6}, power_kw=5.0))
    # 6 x 300 W + 2 x 700 W = 3.2 kW fits; all 6 gpu-c shared between the two models
    ref = brute_force(ip)
    assert sol.cost_cents == ref.cost_cents == 6 * 100 + 2 * 350
    ip2, sol2 = solve([ta, tb], Fleet(inventory={"gpu-c": 6}, power_kw=3.0))
    assert sol2.status is SolveStatus.INFEASIBLE and brute_force(ip2).cost_cents is None


def test_solves_are_deterministic():
    tables, fleet = _random_fleet(random.Random(7))
    ip = encode(tables, fleet)
    first = FleetModel(ip).solve(10, 8)
    for _ in range(3):
        again = FleetModel(ip).solve(10, 8)
        assert again.replicas == first.replicas and again.cost_cents == first.cost_cents


def test_only_the_cpsat_module_imports_ortools():
    import subprocess
    import sys

    code = ("import sys, solver.verify, solver.candidates, solver.optimize.encode, solver.optimize.brute, "
            "solver.plan, solver.scaling, solver.queueing; print(any(m.startswith('ortools') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_three_family_core_config_cap_and_two_inventories():
    d = demand("m", 10.0)
    t = table(d, [cand("m", "gpu-a", 1, 1.0), cand("m", "gpu-b", 1, 1.0)])
    fleet = Fleet(inventory={"gpu-a": 6, "gpu-b": 6}, max_configs_per_model=1)
    ip = encode([t], fleet)
    fm = FleetModel(ip)
    assert fm.solve(5, 1).status is SolveStatus.INFEASIBLE
    assert set(fm.core().guards) == {Guard(Family.CONFIGS, "m"), Guard(Family.INVENTORY, "gpu-a"),
                              Guard(Family.INVENTORY, "gpu-b")}
    # each member alone lifted makes it feasible (the core is minimal)
    for g in fm.core().guards:
        assert fm.solve(5, 1, relax=frozenset({g})).status is SolveStatus.OPTIMAL
