"""Demand over a day and purchasing (issue 12 items 3, 4, 6, 7): hand-computed schedule costs,
CP-SAT against brute force, the independent schedule check, the seed's traffic example, bad
input, traces with an hourly profile, price rows compared like with like, and a real problem."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from solver.catalog import load_catalog, provider_key
from solver.cli import main
from solver.demand import hours_short, profile_stats, served_and_needed
from solver.optimize.purchase import brute_force_schedule, solve_schedule
from solver.problem import load_problem
from solver.purchasing import (ModelNeed, Pool, PurchaseProblem, Schedule, Tier, average_unit_costs,
                               billed_gpu_hours, hourly_costs, lead_hours, tiers_for)
from solver.traffic import expand_trace_traffic
from solver.verify_purchase import schedule_violations

ROOT = Path(__file__).resolve().parent.parent

RES = Tier("g", "reserved", "a", 2.0, "a-r", 12, 0.5)
OD_A = Tier("g", "on-demand", "a", 4.0, "a-od")
SPOT_B = Tier("g", "spot", "b", 1.5, "b-s")
OD_B = Tier("g", "on-demand", "b", 3.0, "b-od")


def need(rates: tuple[float, ...], warm: int = 1, n1: bool = False, model: str = "m") -> ModelNeed:
    return ModelNeed(model, rates, rates, warm, n1, 100.0, 50.0)


# -- hand-computed arithmetic --------------------------------------------------------------------

def assert_cpsat_equals_brute_force(pp: PurchaseProblem, most: int) -> None:
    """CP-SAT's schedule passes the verifier and costs what the brute force over every schedule
    of up to ``most`` replicas per (pool, tier, hour) finds -- or less where it runs more
    replicas than that; where the brute force finds nothing, CP-SAT is infeasible or runs more."""
    res = solve_schedule(pp)
    ref = brute_force_schedule(pp, most)
    if ref.cost_usd is None:  # nothing within the range: the optimiser may use more
        assert res.status == "infeasible" or max(max(c) for c in res.schedule.counts.values()) > most
        return
    assert res.status == "optimal" and res.schedule is not None
    assert schedule_violations(pp, res.schedule) == []
    assert res.cost_usd <= ref.cost_usd + 1e-9  # never worse than the best within the range
    if max(max(c) for c in res.schedule.counts.values()) <= most:  # within the brute force's range: equal
        assert res.cost_usd == pytest.approx(ref.cost_usd, abs=1e-9)


def test_lead_time_bills_the_hour_before_each_start():
    """Counts 0, 2, 1 with a 0.25 h lead: 2 replicas start for hour 1, billed 0.5 GPU-h in hour
    0; nothing starts for hours 2 or 0 (cyclic). A reserved count is billed flat."""
    assert billed_gpu_hours([0, 2, 1], "on-demand", 1, 0.25) == [0.5, 2.0, 1.0]
    assert billed_gpu_hours([3, 1, 2], "on-demand", 2, 0.5) == [2 * (3 + 0.0), 2 * (1 + 0.5), 2 * (2 + 0.5)]
    assert billed_gpu_hours([2, 2, 2], "reserved", 4, 0.5) == [8.0, 8.0, 8.0]
    assert lead_hours(4.0) == 0.002 and lead_hours(3.6) == 0.001 and lead_hours(0.0) == 0.0


def test_three_hour_mix_hand_computed():
    """Needs 5, 25, 12 req/s; a replica serves 10; spot counts at 0.8 x 10 = 8. Reserved 1 at $2
    (3 h = $6) + spot 0, 2, 1 at $1.50 (3 GPU-h = $4.50, plus 2 starts x 0.25 h = $0.75):
    $11.25. Cheaper than any other mix (all on-demand at b: 1,3,2 = 6 GPU-h x $3 + starts)."""
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.25),)
    pp = PurchaseProblem(pools, (RES, OD_A, SPOT_B), (need((5.0, 25.0, 12.0)),), 3, 0.2)
    hand = Schedule({(0, 0): (1, 1, 1), (0, 2): (0, 2, 1)})
    assert schedule_violations(pp, hand) == []
    assert sum(hourly_costs(pp, hand)) == pytest.approx(11.25)
    res = solve_schedule(pp)
    assert res.status == "optimal" and res.cost_usd == pytest.approx(11.25)
    assert brute_force_schedule(pp, 3).cost_usd == pytest.approx(11.25)


def test_one_provider_per_accelerator_changes_the_mix_hand_computed():
    """Same case, every tier of the accelerator from one provider: provider a only (reserved 2 =
    $12, plus 1 on-demand in hour 1 at $4 = $16; starts at $4 x 0.25 = $1) = $17; provider b
    only (spot needs 1 warm non-spot: on-demand b 1 + spot) costs more; so $17."""
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.25),)
    pp = PurchaseProblem(pools, (RES, OD_A, SPOT_B), (need((5.0, 25.0, 12.0)),), 3, 0.2,
                         one_provider="accelerator")
    res = solve_schedule(pp)
    assert res.cost_usd == pytest.approx(17.0)
    assert res.schedule is not None and schedule_violations(pp, res.schedule) == []
    mixed = Schedule({(0, 0): (1, 1, 1), (0, 2): (0, 2, 1)})
    assert any("one_provider" in v for v in schedule_violations(pp, mixed))


def test_unit_costs_over_the_day_hand_computed():
    """$11.25 over 3 h for 5 + 25 + 12 = 42 req over the hours' seconds: mean 14 req/s, 150
    tokens each (100 in, 50 out): $/M blended = 3.75 / (14 x 150 x 3600) x 1e6."""
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.25),)
    pp = PurchaseProblem(pools, (RES, OD_A, SPOT_B), (need((5.0, 25.0, 12.0)),), 3, 0.2)
    u = average_unit_costs(pp, Schedule({(0, 0): (1, 1, 1), (0, 2): (0, 2, 1)}))
    assert u.usd_per_million_tokens == pytest.approx(3.75 / (14 * 150 * 3600) * 1e6)
    assert u.usd_per_million_output_tokens == pytest.approx(3.75 / (14 * 50 * 3600) * 1e6)
    assert u.usd_per_1k_requests == pytest.approx(3.75 / (14 * 3600) * 1e3)


# -- the optimiser against brute force -----------------------------------------------------------

@pytest.mark.parametrize("seed", range(30))
def test_purchasing_mix_equals_brute_force(seed: int):
    rng = random.Random(seed)
    tiers = [Tier("g", "reserved", "a", rng.choice([1.0, 2.0, 2.5]), "a-r", 12),
             Tier("g", "on-demand", "a", rng.choice([3.0, 4.0]), "a-od"),
             rng.choice([Tier("g", "spot", "b", rng.choice([0.5, 1.5]), "b-s"),
                         Tier("g", "owned", "owned", rng.choice([0.0, 1.0]), "fleet.owned")])]
    pools = (Pool("m", "g", "cfg", 1, rng.choice([6.0, 10.0]), rng.choice([0.0, 0.25, 0.5])),)
    rates = tuple(float(rng.randint(1, 14)) for _ in range(3))
    pp = PurchaseProblem(pools, tuple(tiers), (need(rates, warm=rng.randint(1, 2), n1=rng.random() < 0.3),), 3,
                         rng.choice([None, 0.0, 0.25, 0.5]), owned={"g": rng.randint(0, 2)},
                         one_provider=rng.choice(["none", "accelerator"]))
    if seed >= 10:  # hour-by-hour limits (drawn after the rest): budget and power at a share of
        # the unlimited optimum's busiest hour (so that they bind), whole nodes
        pools = (Pool("m", "g", "cfg", rng.choice([1, 2]), pools[0].capacity_rps, pools[0].lead_hours,
                      system="n", gpus_per_node=rng.choice([1, 2, 4])),)
        pp = dataclasses.replace(pp, pools=pools, tdp_w={"g": 700.0}, whole_nodes=rng.random() < 0.5)
        free = solve_schedule(pp).schedule
        if free is not None:
            usd, kw = rng.choice([None, 0.85, 1.0]), rng.choice([None, 0.75, 1.0])
            top_gpus = max(sum(c[h] * pools[0].gpus_per_replica for c in free.counts.values()) for h in range(3))
            pp = dataclasses.replace(pp, budget_usd_per_hour=usd and round(usd * max(hourly_costs(pp, free)), 2),
                                     power_kw=kw and round(kw * top_gpus * 0.7, 2))
    assert_cpsat_equals_brute_force(pp, 3)
    # beyond it the optimum is cheaper or ties (whole nodes: 3 or 4 replicas fill one node alike)


def test_budget_per_hour_flattens_the_mix_hand_computed():
    """Needs 10, 30, 10; a replica serves 10. Unlimited: reserved 1 ($2 every hour) + 2
    on-demand in hour 1 ($8): $14, hours cost 2, 10, 2. Within $8/h: reserved 2 ($4 every hour)
    + 1 on-demand in hour 1 ($4): hours 4, 8, 4 = $16; within $7/h: reserved 3 = $18; within
    $5.99/h nothing serves hour 1."""
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.0),)
    base = PurchaseProblem(pools, (RES, OD_A), (need((10.0, 30.0, 10.0)),), 3, None)
    assert solve_schedule(base).cost_usd == pytest.approx(14.0)
    for budget, cost in ((8.0, 16.0), (7.0, 18.0)):
        pp = dataclasses.replace(base, budget_usd_per_hour=budget)
        res = solve_schedule(pp)
        assert res.status == "optimal" and res.cost_usd == pytest.approx(cost)
        assert max(hourly_costs(pp, res.schedule)) <= budget and schedule_violations(pp, res.schedule) == []
        assert brute_force_schedule(pp, 3).cost_usd == pytest.approx(cost)
    assert solve_schedule(dataclasses.replace(base, budget_usd_per_hour=5.99)).status == "infeasible"
    over = Schedule({(0, 0): (1, 1, 1), (0, 1): (0, 2, 0)})
    assert any("hour 1: cost" in v and "budget" in v
               for v in schedule_violations(dataclasses.replace(base, budget_usd_per_hour=8.0), over))


def test_power_per_hour_limits_spot_hand_computed():
    """700 W GPUs. Needs 10, 30, 10; on-demand $4 serves 10, spot $1.50 counts 5 (allowance 0.5),
    one warm non-spot replica. Unlimited: hour 1 = 1 on-demand + 4 spot (5 GPUs, $10): $18.
    2.8 kW (4 GPUs): 2 on-demand + 2 spot ($11): $19. 2.1 kW (3 GPUs): 3 on-demand ($12): $20."""
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.0),)
    spot = Tier("g", "spot", "a", 1.5, "a-s")
    base = PurchaseProblem(pools, (OD_A, spot), (need((10.0, 30.0, 10.0)),), 3, 0.5, tdp_w={"g": 700.0})
    for kw, cost in ((None, 18.0), (2.8, 19.0), (2.1, 20.0)):
        pp = dataclasses.replace(base, power_kw=kw)
        res = solve_schedule(pp)
        assert res.status == "optimal" and res.cost_usd == pytest.approx(cost), kw
        assert schedule_violations(pp, res.schedule) == []
        assert brute_force_schedule(pp, 4).cost_usd == pytest.approx(cost)
    hot = dataclasses.replace(base, power_kw=2.1)
    assert any("hour 1: power 3.5 kW > 2.1 kW" in v
               for v in schedule_violations(hot, Schedule({(0, 0): (1, 1, 1), (0, 1): (0, 4, 0)})))


def test_whole_nodes_bill_every_gpu_of_a_node_each_hour_hand_computed():
    """Nodes of 4 GPUs, 1-GPU replicas serving 10; needs 10, 30, 10. Per replica: reserved 1 +
    on-demand 2 in hour 1 = $14; in whole nodes that is a reserved node ($8/h) + an on-demand
    node in hour 1 ($16) = $40, while one reserved node holding 3 replicas all day is $24."""
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.0, system="n4", gpus_per_node=4),)
    pp = PurchaseProblem(pools, (RES, OD_A), (need((10.0, 30.0, 10.0)),), 3, None, whole_nodes=True)
    split = Schedule({(0, 0): (1, 1, 1), (0, 1): (0, 2, 0)})
    assert hourly_costs(pp, split) == pytest.approx([8.0, 24.0, 8.0])
    res = solve_schedule(pp)
    assert res.status == "optimal" and res.cost_usd == pytest.approx(24.0)
    assert set(res.schedule.counts) == {(0, 0)}  # reserved replicas only, in one node
    assert brute_force_schedule(pp, 3).cost_usd == pytest.approx(24.0)
    assert solve_schedule(dataclasses.replace(pp, whole_nodes=False)).cost_usd == pytest.approx(14.0)


# -- replicas loading for the next hour hold their GPUs ------------------------------------------

G_OD = Tier("g", "on-demand", "a", 2.0, "g-od")
K_OD = Tier("k", "on-demand", "a", 3.0, "k-od")
SWAP_POOLS = (Pool("A", "g", "cfg", 1, 10.0, 0.25), Pool("A", "k", "cfg", 1, 10.0, 0.25),
              Pool("B", "g", "cfg", 1, 10.0, 0.25), Pool("B", "k", "cfg", 1, 10.0, 0.25))


def swap(**kw: object) -> PurchaseProblem:
    """Two hours; model A needs 30 then 10 req/s, model B 10 then 30; 1-GPU replicas of 10 req/s
    on g ($2/GPU-h) or k ($3), lead 0.25 h."""
    return PurchaseProblem(SWAP_POOLS, (G_OD, K_OD), (need((30.0, 10.0), model="A"), need((10.0, 30.0), model="B")),
                           2, None, **kw)  # type: ignore[arg-type]


def test_replicas_loading_for_the_next_hour_count_against_inventory_hand_computed():
    """Inventory 4 g GPUs. All on g: A 3, 1 and B 1, 3 run 4 GPUs each hour ($16) and start 2
    replicas each hour ($0.50 each): $18; but at the end of hour 0 B's 2 replicas for hour 1 are
    loading beside A's 3 and B's 1: 6 g GPUs. Within 4 occupied g GPUs a pool's g GPUs in an hour are
    max(its count now, next hour) (two hours, cyclic): A on g 2, 1 and B on g 1, 2 (2 + 2), the
    rest on k: A on k 1, 0 and B on k 0, 1. Running: 6 g-hours x $2 + 2 k-hours x $3 = $18;
    starts: 2 on g x $0.50 + 2 on k x $0.75 = $2.50; $20.50. With 6 g GPUs the $18 mix fits."""
    all_g = Schedule({(0, 0): (3, 1), (2, 0): (1, 3)})
    assert sum(hourly_costs(swap(), all_g)) == pytest.approx(18.0)
    tight = swap(inventory={"g": 4})
    bad = schedule_violations(tight, all_g)
    assert any(v.startswith("g hour 0: 6 GPUs > inventory 4") for v in bad), bad
    assert any(v.startswith("g hour 1: 6 GPUs > inventory 4") for v in bad), bad  # A's 2 load for hour 0
    hand = Schedule({(0, 0): (2, 1), (1, 1): (1, 0), (2, 0): (1, 2), (3, 1): (0, 1)})
    assert schedule_violations(tight, hand) == []
    assert sum(hourly_costs(tight, hand)) == pytest.approx(20.5)
    res = solve_schedule(tight)
    assert res.status == "optimal" and res.cost_usd == pytest.approx(20.5)
    assert schedule_violations(tight, res.schedule) == []
    assert brute_force_schedule(tight, 3).cost_usd == pytest.approx(20.5)
    assert solve_schedule(swap(inventory={"g": 6})).cost_usd == pytest.approx(18.0)


def test_replicas_loading_for_the_next_hour_count_against_power_and_owned_gpus():
    """Same case, 1 kW per GPU: 4 GPUs run in each hour, but the end of each hour holds A's (or
    B's) 3 running and 3 for the next: 6 kW. Within 5 kW no schedule exists; within 6 kW the $18
    mix fits. Owned g GPUs (free) are held the same way: with 4 owned and no other g tier, the
    owned pools' max(now, next) over both models is at most 4."""
    tdp = {"g": 1000.0, "k": 1000.0}
    all_g = Schedule({(0, 0): (3, 1), (2, 0): (1, 3)})
    assert any(v.startswith("hour 0: power 6 kW > 5 kW") for v in schedule_violations(swap(tdp_w=tdp, power_kw=5.0), all_g))
    assert solve_schedule(swap(tdp_w=tdp, power_kw=5.0)).status == "infeasible"
    assert solve_schedule(swap(tdp_w=tdp, power_kw=6.0)).cost_usd == pytest.approx(18.0)
    owned = PurchaseProblem(SWAP_POOLS, (Tier("g", "owned", "owned", 0.0, "fleet.owned"), K_OD),
                            (need((30.0, 10.0), model="A"), need((10.0, 30.0), model="B")), 2, None, owned={"g": 4})
    bad = schedule_violations(owned, Schedule({(0, 0): (3, 1), (2, 0): (1, 3)}))
    assert any(v.startswith("g hour 0: 6 owned GPUs in use > 4 owned") for v in bad), bad
    res = solve_schedule(owned)
    # k pays for what 4 owned GPUs cannot hold: A 3 + B 3 at the hours' ends need 2 k replicas
    # running one hour each (A's hour 0, B's hour 1): $6 + two starts x $0.75 = $7.50
    assert res.status == "optimal" and res.cost_usd == pytest.approx(7.5)
    assert schedule_violations(owned, res.schedule) == []
    assert brute_force_schedule(owned, 3).cost_usd == pytest.approx(7.5)


