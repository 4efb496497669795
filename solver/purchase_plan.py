"""``fleetplan purchase``'s library call: plan the configuration at the peak hour, then choose
what to buy in every hour (:mod:`solver.optimize.purchase`), and check the schedule
independently (:mod:`solver.verify_purchase`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solver.catalog import Catalog, provider_key
from solver.demand import hours_of, one_provider_mode, purchase_problem
from solver.errors import InputError
from solver.optimize.purchase import PurchaseResult, solve_schedule
from solver.plan import Plan
from solver.problem import Problem
from solver.purchasing import PurchaseProblem, average_unit_costs, schedule_dict
from solver.session import solve_problem
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
                   min_warm: int | None = None, load_gb_s: float | None = None) -> PurchasePlan:
    """The peak plan and the cheapest schedule over the problem's hours (a problem without
    ``hourly_rps`` is planned at its peak in all 24 hours)."""
    if spot_allowance is not None and not 0 <= spot_allowance <= 1:
        raise InputError(f"--spot-allowance: must be in [0, 1], got {spot_allowance:g}")
    hours_of(problem)  # profiles of different lengths: bad input before any solving
    kw = dict(time_limit_s=time_limit_s, spot_allowance=spot_allowance, reserved=reserved,
              min_warm=min_warm, load_gb_s=load_gb_s)
    if one_provider_mode(problem) == "fleet" and problem.fleet.provider is None:
        return _cheapest_provider(problem, cat, **kw)  # type: ignore[arg-type]
    plan = solve_problem(problem, cat, time_limit_s=time_limit_s)
    return schedule_for_plan(problem, plan, cat, **kw)  # type: ignore[arg-type]


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
        out = schedule_for_plan(one, solve_problem(one, cat, time_limit_s=kw["time_limit_s"]), cat, **kw)
        first = first or out
        cost = out.result.cost_usd if out.result is not None else None
        if cost is not None and not out.violations and (best is None or cost < best.result.cost_usd - 1e-9):  # type: ignore[union-attr,operator]
            best = out
    return best or first  # type: ignore[return-value]


def schedule_for_plan(problem: Problem, plan: Plan, cat: Catalog, *, time_limit_s: float = 30.0,
                      spot_allowance: float | None = None, reserved: bool | None = None,
                      min_warm: int | None = None, load_gb_s: float | None = None) -> PurchasePlan:
    """The cheapest schedule for an already planned peak configuration."""
    if not plan.status.has_plan:
        return PurchasePlan(plan, None, None)
    pp = purchase_problem(problem, plan, cat, spot_allowance=spot_allowance, reserved=reserved,
                          min_warm=min_warm, load_gb_s=load_gb_s)
    res = solve_schedule(pp, time_limit_s=time_limit_s)
    bad = tuple(schedule_violations(pp, res.schedule, cat=cat)) if res.schedule is not None else ()
    return PurchasePlan(plan, pp, res, bad)
