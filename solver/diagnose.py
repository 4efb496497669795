"""Actionable diagnoses of an answer without a plan: what in the catalog rules a choice out
(no price, a format the hardware does not run), and how large a fleet limit would have to be for
a plan to exist.

Causes are read from the catalog alone. Remedies re-solve the problem with fleet limits lifted
(inventory, budget, power, whole nodes): first each one alone, then all together; each remedy
names the figure the plan found then needs (GPUs per accelerator, $/h, kW).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from solver.catalog import Catalog
from solver.plan import Plan
from solver.problem import Fleet, Problem

REMEDY_TIME_LIMIT_S = 5.0


def causes(problem: Problem, cat: Catalog) -> list[str]:
    """Catalog facts that rule out choices a model allows, one sentence each: accelerators
    without a price for the fleet's pricing (and provider), and allowed formats that none of
    the model's allowed accelerators runs."""
    fleet = problem.fleet
    out: list[str] = []
    for d in problem.models:
        gpus = d.allowed_accelerators or sorted(cat.accelerators)
        priced = []
        for g in gpus:
            if cat.prices_for(g, fleet.pricing, fleet.provider):
                priced.append(g)
            elif d.allowed_accelerators is not None:
                who = f" from {fleet.provider}" if fleet.provider else ""
                out.append(f"{d.name}: {g} has no {fleet.pricing} price{who} in the catalog, so it cannot be planned")
        if d.allowed_accelerators is not None and len(d.allowed_accelerators) > 1 and not priced:
            out.append(f"{d.name}: none of the allowed accelerators has a price ({fleet.pricing})")
        for q in d.allowed_quantizations or []:
            runs = [g for g in priced if cat.quant_support(g, q) is not None]
            if priced and not runs:
                fams = sorted({cat.accelerator(g).family for g in priced})
                out.append(f"{d.name}: {q} is not supported on {', '.join(priced)} ({', '.join(fams)})")
    return out


@dataclass(frozen=True)
class Remedy:
    """A set of lifted fleet limits under which a plan exists, and what that plan needs."""

    lifted: tuple[str, ...]
    cost_usd_per_hour: float
    gpus: dict[str, int]
    power_kw: float

    def sentence(self, fleet: Fleet) -> str:
        need = []
        inv = fleet.inventory or {}
        for g, n in sorted(self.gpus.items()):
            have = f" (inventory {inv[g]})" if g in inv else ""
            need.append(f"{n} {g} GPUs{have}")
        parts = [", ".join(need), f"${self.cost_usd_per_hour:,.2f}/h"
                 + (f" (budget ${fleet.budget_usd_per_hour:g}/h)" if fleet.budget_usd_per_hour else ""),
                 f"{self.power_kw:,.1f} kW" + (f" (limit {fleet.power_kw:g} kW)" if fleet.power_kw else "")]
        return f"lifting {' and '.join(self.lifted)}: the cheapest plan needs " + ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {"lifted": list(self.lifted), "cost_usd_per_hour": self.cost_usd_per_hour,
                "gpus": dict(sorted(self.gpus.items())), "power_kw": self.power_kw}


_LIMITS = {"inventory": {"inventory": None}, "budget": {"budget_usd_per_hour": None},
           "power": {"power_kw": None}, "whole nodes": {"whole_nodes": False}}


def _active(fleet: Fleet) -> list[str]:
    return [name for name, upd in _LIMITS.items() if any(getattr(fleet, k) != v for k, v in upd.items())]


def remedies(problem: Problem, cat: Catalog, time_limit_s: float = REMEDY_TIME_LIMIT_S) -> list[Remedy]:
    """Fleet limits whose lifting gives a plan: each active limit alone, else all of them
    together; empty when no fleet size helps (the targets or formats must change)."""
    from solver import api  # the optimiser: imported here, only when a diagnosis is asked for

    active = _active(problem.fleet)

    def attempt(names: tuple[str, ...]) -> Remedy | None:
        upd: dict[str, object] = {}
        for n in names:
            upd.update(_LIMITS[n])
        relaxed = problem.model_copy(update={"fleet": problem.fleet.model_copy(update=upd)})
        session = api.prepare(relaxed, cat)
        sol = session.solve(time_limit_s, 1)
        if not sol.status.has_plan:
            return None
        plan = session.plan(sol, 0.0, verify=False)
        gpus: dict[str, int] = defaultdict(int)
        for s in plan.systems:
            gpus[s.accelerator] += s.gpus_provisioned
        return Remedy(names, plan.cost_usd_per_hour or 0.0, dict(gpus), sum(s.power_kw for s in plan.systems))

    single = [r for n in active if (r := attempt((n,))) is not None]
    if single or len(active) < 2:
        return single
    together = attempt(tuple(active))
    return [together] if together is not None else []


def diagnosis(problem: Problem, cat: Catalog, plan: Plan) -> dict[str, list]:
    """Causes and remedies of a plan-less answer (empty lists for a plan)."""
    if plan.status.has_plan:
        return {"causes": [], "remedies": []}
    return {"causes": causes(problem, cat), "remedies": remedies(problem, cat)}