@pytest.mark.parametrize("seed", range(8))
def test_loading_replicas_within_limits_equal_brute_force(seed: int):
    """Two models share accelerator g (inventory or power binding, sometimes whole nodes and
    owned GPUs) over two hours with lead times: CP-SAT equals the brute force over every
    schedule of up to 3 replicas per pool and tier."""
    rng = random.Random(100 + seed)
    gpr = rng.choice([1, 2])
    lead = rng.choice([0.25, 0.5])
    node = rng.choice([1, 2, 4])
    pools = (Pool("A", "g", "cfg", gpr, 10.0, lead, "n", node), Pool("B", "g", "cfg", gpr, 10.0, lead, "n", node))
    tiers = (Tier("g", "on-demand", "a", rng.choice([2.0, 3.0]), "g-od"),
             rng.choice([Tier("g", "reserved", "a", 1.5, "g-r", 12), Tier("g", "owned", "owned", 0.5, "fleet.owned")]))
    needs = (need((float(rng.randint(10, 30)), float(rng.randint(1, 10))), model="A"),
             need((float(rng.randint(1, 10)), float(rng.randint(10, 30))), model="B"))
    pp = PurchaseProblem(pools, tiers, needs, 2, None, owned={"g": rng.choice([0, 2, 4])}, tdp_w={"g": 1000.0},
                         whole_nodes=rng.random() < 0.4)
    running = max(math.ceil(needs[0].need_rps[h] / 10) + math.ceil(needs[1].need_rps[h] / 10) for h in range(2))
    running += rng.choice([0, 1])  # limits at 1-2 replicas above the busiest hour's running need
    if rng.random() < 0.5:
        pp = dataclasses.replace(pp, inventory={"g": (running + 1) * gpr})
    else:
        pp = dataclasses.replace(pp, power_kw=(running + 1) * gpr)
    assert_cpsat_equals_brute_force(pp, 3)


