"""The cheapest purchasing schedule over the hours (CP-SAT), and a brute-force reference.

Variables, for each pool ``p`` and usable tier ``t`` (:class:`solver.purchasing.PurchaseProblem`):
one count for a reserved tier (held every hour), a count per hour otherwise, and per hour the
replicas started (``>= n[h] - n[h-1]``, cyclic). Constraints per model and hour: capacity counted
(spot at ``1 - allowance``; under N+1 less the largest replica of the model) >= need; non-spot
replicas >= the warm minimum. Per accelerator and hour: GPUs held <= inventory, owned GPUs held
<= owned, where a replica started for hour h+1 (with a lead time) holds its GPUs in hour h too.
Per model and hour: at most ``max_configs`` pools (configurations) with replicas. A mixed
unit's prefill part (``Pool.unit_of``) runs, every hour, as many replicas as its decode part
(each summed over tiers); it counts neither as a configuration nor towards the warm minimum.
Per hour: the cost billed in it <= ``budget_usd_per_hour``, the TDP of every GPU provisioned <=
``power_kw`` (GPUs held, as for inventory); under ``whole_nodes`` the GPUs of each (system, rented
tier) are whole nodes N[h] (``gpus_per_node x N[h] >=`` GPUs running), billed in full, and the
nodes powered and counted against inventory cover the GPUs held.
``one_provider``: a chosen provider per accelerator (or one for the fleet); rented tiers of other
providers hold no replicas. Objective: the period's cost in 1e-7 dollars (price in 1e-4 $ x GPU
x thousandths of an hour), exactly the arithmetic of :func:`solver.purchasing.hourly_costs`;
then, when a tier is free (owned GPUs at $0, which any count ties), a second solve keeps that cost
and takes the fewest replica-hours.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from ortools.sat.python import cp_model

from solver.purchasing import (LEAD_STEPS_PER_HOUR, PurchaseProblem, Schedule, Tier, cap_units, hourly_costs,
                               need_units)

TIE_BREAK_S = 10.0
"""Most seconds the tie-break solve may take (it keeps the optimal cost either way)."""
PRICE_SCALE = 10_000
"""Prices in 1e-4 dollars per GPU-hour (the catalog gives at most four decimals)."""


@dataclass(frozen=True)
class PurchaseResult:
    status: str
    """``optimal``, ``feasible`` (time limit), ``infeasible`` or ``unknown``."""
    schedule: Schedule | None
    cost_usd: float | None
    seconds: float


def _price_units(x: float) -> int:
    return round(x * PRICE_SCALE)


def _lead_units(x: float) -> int:
    return round(x * LEAD_STEPS_PER_HOUR)


def _upper_bound(pp: PurchaseProblem, p: int) -> int:
    """Most replicas of a pool any hour can use: its model's need over one replica, the warm
    minimum, and one spare for N+1 (at full capacity, so spot counted lower may need more:
    divide by the smallest positive counted capacity)."""
    pool = pp.pools[p]
    need = pp.need(pool.model)
    caps = [cap_units(pool.capacity_rps, pp.tiers[t], pp.spot_allowance)
            for t in range(len(pp.tiers)) if pp.usable(p, t)]
    smallest = min([c for c in caps if c > 0], default=1)
    top = max(need_units(x) for x in need.need_rps)
    biggest = _largest(pp, pool.model)
    return math.ceil((top + (biggest if need.n_plus_one else 0)) / smallest) + need.min_warm + 1


def _tdp(pp: PurchaseProblem, accelerator: str) -> int:
    """An accelerator's TDP in whole watts, rounded up (as :mod:`solver.verify_purchase`)."""
    return math.ceil(pp.tdp_w.get(accelerator, 0.0) - 1e-9)


def _largest(pp: PurchaseProblem, model: str) -> int:
    """Capacity units of the model's largest replica (what N+1 takes away)."""
    return max(cap_units(q.capacity_rps, Tier(q.accelerator, "on-demand", "", 0.0), None)
               for q in pp.pools if q.model == model)


