"""The fleet decomposition (solver.optimize.decompose) against CP-SAT alone: where the shared
limits do not bind, the models' own optima together are the fleet's proven optimum (the same
cost CP-SAT proves); where they bind, the decomposition's sum stays a lower bound, CP-SAT
answers, and the session's answer costs what CP-SAT's does."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from solver.candidates import TableCache
from solver.catalog import load_catalog
from solver.optimize.cpsat import FleetModel
from solver.optimize.decompose import applies, as_fleet_plan, decompose
from solver.plan import SolveStatus, Termination
from solver.problem import Problem, query_problem
from solver.session import Session

MODELS = ("llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-30b-a3b")
GPUS = ("h100-sxm", "h200-sxm", "a100-80gb", "l40s")


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def cache():
    return TableCache()


def _fleet_problem(cat, rng: random.Random, inventory: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    """Two or three models (distinct), random rates and targets, on a few accelerators."""
    names = rng.sample(MODELS, rng.choice((2, 3)))
    gpus = rng.sample(GPUS, 2)
    parts = [query_problem(m, round(rng.uniform(0.5, 20.0), 2), (1000, 2000, 4000), (200, 300, 600),
                           rng.choice((1500.0, None)), rng.choice((60.0, 80.0)), None, cat=cat,
                           gpus=gpus, min_replicas=rng.choice((1, 2)))
             for m in names]
    models = [p.models[0] for p in parts]
    fleet = parts[0].fleet.model_copy(update={"inventory": inventory}) if inventory else parts[0].fleet
    return parts[0].model_copy(update={"name": "fleet", "models": models, "fleet": fleet})


def test_slack_limits_give_the_proven_optimum_without_cpsat(cat, cache) -> None:
    checked = 0
    rng = random.Random(11)
    for _ in range(12):
        p = _fleet_problem(cat, rng)
        s = Session.prepare(p, cat, cache=cache)
        assert applies(s.ip)
        parts = decompose(s.ip)
        ref = FleetModel(s.ip).solve(20, 1)
        if parts is None:
            assert not ref.status.has_plan or ref.termination is Termination.OPTIMAL
            continue
        whole = as_fleet_plan(s.ip, parts, 0.0)
        assert whole is not None  # no shared limits here
        assert ref.termination is Termination.OPTIMAL
        assert whole.cost_cents == parts.bound_cents == ref.cost_cents
        assert whole.status is SolveStatus.OPTIMAL and whole.gap == 0.0
        s.plan(whole, 0.0)  # the verifier re-checks every constraint
        checked += 1
    assert checked >= 8



def _busiest_accelerator(p: Problem, cat, cache) -> tuple[str, int, int] | None:
    """The accelerator whose GPUs the models' own optima use most, how many, and the optima's
    summed cost in cents (None where the fleet does not decompose or uses fewer than 2 GPUs of
    it)."""
    s = Session.prepare(p, cat, cache=cache)
    parts = decompose(s.ip)
    if parts is None:
        return None
    used: dict[str, int] = {}
    for c, r in zip(s.ip.candidates, parts.replicas):
        acc = s.ip.systems[c.system].accelerator
        used[acc] = used.get(acc, 0) + c.gpus * r
    acc, n = max(used.items(), key=lambda kv: kv[1])
    return (acc, n, parts.bound_cents) if n >= 2 else None


def _tight_fleets(cat, cache, inventory: Callable[[int], int]) -> Iterator[tuple[Problem, int]]:
    """Twelve seeded random fleets, each with its busiest accelerator's inventory set to
    ``inventory(GPUs the models' optima use of it)``, and the optima's summed cost in cents
    (fleets where no accelerator is used twice are skipped)."""
    rng = random.Random(5)
    for _ in range(12):
        p = _fleet_problem(cat, rng)
        busiest = _busiest_accelerator(p, cat, cache)
        if busiest is None:
            continue
        acc, n, bound_cents = busiest
        yield p.model_copy(update={"fleet": p.fleet.model_copy(update={"inventory": {acc: inventory(n)}})}), bound_cents

def test_binding_inventory_keeps_the_bound_and_cpsats_answer(cat, cache) -> None:
    """An inventory below what the models' optima use together: the sum is still a lower bound
    on CP-SAT's optimum, the decomposition's plan is refused, and the session answers what
    CP-SAT proves."""
    checked = 0
    for tight, bound_cents in _tight_fleets(cat, cache, lambda n: n - 1):
        st = Session.prepare(tight, cat, cache=cache)
        parts_t = decompose(st.ip)
        assert parts_t is not None and parts_t.bound_cents == bound_cents
        assert as_fleet_plan(st.ip, parts_t, 0.0) is None
        ref = FleetModel(st.ip).solve(20, 1)
        got = st.solve(20, 1)
        assert got.status is ref.status
        if ref.status.has_plan:
            assert ref.termination is Termination.OPTIMAL
            assert parts_t.bound_cents <= ref.cost_cents == got.cost_cents
            assert got.bound_cents is not None and got.bound_cents >= parts_t.bound_cents
            checked += 1
    assert checked >= 3


def test_own_optima_moved_within_a_binding_inventory(cat, cache) -> None:
    """Where the models' own optima overfill an accelerator's inventory, the moved start
    (within_inventory) fits every shared limit, meets each model's demand and costs no less
    than CP-SAT's proven optimum, and the inventory-priced bound lies between the models'
    optima summed and that optimum."""
    from solver.optimize.brute import owned_cost, provisioned, within_shared_limits
    from solver.optimize.decompose import inventory_bound, within_inventory

    checked = 0
    for tight, _ in _tight_fleets(cat, cache, lambda n: n // 2):
        st = Session.prepare(tight, cat, cache=cache)
        parts_t = decompose(st.ip)
        assert parts_t is not None
        moved = within_inventory(st.ip, parts_t)
        ref = FleetModel(st.ip).solve(20, 1)
        if moved is None:
            continue
        prov = provisioned(st.ip, {i: r for i, r in enumerate(moved.replicas) if r})
        cost = owned_cost(st.ip, prov)
        assert within_shared_limits(st.ip, prov, cost)
        for m, demand in enumerate(st.ip.demand_mrps):
            idx = st.ip.by_model(m)
            assert sum(st.ip.candidates[i].cap_mrps * moved.replicas[i] for i in idx) >= demand
            assert sum(1 for i in idx if moved.replicas[i]) <= st.ip.max_configs
        assert ref.status.has_plan and ref.termination is Termination.OPTIMAL
        assert parts_t.bound_cents <= ref.cost_cents <= cost
        # the inventory priced (Lagrangian): still a lower bound, never below the plain sum
        assert parts_t.bound_cents <= inventory_bound(st.ip, parts_t, cost) <= ref.cost_cents
        checked += 1
    assert checked >= 2