# -- mixed disaggregated units: each pool's GPUs on its own accelerator ---------------------------

def unit_case(**kw: object) -> PurchaseProblem:
    """Needs 10, 20, 10 req/s over 3 hours. A mixed unit: its decode part 1 GPU of g ($3) serving
    10 req/s, its prefill part 2 GPUs of k ($1) serving nothing alone; or an aggregated replica of
    2 g GPUs ($6) serving 10. A spot g tier at $0.50 with allowance 0."""
    pools = (Pool("m", "g", "unit decode", 1, 10.0, 0.0), Pool("m", "k", "unit prefill", 2, 0.0, 0.0, unit_of=0),
             Pool("m", "g", "aggregated", 2, 10.0, 0.0))
    tiers = (Tier("g", "on-demand", "a", 3.0, "g-od"), Tier("k", "on-demand", "a", 1.0, "k-od"),
             Tier("g", "spot", "a", 0.5, "g-spot"))
    return PurchaseProblem(pools, tiers, (need((10.0, 20.0, 10.0)),), 3, kw.pop("spot", None), **kw)  # type: ignore[arg-type]


def test_mixed_unit_parts_run_together_on_their_own_accelerators_hand_computed():
    """A unit costs $3 + 2 x $1 = $5 an hour against $6 for the aggregated replica: units 1, 2, 1
    = $20. With 2 k GPUs (one unit's prefill part) hour 1 runs 1 unit + 1 aggregated replica:
    $5 + $11 + $5 = $21. A decode part without its prefill part (or the reverse) is flagged; no
    part of a unit runs on spot (a lost part would take the unit's capacity down with it)."""
    pp = unit_case()
    hand = Schedule({(0, 0): (1, 2, 1), (1, 1): (1, 2, 1)})
    assert schedule_violations(pp, hand) == []
    assert hourly_costs(pp, hand) == pytest.approx([5.0, 10.0, 5.0])
    res = solve_schedule(pp)
    assert res.status == "optimal" and res.cost_usd == pytest.approx(20.0)
    assert res.schedule.counts == hand.counts
    assert brute_force_schedule(pp, 2).cost_usd == pytest.approx(20.0)
    tight = unit_case(inventory={"k": 2})
    res = solve_schedule(tight)
    assert res.status == "optimal" and res.cost_usd == pytest.approx(21.0)
    assert schedule_violations(tight, res.schedule) == []
    assert brute_force_schedule(tight, 2).cost_usd == pytest.approx(21.0)
    assert any("k hour 1: 4 GPUs > inventory 2" in v for v in schedule_violations(tight, hand))
    alone = schedule_violations(pp, Schedule({(0, 0): (1, 2, 1), (1, 1): (1, 1, 1)}))
    assert any("pool 1 hour 1: 1 prefill part(s) for 2 unit(s) of pool 0" in v for v in alone), alone
    spot = unit_case(spot=0.0)
    assert not spot.usable(0, 2) and not spot.usable(1, 2) and spot.usable(2, 2)
    # one warm non-spot replica an hour (a unit, $5) and hour 1's other 10 req/s on spot (2 GPUs x $0.50)
    assert solve_schedule(spot).cost_usd == pytest.approx(5.0 + 6.0 + 5.0)
    assert any("runs on spot" in v for v in schedule_violations(spot, Schedule({(0, 2): (1, 2, 1), (1, 1): (1, 2, 1)})))