def solve_schedule(pp: PurchaseProblem, time_limit_s: float = 30.0, workers: int = 1) -> PurchaseResult:
    """The cheapest schedule (see the module docstring). One worker by default: deterministic."""
    m = cp_model.CpModel()
    H = pp.hours
    n: dict[tuple[int, int], list[cp_model.IntVar]] = {}
    held: dict[tuple[int, int], list[cp_model.LinearExpr]] = {}
    """Replicas holding GPUs in each hour: running, plus loading for the next hour."""
    hour_cost: list[list[cp_model.LinearExpr]] = [[] for _ in range(H)]
    """Cost billed in each hour, 1e-7 dollars."""
    ub = {p: _upper_bound(pp, p) for p in range(len(pp.pools))}
    ub.update({p: ub[q.unit_of] for p, q in enumerate(pp.pools) if q.unit_of is not None})
    for p, pool in enumerate(pp.pools):
        for t, tier in enumerate(pp.tiers):
            if not pp.usable(p, t):
                continue
            price = _price_units(tier.usd_per_gpu_hour) * pool.gpus_per_replica
            in_nodes = pp.whole_nodes and tier.kind != "owned"  # running GPUs billed as nodes below
            if tier.kind == "reserved":
                r = m.NewIntVar(0, ub[p], f"r_{p}_{t}")
                n[p, t] = [r] * H
                held[p, t] = [r] * H
                if not in_nodes:
                    for h in range(H):
                        hour_cost[h].append(price * LEAD_STEPS_PER_HOUR * r)
                continue
            xs = [m.NewIntVar(0, ub[p], f"n_{p}_{t}_{h}") for h in range(H)]
            n[p, t] = xs
            lead = _lead_units(pool.lead_hours)
            if not in_nodes:
                for h in range(H):
                    hour_cost[h].append(price * LEAD_STEPS_PER_HOUR * xs[h])
            held[p, t] = list(xs)
            if lead > 0:
                for h in range(H):
                    up = m.NewIntVar(0, ub[p], f"up_{p}_{t}_{h}")
                    m.Add(up >= xs[h] - xs[h - 1])
                    hour_cost[(h - 1) % H].append(price * lead * up)  # loads in the hour before,
                    held[p, t][(h - 1) % H] = xs[(h - 1) % H] + up    # holding its GPUs there
    provisioned: dict[str, list[list[cp_model.LinearExpr]]] = {}
    """GPUs provisioned per accelerator and hour (whole nodes where asked)."""
    for (p, t), xs in held.items():
        if pp.whole_nodes and pp.tiers[t].kind != "owned":
            continue
        row = provisioned.setdefault(pp.pools[p].accelerator, [[] for _ in range(H)])
        for h in range(H):
            row[h].append(pp.pools[p].gpus_per_replica * xs[h])
    if pp.whole_nodes:
        for system, t in sorted({(pp.pools[p].system, t) for (p, t) in n if pp.tiers[t].kind != "owned"}):
            on = [(p, t2) for (p, t2) in n if t2 == t and pp.pools[p].system == system]
            per_node = pp.pools[on[0][0]].gpus_per_node
            top = -(-sum(ub[p] * pp.pools[p].gpus_per_replica for p, _ in on) // per_node)
            price = _price_units(pp.tiers[t].usd_per_gpu_hour) * per_node
            row = provisioned.setdefault(pp.tiers[t].accelerator, [[] for _ in range(H)])
            for h in range(H):
                nodes = m.NewIntVar(0, top, f"N_{system}_{t}_{h}")
                m.Add(per_node * nodes >= sum(pp.pools[p].gpus_per_replica * n[p, t][h] for p, _ in on))
                hour_cost[h].append(price * LEAD_STEPS_PER_HOUR * nodes)
                busiest = m.NewIntVar(0, 2 * top, f"Nh_{system}_{t}_{h}")  # with replicas loading
                m.Add(per_node * busiest >= sum(pp.pools[p].gpus_per_replica * held[p, t][h] for p, _ in on))
                row[h].append(per_node * busiest)
    cost_terms = [term for terms in hour_cost for term in terms]
    if pp.budget_usd_per_hour is not None:
        limit = math.floor(pp.budget_usd_per_hour * PRICE_SCALE * LEAD_STEPS_PER_HOUR + 1e-6)
        for h in range(H):
            m.Add(sum(hour_cost[h]) <= limit)
    if pp.power_kw is not None:
        watts = math.floor(pp.power_kw * 1000 + 1e-9)
        for h in range(H):
            m.Add(sum(_tdp(pp, a) * sum(row[h]) for a, row in sorted(provisioned.items())) <= watts)
    for q, part in enumerate(pp.pools):  # a mixed unit's prefill part runs with each unit
        if part.unit_of is not None:
            for h in range(H):
                m.Add(sum(xs[h] for (p, _), xs in n.items() if p == q)
                      == sum(xs[h] for (p, _), xs in n.items() if p == part.unit_of))
    if pp.max_configs is not None:  # configurations of a model running in an hour
        for need in pp.needs:
            mine_pools = sorted({p for (p, _) in n if p in pp.configs(need.model)})
            if len(mine_pools) <= pp.max_configs:
                continue
            for h in range(H):
                on = []
                for p in mine_pools:
                    v = m.NewBoolVar(f"v_{p}_{h}")
                    m.Add(sum(n[p, t][h] for (q, t) in n if q == p) <= 0).OnlyEnforceIf(v.Not())
                    on.append(v)
                m.Add(sum(on) <= pp.max_configs)
    for need in pp.needs:
        mine = [(p, t) for (p, t) in n if pp.pools[p].model == need.model]
        spare = _largest(pp, need.model) if need.n_plus_one else 0
        for h in range(H):
            m.Add(sum(cap_units(pp.pools[p].capacity_rps, pp.tiers[t], pp.spot_allowance) * n[p, t][h]
                      for p, t in mine) >= need_units(need.need_rps[h]) + spare)
            m.Add(sum(n[p, t][h] for p, t in mine if pp.tiers[t].kind != "spot" and pp.pools[p].unit_of is None)
                  >= need.min_warm)
    for acc in sorted({p.accelerator for p in pp.pools}):
        on_acc = [(p, t) for (p, t) in n if pp.pools[p].accelerator == acc]
        for h in range(H):
            if pp.inventory is not None and acc in pp.inventory and acc in provisioned:
                m.Add(sum(provisioned[acc][h]) <= pp.inventory[acc])
            owned = [(p, t) for p, t in on_acc if pp.tiers[t].kind == "owned"]
            if owned:
                m.Add(sum(pp.pools[p].gpus_per_replica * held[p, t][h] for p, t in owned) <= pp.owned.get(acc, 0))
    if pp.one_provider != "none":
        groups: dict[tuple[str, str], cp_model.IntVar] = {}
        for (p, t) in n:
            tier = pp.tiers[t]
            if tier.kind == "owned":
                continue
            scope = "fleet" if pp.one_provider == "fleet" else tier.accelerator
            key = (scope, tier.provider)
            if key not in groups:
                groups[key] = m.NewBoolVar(f"y_{scope}_{tier.provider}")
            for h in range(H):
                m.Add(n[p, t][h] == 0).OnlyEnforceIf(groups[key].Not())
        for scope in sorted({k[0] for k in groups}):
            m.Add(sum(v for k, v in groups.items() if k[0] == scope) <= 1)
    total = sum(cost_terms)
    m.Minimize(total)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_search_workers = workers
    solver.parameters.random_seed = 0
    code = solver.Solve(m)
    status = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible",
              cp_model.INFEASIBLE: "infeasible"}.get(code, "unknown")
    if status not in ("optimal", "feasible"):
        return PurchaseResult(status, None, None, solver.WallTime())
    seconds = solver.WallTime()
    free = any(t.usd_per_gpu_hour == 0 for t in pp.tiers)
    if status == "optimal" and free:  # free owned GPUs tie: fewest replica-hours at the optimal cost
        solver.parameters.max_time_in_seconds = min(time_limit_s, TIE_BREAK_S)
        m.Add(total <= int(solver.ObjectiveValue()))
        hinted: set[int] = set()
        for xs in n.values():
            for x in xs:
                if x.Index() not in hinted:
                    hinted.add(x.Index())
                    m.AddHint(x, solver.Value(x))
        m.Minimize(sum(x for xs in n.values() for x in (xs[:1] if xs[0] is xs[-1] and H > 1 else xs)))
        if solver.Solve(m) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):  # pragma: no cover - hint is feasible
            raise RuntimeError("purchasing: the tie-break solve lost the optimal schedule")
        seconds += solver.WallTime()
    counts = {k: tuple(int(solver.Value(x)) for x in xs) for k, xs in sorted(n.items())}
    sched = Schedule({k: c for k, c in counts.items() if any(c)})
    return PurchaseResult(status, sched, sum(hourly_costs(pp, sched)), seconds)


