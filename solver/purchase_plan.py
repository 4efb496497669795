"""``fleetplan purchase``'s library call: plan the configuration at the peak hour, then choose
what to buy in every hour (:mod:`solver.optimize.purchase`), and check the schedule
independently (:mod:`solver.verify_purchase`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from solver.catalog import Catalog, provider_key
from solver.demand import hours_of, one_provider_mode, purchase_problem
from solver.errors import InputError
from solver.optimize.purchase import PurchaseResult, solve_schedule
from solver.plan import Deployment, Plan
from solver.problem import Problem
from solver.purchasing import PurchaseProblem, average_unit_costs, schedule_dict
from solver.session import Session, config_key, deployment
from solver.verify_purchase import schedule_violations


@dataclass(frozen=True)
class PurchasePlan:
    plan: Plan
    """The configuration planned at the peak hour (what ``fleetplan solve`` gives)."""
    inputs: PurchaseProblem | None
    result: PurchaseResult | None
    violations: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"peak_plan": self.plan.to_dict()}
        if self.result is None or self.inputs is None:
            out["schedule"] = None
            return out
        out["schedule_status"] = self.result.status
        out["schedule_seconds"] = self.result.seconds
        if self.result.schedule is not None:
            out["schedule"] = schedule_dict(self.inputs, self.result.schedule)
            peak = self.plan.unit_costs.fleet.to_dict() if self.plan.unit_costs is not None else None
            out["unit_costs"] = {"peak": peak,
                                 "mean": average_unit_costs(self.inputs, self.result.schedule).to_dict()}
        out["violations"] = list(self.violations)
        return out


def plan_purchases(problem: Problem, cat: Catalog, *, time_limit_s: float = 30.0,
                   spot_allowance: float | None = None, reserved: bool | None = None,
                   min_warm: int | None = None, load_gb_s: float | None = None,
                   alternatives: int | None = None) -> PurchasePlan:
    """The peak plan and the cheapest schedule over the problem's hours (a problem without
    ``hourly_rps`` is planned at its peak in all 24 hours). ``alternatives`` overrides
    ``purchasing.alternatives``."""
    if spot_allowance is not None and not 0 <= spot_allowance <= 1:
        raise InputError(f"--spot-allowance: must be in [0, 1], got {spot_allowance:g}")
    if alternatives is not None:
        if not 0 <= alternatives <= 4:
            raise InputError(f"--alternatives: must be 0 to 4, got {alternatives}")
        purchasing = problem.purchasing.model_copy(update={"alternatives": alternatives})
        problem = problem.model_copy(update={"purchasing": purchasing})
    hours_of(problem)  # profiles of different lengths: bad input before any solving
    kw = dict(time_limit_s=time_limit_s, spot_allowance=spot_allowance, reserved=reserved,
              min_warm=min_warm, load_gb_s=load_gb_s)
    if one_provider_mode(problem) == "fleet" and problem.fleet.provider is None:
        return _cheapest_provider(problem, cat, **kw)  # type: ignore[arg-type]
    plan, extra = peak_plan(problem, cat, time_limit_s)
    return schedule_for_plan(problem, plan, cat, alternatives=extra, **kw)  # type: ignore[arg-type]


def peak_plan(problem: Problem, cat: Catalog, time_limit_s: float) -> tuple[Plan, tuple[Deployment, ...]]:
    """The plan at the peak (what ``fleetplan solve`` gives) and the alternative configurations
    (``purchasing.alternatives`` per model) its session's tables offer the schedule."""
    t0 = time.perf_counter()
    session = Session.prepare(problem, cat)
    plan, _ = session.run(time_limit_s)
    plan = replace(plan, solve_seconds=time.perf_counter() - t0)
    k = problem.purchasing.alternatives
    return plan, (alternative_configs(session, plan, k) if k and plan.status.has_plan else ())


def alternative_configs(session: Session, plan: Plan, k: int) -> tuple[Deployment, ...]:
    """Per model, up to ``k`` configurations besides the plan's, as one-replica deployments:
    candidates meeting every target (whole GPUs; aggregated replicas or disaggregated units,
    mixed ones bought as two pools) on the Pareto front of cost per replica (lower) and capacity
    (higher), the cheapest per unit of capacity first (ties: table order). Small configurations
    on the front let quiet hours run fewer GPUs."""
    used = {config_key(d.model, d) for d in plan.deployments}
    out: list[Deployment] = []
    for t in session.tables:
        ok = [(i, c) for i, c in enumerate(t.candidates)
              if not c.violations and not c.partition and c.capacity_rps_per_replica > 0
              and config_key(t.name, c) not in used]
        front, best_cap = [], 0.0
        for i, c in sorted(ok, key=lambda x: (x[1].cost_usd_per_hour, -x[1].capacity_rps_per_replica, x[0])):
            if c.capacity_rps_per_replica > best_cap:
                front.append((i, c))
                best_cap = c.capacity_rps_per_replica
        front.sort(key=lambda x: (x[1].cost_usd_per_hour / x[1].capacity_rps_per_replica,
                                  x[1].cost_usd_per_hour, x[0]))
        out.extend(deployment(c, t.demand, 1, c.capacity_rps_per_replica) for _, c in front[:k])
    return tuple(out)


def _cheapest_provider(problem: Problem, cat: Catalog, **kw: Any) -> PurchasePlan:
    """``one_provider: fleet`` without a named provider: plan with each provider that prices an
    allowed accelerator (``fleet.provider`` set to it, so the peak plan is from one provider
    too) and keep the cheapest schedule (ties: the provider first in name order)."""
    allowed = set().union(*[set(m.allowed_accelerators or cat.accelerators) for m in problem.models])
    keys = sorted({provider_key(p.provider) for p in cat.prices.values() if p.accelerator in allowed})
    best: PurchasePlan | None = None
    first: PurchasePlan | None = None
    for key in keys:
        fleet = problem.fleet.model_copy(update={"provider": key})
        one = problem.model_copy(update={"fleet": fleet})
        plan, extra = peak_plan(one, cat, kw["time_limit_s"])
        out = schedule_for_plan(one, plan, cat, alternatives=extra, **kw)
        first = first or out
        cost = out.result.cost_usd if out.result is not None else None
        if cost is not None and not out.violations and (best is None or cost < best.result.cost_usd - 1e-9):  # type: ignore[union-attr,operator]
            best = out
    return best or first  # type: ignore[return-value]


def schedule_for_plan(problem: Problem, plan: Plan, cat: Catalog, *, time_limit_s: float = 30.0,
                      spot_allowance: float | None = None, reserved: bool | None = None,
                      min_warm: int | None = None, load_gb_s: float | None = None,
                      alternatives: tuple[Deployment, ...] = ()) -> PurchasePlan:
    """The cheapest schedule for an already planned peak configuration (and ``alternatives``
    offered to every hour, see :func:`alternative_configs`)."""
    if not plan.status.has_plan:
        return PurchasePlan(plan, None, None)
    pp = purchase_problem(problem, plan, cat, spot_allowance=spot_allowance, reserved=reserved,
                          min_warm=min_warm, load_gb_s=load_gb_s, alternatives=alternatives)
    res = solve_schedule(pp, time_limit_s=time_limit_s)
    bad = tuple(schedule_violations(pp, res.schedule, cat=cat)) if res.schedule is not None else ()
    return PurchasePlan(plan, pp, res, bad)