def test_mixed_unit_warm_minimum_and_configurations_count_units_once():
    """The warm minimum and max_configs_per_model count a unit once (its decode part)."""
    pp = dataclasses.replace(unit_case(), needs=(need((10.0, 20.0, 10.0), warm=2),), max_configs=1)
    res = solve_schedule(pp)
    assert res.status == "optimal" and res.cost_usd == pytest.approx(30.0)  # units 2, 2, 2
    assert schedule_violations(pp, res.schedule) == []
    assert brute_force_schedule(pp, 2).cost_usd == pytest.approx(30.0)


@pytest.mark.parametrize("seed", range(20))
def test_mixed_units_within_limits_equal_brute_force(seed: int):
    """A mixed unit (decode part on g, prefill part on k) beside an aggregated g replica over two
    hours, with lead times, reserved or spot tiers, whole nodes, an inventory on either
    accelerator and one configuration per model drawn at random: CP-SAT equals the brute force
    over every schedule of up to 2 replicas per pool and tier."""
    rng = random.Random(seed)
    lead = rng.choice([0.0, 0.25])
    pools = (Pool("m", "g", "dec", rng.choice([1, 2]), 10.0, lead, "ng", rng.choice([1, 2])),
             Pool("m", "k", "pre", rng.choice([1, 2, 4]), 0.0, lead, "nk", rng.choice([1, 2, 4]), unit_of=0),
             Pool("m", "g", "agg", 2, rng.choice([8.0, 10.0]), lead, "ng", 2))
    tiers = (Tier("g", "on-demand", "a", rng.choice([2.0, 3.0]), "g-od"),
             Tier("k", "on-demand", "a", rng.choice([0.5, 1.0]), "k-od"),
             rng.choice([Tier("g", "reserved", "a", 1.5, "g-r", 12), Tier("k", "reserved", "a", 0.4, "k-r", 12),
                         Tier("g", "spot", "a", 0.5, "g-s")]))
    rates = tuple(float(rng.randint(5, 25)) for _ in range(2))
    pp = PurchaseProblem(pools, tiers, (need(rates, warm=rng.choice([1, 2])),), 2, rng.choice([None, 0.2]),
                         whole_nodes=rng.random() < 0.4,
                         inventory=rng.choice([None, {"k": rng.choice([2, 4, 6])}, {"g": rng.choice([3, 4, 6])}]),
                         max_configs=rng.choice([None, 1]))
    assert_cpsat_equals_brute_force(pp, 2)


