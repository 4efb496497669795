"""solver.optimize.encode directly: integer scaling that never flatters a plan."""

from __future__ import annotations

from test_optimizer import cand, demand, table

from solver.families import Family
from solver.optimize.encode import encode
from solver.problem import Fleet


def test_scaling_rounds_against_the_plan() -> None:
    d = demand("m", 2.0005, headroom=0.1)  # load 2.20055 req/s -> 2201 milli-req/s (up)
    c = cand("m", "gpu-a", 2, 0.9999)  # 999 milli-req/s (down)
    ip = encode([table(d, [c])], Fleet(power_kw=1.2345, budget_usd_per_hour=10.019))
    (ic,) = ip.candidates
    assert ip.demand_mrps == (2201,)
    assert ic.cap_mrps == 999
    assert ic.max_replicas == 3  # ceil(2201 / 999)
    assert ic.cost_cents == 2 * 200 and ic.power_w == 2 * 700
    assert ip.power_limit_w == 1234 and ip.budget_cents == 1001


def test_systems_are_shared_and_indexed_in_first_use_order() -> None:
    t1 = table(demand("a", 1.0), [cand("a", "gpu-b", 1, 1.0), cand("a", "gpu-a", 1, 1.0)])
    t2 = table(demand("b", 1.0), [cand("b", "gpu-a", 2, 1.0, [Family.TPOT])])
    ip = encode([t1, t2], Fleet(inventory={"gpu-a": 4}))
    assert [s.accelerator for s in ip.systems] == ["gpu-b", "gpu-a"]
    assert [c.system for c in ip.candidates] == [0, 1, 1]
    assert ip.by_model(0) == [0, 1] and ip.by_model(1) == [2]
    assert ip.candidates[2].violations == frozenset({Family.TPOT})
    assert ip.source[2] is t2.candidates[0]
    assert ip.inventory == {"gpu-a": 4} and ip.budget_cents is None and ip.power_limit_w is None


def test_a_candidate_without_capacity_gets_no_replicas() -> None:
    ip = encode([table(demand("m", 1.0), [cand("m", "gpu-a", 1, 0.0004)])], Fleet())
    assert ip.candidates[0].cap_mrps == 0 and ip.candidates[0].max_replicas == 0
