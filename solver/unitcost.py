"""Unit costs of a plan: dollars per million input, output and all tokens, and per 1k requests.

Basis (the same as the report's $/M output tokens): the traffic actually served at the problem's
``peak_rps`` -- headroom is spare capacity, not traffic -- and mean lengths from the problem's
percentiles (:meth:`~solver.problem.TokenLengths.mean`, an estimate) or histogram. Each figure
charges the *whole* hourly cost to its unit, so they are alternatives, not parts of a sum:
``usd_per_million_tokens`` (blended) is the cost over input + output tokens together, in the
traffic's own mix. Cached prompt tokens count as input tokens. Figures are at peak; a fleet
that runs all day at this size costs more per token off-peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from solver.plan import Deployment
from solver.problem import Problem

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class UnitCosts:
    """US dollars per unit of served traffic at peak (``None`` when no traffic is served)."""

    usd_per_million_input_tokens: float | None
    usd_per_million_output_tokens: float | None
    usd_per_million_tokens: float | None
    """Blended: input and output tokens together, in the traffic's mix."""
    usd_per_1k_requests: float | None
    requests_per_s: float
    input_tokens_per_s: float
    output_tokens_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unit_costs(cost_usd_per_hour: float, requests_per_s: float, input_tokens_mean: float,
               output_tokens_mean: float) -> UnitCosts:
    """Unit costs of ``cost_usd_per_hour`` serving ``requests_per_s`` with these mean lengths."""
    tin = requests_per_s * input_tokens_mean
    tout = requests_per_s * output_tokens_mean

    def per(units_per_s: float, scale: float) -> float | None:
        return cost_usd_per_hour / (units_per_s * SECONDS_PER_HOUR) * scale if units_per_s > 0 else None

    return UnitCosts(per(tin, 1e6), per(tout, 1e6), per(tin + tout, 1e6), per(requests_per_s, 1e3),
                     requests_per_s, tin, tout)


@dataclass(frozen=True)
class PlanUnitCosts:
    """Unit costs of a plan: the whole fleet and each model."""

    fleet: UnitCosts
    """The plan's whole cost (node rounding included) over every model's traffic."""
    models: dict[str, UnitCosts]
    """Each model's deployments' cost over its own traffic."""

    def to_dict(self) -> dict[str, Any]:
        return {"fleet": self.fleet.to_dict(), "models": {k: v.to_dict() for k, v in self.models.items()}}


def plan_unit_costs(problem: Problem, deployments: Sequence[Deployment],
                    fleet_cost_usd_per_hour: float) -> PlanUnitCosts:
    """Unit costs per model and for the fleet (see the module docstring for the basis)."""
    models: dict[str, UnitCosts] = {}
    rps = tin = tout = 0.0
    for m in problem.models:
        t = m.traffic
        cost = sum(d.cost_usd_per_hour for d in deployments if d.model == m.name)
        i_mean, o_mean = t.input_tokens.mean(), t.output_tokens.mean()
        models[m.name] = unit_costs(cost, t.peak_rps, i_mean, o_mean)
        rps += t.peak_rps
        tin += t.peak_rps * i_mean
        tout += t.peak_rps * o_mean
    fleet = unit_costs(fleet_cost_usd_per_hour, rps, tin / rps, tout / rps)  # peak_rps > 0 (schema)
    return PlanUnitCosts(fleet, models)