# -- the independent check ----------------------------------------------------------------------

def test_verifier_finds_each_broken_constraint():
    pools = (Pool("m", "g", "cfg", 2, 10.0, 0.0),)
    pp = PurchaseProblem(pools, (RES, OD_A, SPOT_B), (need((5.0, 25.0, 12.0), warm=2, n1=True),), 3, None,
                         inventory={"g": 8})
    bad = schedule_violations(pp, Schedule({(0, 0): (1, 2, 1), (0, 1): (1, 0, 1), (0, 2): (0, 1, 0)}))
    text = "\n".join(bad)
    assert "reserved replicas change" in text
    assert "spot replicas but no spot allowance" in text
    assert "m hour 1: capacity" in text and "less the largest replica" in text
    ok = Schedule({(0, 0): (2, 2, 2), (0, 1): (0, 2, 1)})
    assert schedule_violations(pp, ok) == []
    over = Schedule({(0, 0): (2, 2, 2), (0, 1): (0, 3, 1)})  # 5 replicas x 2 GPUs > 8
    assert any("inventory" in v for v in schedule_violations(pp, over))
    cold = PurchaseProblem(pools, (RES, OD_A, SPOT_B), (need((5.0, 5.0, 5.0), warm=2),), 3, 0.2)
    assert any("warm minimum" in v for v in schedule_violations(cold, Schedule({(0, 2): (3, 3, 3)})))


# -- the seed's traffic example ------------------------------------------------------------------

SEED_DAY = [47, 18, 15, 15, 16, 20, 25, 30, 90, 125, 150, 161, 186, 155, 140, 110,
            60, 40, 32, 29, 27, 26, 24, 19]
"""A day with average 65 req/s, p95 160 and p99 180 (the seed's example), busy for 8 hours."""


def test_seed_example_sizing_for_the_average_misses_eight_hours():
    s = profile_stats(SEED_DAY)
    assert s["mean"] == pytest.approx(65.0)
    assert s["p95"] == pytest.approx(160.0, abs=0.5) and s["p99"] == pytest.approx(180.0, abs=0.5)
    assert hours_short(SEED_DAY, s["mean"]) == 8  # sizing for the average: 8 hours under-provisioned
    assert hours_short(SEED_DAY, s["p95"]) == 2 and hours_short(SEED_DAY, s["p99"]) == 1


def test_hours_are_sized_with_the_peaks_burst_factor(tmp_path: Path):
    """peak_rps 2x the busiest hour: every hour needs 2x its rate x (1 + headroom)."""
    data = yaml.safe_load((ROOT / "problems/diurnal-chat.yaml").read_text())
    data["models"][0]["traffic"]["hourly_rps"] = [float(x) for x in SEED_DAY]
    data["models"][0]["traffic"]["peak_rps"] = 372.0
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data))
    d = load_problem(f).models[0]
    served, needed = served_and_needed(d, 24)
    assert served[12] == 186.0 and needed[12] == pytest.approx(372.0 * 1.2)
    assert needed[0] == pytest.approx(47 * 2 * 1.2)


# -- bad input -----------------------------------------------------------------------------------

def _problem(tmp_path: Path, **traffic: object) -> Path:
    data = yaml.safe_load((ROOT / "problems/diurnal-chat.yaml").read_text())
    data["models"][0]["traffic"].update(traffic)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


@pytest.mark.parametrize("rates, words", [
    ([1.0] * 23, "needs 24 (a day) or 168 (a week) hourly rates, got 23"),
    ([-1.0] + [2.0] * 23, "hour 0: rate -1 is outside"),
    ([0.0] * 24, "every hourly rate is 0"),
])
def test_bad_hourly_rates_one_line_exit_2(tmp_path: Path, rates: list[float], words: str):
    res = CliRunner().invoke(main, ["purchase", str(_problem(tmp_path, hourly_rps=rates))])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines() if hasattr(res, "stderr") else res.output.strip().splitlines()
    assert len(lines) == 1 and "models[0:chat].traffic.hourly_rps" in lines[0] and words in lines[0]


def test_bad_spot_allowance_one_line_exit_2(tmp_path: Path):
    f = _problem(tmp_path)
    res = CliRunner().invoke(main, ["purchase", str(f), "--spot-allowance", "1.5"])
    assert res.exit_code == 2 and "--spot-allowance" in res.output and len(res.output.strip().splitlines()) == 1
    data = yaml.safe_load(f.read_text())
    data["purchasing"]["spot_interruption_allowance"] = -0.1
    f.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["purchase", str(f)])
    assert res.exit_code == 2 and "purchasing.spot_interruption_allowance" in res.output