def brute_force_schedule(pp: PurchaseProblem, max_replicas: int) -> PurchaseResult:
    """Every schedule with at most ``max_replicas`` per (pool, tier, hour), cheapest feasible
    first found (ties: first in enumeration order). For tests on tiny cases only; feasibility
    uses the same integer capacity units as the CP-SAT model, cost the float arithmetic."""
    from solver.verify_purchase import schedule_violations

    keys = [(p, t) for p in range(len(pp.pools)) for t in range(len(pp.tiers)) if pp.usable(p, t)]
    per_key = []
    for p, t in keys:
        if pp.tiers[t].kind == "reserved":
            per_key.append([(c,) * pp.hours for c in range(max_replicas + 1)])
        else:
            per_key.append(list(itertools.product(range(max_replicas + 1), repeat=pp.hours)))
    best: Schedule | None = None
    best_cost = math.inf
    for combo in itertools.product(*per_key):
        s = Schedule({k: c for k, c in zip(keys, combo) if any(c)})
        cost = sum(hourly_costs(pp, s))
        if cost < best_cost - 1e-9 and not schedule_violations(pp, s, integer=True):
            best, best_cost = s, cost
    if best is None:
        return PurchaseResult("infeasible", None, None, 0.0)
    return PurchaseResult("optimal", best, best_cost, 0.0)