def test_peak_below_the_busiest_hour_is_refused(tmp_path: Path):
    res = CliRunner().invoke(main, ["check", str(_problem(tmp_path, peak_rps=5.0))])
    assert res.exit_code == 2 and "below the busiest hour" in res.output


# -- traces with an hourly profile ---------------------------------------------------------------

def _day_trace(path: Path, per_hour: list[int]) -> None:
    rows = ["timestamp_s,input_tokens,output_tokens"]
    for h, n in enumerate(per_hour):
        rows += [f"{h * 3600 + i * 3600 / n:.3f},100,20" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")


def test_trace_hourly_profile_becomes_hourly_rps(tmp_path: Path):
    counts = [36 * (1 + (h % 6)) for h in range(24)]
    _day_trace(tmp_path / "day.csv", counts)
    data = {"models": [{"traffic": {"trace": "day.csv", "window": "60s", "hourly": True}}]}
    block = expand_trace_traffic(data, tmp_path)["models"][0]["traffic"]
    assert block["hourly_rps"] == pytest.approx([c / 3600 for c in counts])
    assert block["peak_rps"] >= max(block["hourly_rps"])
    _day_trace(tmp_path / "short.csv", counts[:5])
    from solver.errors import InputError

    with pytest.raises(InputError, match=r"traffic.hourly: the trace covers 5 hour\(s\)"):
        expand_trace_traffic({"models": [{"traffic": {"trace": "short.csv", "hourly": True}}]}, tmp_path)


# -- prices --------------------------------------------------------------------------------------

def test_reserved_and_spot_rows_are_compared_like_with_like():
    """Every row naming an on-demand reference is the same accelerator and provider and cheaper
    than it; the GCP H100 tiers carry their terms and discounts."""
    cat = load_catalog()
    refs = [p for p in cat.prices.values() if p.on_demand_ref]
    assert len(refs) >= 7
    for p in refs:
        ref = cat.prices[p.on_demand_ref]
        assert ref.pricing == "on-demand" and ref.accelerator == p.accelerator
        assert provider_key(ref.provider) == provider_key(p.provider)
        assert p.usd_per_gpu_hour < ref.usd_per_gpu_hour
    tiers = {t.price_id: t for t in tiers_for(cat, "h100-sxm", "GCP", True, True)}
    assert tiers["h100-sxm-gcp-cud-3y-reserved"].term_months == 36
    assert tiers["h100-sxm-gcp-cud-3y-reserved"].discount == pytest.approx(1 - 4.858 / 11.0612, abs=1e-4)
    assert {t.kind for t in tiers.values()} == {"on-demand", "reserved", "spot"}


def test_aws_reserved_and_spot_rows_are_read_with_their_on_demand_row():
    """AWS p5/p4d/p4de/p5en/p6-b200/g6e rows (Vantage's EC2 records, 2025-11-30): each reserved or
    spot row was read on the same day from the same source as the on-demand row it references;
    the H100 tiers carry the Reserved Instance terms and their discounts (hand: 1 - 2.9722 /
    6.88 = 56.8% for 3 years, 1 - 5.418 / 6.88 = 21.3% for 1 year)."""
    cat = load_catalog()
    for p in cat.prices.values():
        if p.on_demand_ref:
            ref = cat.prices[p.on_demand_ref]
            assert (ref.date, ref.source) == (p.date, p.source), p.id
    tiers = {t.price_id: t for t in tiers_for(cat, "h100-sxm", "AWS", True, True)}
    assert tiers["h100-sxm-aws-ri-3y-reserved"].term_months == 36
    assert tiers["h100-sxm-aws-ri-3y-reserved"].discount == pytest.approx(0.568, abs=1e-3)
    assert tiers["h100-sxm-aws-ri-1y-reserved"].discount == pytest.approx(0.2125, abs=1e-3)
    assert tiers["h100-sxm-aws-2025-spot"].usd_per_gpu_hour == pytest.approx(28.106467 / 8, abs=1e-4)
    for acc in ("a100-40gb", "a100-80gb", "l40s"):
        assert {t.kind for t in tiers_for(cat, acc, "AWS", True, True)} == {"on-demand", "reserved", "spot"}


# -- a real problem ------------------------------------------------------------------------------

def test_diurnal_chat_schedule_end_to_end():
    res = CliRunner().invoke(main, ["purchase", str(ROOT / "problems/diurnal-chat.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    s = d["schedule"]
    assert d["violations"] == [] and len(s["hourly"]) == 24
    assert {t["provider"] for t in s["tiers"]} == {"gcp"}  # provider: GCP, one_provider: true
    assert s["cost_usd"] < d["peak_plan"]["cost_usd_per_hour"] * 24  # cheaper than the peak plan all day
    reps = [sum(sum(m.values()) for m in r["replicas"].values()) for r in s["hourly"]]
    assert reps[13] > reps[3]  # capacity follows demand
    assert all(sum(m["spot"] for m in r["replicas"].values()) * 0.3 == pytest.approx(r["spot_spare_replicas"])
               for r in s["hourly"])
    mean = d["unit_costs"]["mean"]
    assert mean["usd_per_million_tokens"] == pytest.approx(
        s["cost_usd"] / sum(r["demand_rps"]["chat"] * 3600 for r in s["hourly"])
        / (mean["input_tokens_per_s"] + mean["output_tokens_per_s"]) * mean["requests_per_s"] * 1e6)
    assert np.isfinite(d["unit_costs"]["peak"]["usd_per_1k_requests"])


def test_report_shows_the_schedule_with_its_plot():
    """A problem with hourly demand gets the schedule section, table and plot in every format;
    `fleetplan purchase`'s modules load no matplotlib (only drawing the plot does)."""
    import subprocess
    import sys

    from solver.report import _with_schedule
    from solver.report.content import build_content
    from solver.report.render import to_html, to_json, to_markdown
    from solver.session import solve_problem

    probe = ("import sys, solver.purchase_plan, solver.cli.purchase_cmd; "
             "print('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    cat = load_catalog()
    problem = load_problem(ROOT / "problems/diurnal-chat.yaml", cat)
    plan = solve_problem(problem, cat)
    content = _with_schedule(build_content(cat, problem, plan), cat, 30.0)
    md = to_markdown(content)
    assert "## Demand over the day and purchasing" in md and "averaged over the period" in md
    assert md.count("\n| ") >= 24 + 2
    assert 'id="plot-schedule"' in to_html(content)
    j = to_json(content)["purchasing"]
    assert j["violations"] == [] and len(j["schedule"]["hourly"]) == 24 and "schedule_seconds" not in j
    plain = build_content(cat, load_problem(ROOT / "problems/owned-h100-fleet.yaml", cat), plan)
    assert _with_schedule(plain, cat, 30.0).schedule is None  # no hourly demand: no section
    alt = problem.model_copy(update={"purchasing": problem.purchasing.model_copy(update={"alternatives": 2})})
    offered = _with_schedule(build_content(cat, alt, plan), cat, 30.0).schedule
    assert len(offered["schedule"]["pools"]) > len(j["schedule"]["pools"])  # as `fleetplan purchase` offers


def test_one_provider_fleet_keeps_plan_and_schedule_with_one_provider(tmp_path: Path):
    """``one_provider: fleet`` without a provider: every provider is tried, the cheapest kept;
    the peak plan's prices and every tier of the schedule come from that one provider."""
    data = yaml.safe_load((ROOT / "problems/diurnal-chat.yaml").read_text())
    del data["fleet"]["provider"]
    data["fleet"]["one_provider"] = "fleet"
    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["purchase", str(f), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    cat = load_catalog()
    plan_providers = {provider_key(cat.prices[x["price_id"]].provider) for x in d["peak_plan"]["deployments"]}
    tier_providers = {t["provider"] for t in d["schedule"]["tiers"]}
    assert len(plan_providers) == 1 and tier_providers <= plan_providers and d["violations"] == []
    gcp = CliRunner().invoke(main, ["purchase", str(ROOT / "problems/diurnal-chat.yaml"), "--json"])
    assert d["schedule"]["cost_usd"] <= json.loads(gcp.output)["schedule"]["cost_usd"] + 1e-9


def test_free_owned_gpus_are_not_all_kept_running():
    """Owned GPUs at $0 cost nothing in any count; the schedule still runs only what each hour
    needs (4 owned replicas of 10 req/s: needs 5, 25, 12 -> 1, 3, 2 replicas)."""
    owned = Tier("g", "owned", "owned", 0.0, "fleet.owned")
    pools = (Pool("m", "g", "cfg", 1, 10.0, 0.0),)
    pp = PurchaseProblem(pools, (owned, OD_A), (need((5.0, 25.0, 12.0)),), 3, None, owned={"g": 4})
    res = solve_schedule(pp)
    assert res.cost_usd == 0.0 and res.schedule is not None
    assert res.schedule.counts == {(0, 0): (1, 3, 2)}


def test_purchase_applies_whole_nodes_hour_by_hour(tmp_path: Path):
    """diurnal-chat with ``whole_nodes``: every tier's GPUs are billed in whole 8-GPU nodes each
    hour, so the day costs more than per GPU, and the schedule still verifies."""
    data = yaml.safe_load((ROOT / "problems/diurnal-chat.yaml").read_text())
    data["fleet"]["whole_nodes"] = True
    f = tmp_path / "nodes.yaml"
    f.write_text(yaml.safe_dump(data))
    nodes = json.loads(CliRunner().invoke(main, ["purchase", str(f), "--json"]).output)
    plain = json.loads(CliRunner().invoke(main, ["purchase", str(ROOT / "problems/diurnal-chat.yaml"), "--json"]).output)
    assert nodes["violations"] == [] and nodes["schedule"]["cost_usd"] > plain["schedule"]["cost_usd"] + 1
    for row in nodes["schedule"]["hourly"]:  # the billed GPUs of each hour fill whole nodes
        tiers = {t["kind"]: t["usd_per_gpu_hour"] for t in nodes["schedule"]["tiers"]}
        assert row["cost_usd"] >= 8 * min(tiers.values()) - 1e-9


# -- per-hour re-planning among the configurations offered ---------------------------------------

def test_each_hour_chooses_among_offered_configurations_hand_computed():
    """A 2-GPU configuration serving 25 req/s (the peak plan's) and a 1-GPU one serving 10, both
    $4/GPU-h on demand; needs 10, 35, 10. Peak configuration only: 1, 2, 1 big = $8 + $16 + $8 =
    $32. Both offered, up to 2 configurations an hour: small, big + small, small = $4 + $12 + $4
    = $20. One configuration an hour: $4 + $16 (2 big) + $4 = $24."""
    pools = (Pool("m", "g", "big", 2, 25.0, 0.0), Pool("m", "g", "small", 1, 10.0, 0.0))
    base = PurchaseProblem(pools[:1], (OD_A,), (need((10.0, 35.0, 10.0)),), 3, None)
    assert solve_schedule(base).cost_usd == pytest.approx(32.0)
    for k, cost in ((2, 20.0), (1, 24.0)):
        pp = dataclasses.replace(base, pools=pools, max_configs=k)
        res = solve_schedule(pp)
        assert res.status == "optimal" and res.cost_usd == pytest.approx(cost)
        assert schedule_violations(pp, res.schedule) == []
        assert brute_force_schedule(pp, 2).cost_usd == pytest.approx(cost)
    one = dataclasses.replace(base, pools=pools, max_configs=1)
    mixed = Schedule({(0, 0): (0, 1, 0), (1, 0): (1, 1, 1)})
    assert any("hour 1: 2 configurations > 1" in v for v in schedule_violations(one, mixed))


@pytest.mark.parametrize("seed", range(8))
def test_alternatives_per_hour_equal_brute_force(seed: int):
    rng = random.Random(700 + seed)
    pools = (Pool("m", "g", "big", rng.choice([2, 4]), rng.choice([20.0, 30.0]), rng.choice([0.0, 0.25])),
             Pool("m", "g", "small", 1, rng.choice([8.0, 12.0]), 0.0))
    tiers = (Tier("g", "reserved", "a", rng.choice([1.5, 2.5]), "a-r", 12), OD_A)
    rates = tuple(float(rng.randint(5, 45)) for _ in range(3))
    pp = PurchaseProblem(pools, tiers, (need(rates, warm=1),), 3, None, max_configs=rng.choice([1, 2]))
    assert_cpsat_equals_brute_force(pp, 2)


def test_purchase_offers_alternative_configurations_to_every_hour(tmp_path: Path):
    """diurnal-chat with ``purchasing.alternatives: 2``: the schedule may run two more
    configurations of the model (its cheapest per unit of capacity on the Pareto front of cost
    per replica and capacity) in any hour; it never costs more than the peak configuration alone
    and it verifies."""
    data = yaml.safe_load((ROOT / "problems/diurnal-chat.yaml").read_text())
    data["purchasing"]["alternatives"] = 2
    f = tmp_path / "alt.yaml"
    f.write_text(yaml.safe_dump(data))
    alt = json.loads(CliRunner().invoke(main, ["purchase", str(f), "--json"]).output)
    plain = json.loads(CliRunner().invoke(main, ["purchase", str(ROOT / "problems/diurnal-chat.yaml"), "--json"]).output)
    assert alt["violations"] == []
    assert len(plain["schedule"]["pools"]) < len(alt["schedule"]["pools"]) <= len(plain["schedule"]["pools"]) + 2
    assert alt["schedule"]["cost_usd"] <= plain["schedule"]["cost_usd"] + 1e-9
    bad = dict(data, purchasing=dict(data["purchasing"], alternatives=-1))
    f.write_text(yaml.safe_dump(bad))
    res = CliRunner().invoke(main, ["purchase", str(f)])
    assert res.exit_code == 2 and "alternatives" in res.output and "Traceback" not in res.output
    flag = CliRunner().invoke(main, ["purchase", str(ROOT / "problems/diurnal-chat.yaml"), "--alternatives", "7"])
    assert flag.exit_code == 2 and "--alternatives" in flag.output and "Traceback" not in flag.output


# -- application load over the day ----------------------------------------------------------------

def _chain_problem(tmp_path: Path, app_hourly: list[float] | None, own_hourly: list[float] | None = None,
                   peak: float = 10.0):
    """A router calling a chat model once per request: the application enters at ``peak``
    req/s; the chat model also has 4 req/s of its own at peak."""
    lengths = {"p50": 300, "p90": 600, "p99": 1000}
    chat_traffic = {"peak_rps": 4, "input_tokens": lengths, "output_tokens": lengths}
    if own_hourly is not None:
        chat_traffic["hourly_rps"] = own_hourly
    app = {"name": "assist", "peak_rps": peak, "stages": ["router", "chat"],
           "edges": [{"from": "router", "to": "chat"}]}
    if app_hourly is not None:
        app["hourly_rps"] = app_hourly
    data = {"name": "chain-day", "models": [
        {"name": "router", "model": "llama-3.1-8b", "traffic": {"input_tokens": lengths, "output_tokens": lengths},
         "slo": {"tpot": {"max_ms": 60}}, "headroom": 0},
        {"name": "chat", "model": "llama-3.1-8b", "traffic": chat_traffic, "slo": {"tpot": {"max_ms": 60}},
         "headroom": 0}],
        "applications": [app]}
    f = tmp_path / "chain.yaml"
    f.write_text(yaml.safe_dump(data))
    return load_problem(f)


def test_application_load_follows_its_hourly_curve_hand_computed(tmp_path: Path):
    """Entering 2 req/s for 12 hours, then 5 (peak 10: burst 2): the router needs 10 x 2/5 = 4,
    then 10; it serves the hourly mean, 2 then 5. chat adds its own 4 req/s all day (no own
    profile): needs 4 + 4 = 8, then 14. Without an application profile the load is flat at its
    peak (the earlier behaviour)."""
    from solver.demand import hours_of, model_hours

    curve = [2.0] * 12 + [5.0] * 12
    p = _chain_problem(tmp_path, curve)
    assert hours_of(p) == 24
    served, needed = model_hours(p, p.models[0], 24)
    assert needed == pytest.approx((4.0,) * 12 + (10.0,) * 12) and served == pytest.approx(tuple(curve))
    served, needed = model_hours(p, p.models[1], 24)
    assert needed == pytest.approx((8.0,) * 12 + (14.0,) * 12)
    assert served == pytest.approx((6.0,) * 12 + (9.0,) * 12)
    flat = _chain_problem(tmp_path, None)
    assert model_hours(flat, flat.models[1], 24)[1] == pytest.approx((14.0,) * 24)


def test_application_hourly_profile_bad_input(tmp_path: Path):
    for bad, words in (([1.0] * 23, "24"), ([0.0] * 24, "0"), ([1.0] * 23 + [11.0], "peak_rps")):
        with pytest.raises(Exception) as e:
            _chain_problem(tmp_path, bad)
        assert "hourly_rps" in str(e.value) and words in str(e.value)
    f = tmp_path / "chain.yaml"
    res = CliRunner().invoke(main, ["purchase", str(f)])
    assert res.exit_code == 2 and "applications" in res.output and "hourly_rps" in res.output


def test_purchase_schedules_an_application_that_follows_its_curve(tmp_path: Path):
    """The chain above through ``fleetplan purchase``: quiet hours run fewer router replicas
    than busy ones, and the schedule verifies."""
    _chain_problem(tmp_path, [20.0] * 12 + [100.0] * 12, peak=100.0)
    res = CliRunner().invoke(main, ["purchase", str(tmp_path / "chain.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    rows = d["schedule"]["hourly"]
    assert d["violations"] == [] and rows[0]["demand_rps"]["router"] == pytest.approx(20.0)
    assert rows[0]["capacity_rps"]["router"] < rows[23]["capacity_rps"]["router"]
