"""A fleet's optimum from its models' own optima, where the shared limits do not bind.

Drop every limit models share (inventory, power, budget, whole nodes) from a fleet's integer
model and it falls apart into one problem per model, each solved exactly by
:func:`solver.optimize.single.solve_single`. That relaxation gives two things:

- a lower bound: every plan of the fleet restricted to one model is a plan of that model's
  relaxed problem, and the fleet pays at least for the GPUs its replicas use (provisioned >=
  used, no owned GPUs), so the fleet's optimum costs at least the sum of the models' optima;
- a candidate plan: all the models' optima together. When it also meets the shared limits (GPUs
  per accelerator within the inventory, power and budget within theirs, whole nodes rounded up)
  and rounding adds nothing, it costs exactly the bound, so it is optimal and CP-SAT is not needed.
  Under ``one_provider: fleet`` the tables carry each accelerator's cheapest row, so the bound
  still holds; the plan is claimed only when one provider rents all of it at those prices.

Fleets with owned GPUs (a second cost tier), GPU shares (replicas of several models fill one
GPU) or application budgets (latency couples stages) are left to CP-SAT, as is any fleet where a
model's own search passes its node limit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from solver.optimize.brute import fleet_cost, provisioned, within_shared_limits
from solver.optimize.encode import IntProblem
from solver.optimize.single import solve_single
from solver.optimize.solution import IntSolution
from solver.plan import SolveStatus, Termination


@dataclass(frozen=True)
class Decomposition:
    """The models' own optima together: ``bound_cents`` (their summed cost, a lower bound on the
    fleet's optimum) and ``replicas`` per candidate of the fleet's problem."""

    bound_cents: int
    replicas: tuple[int, ...]


def applies(ip: IntProblem) -> bool:
    """Whether the relaxation bounds ``ip`` from below (module docstring)."""
    return len(ip.models) > 1 and not ip.owned and not ip.gpu_shares and not ip.chains


def model_problem(ip: IntProblem, m: int) -> IntProblem:
    """Model ``m``'s part of ``ip`` with every shared limit dropped."""
    idx = ip.by_model(m)
    return IntProblem(
        models=(ip.models[m],), demand_mrps=(ip.demand_mrps[m],),
        candidates=tuple(dataclasses.replace(ip.candidates[i], model=0) for i in idx),
        source=tuple(ip.source[i] for i in idx), systems=ip.systems, max_configs=ip.max_configs,
        inventory={}, whole_nodes=False, power_limit_w=None, budget_cents=None,
        min_replicas=(ip.min_replicas[m],) if ip.min_replicas else (),
        n_plus_one=(ip.n_plus_one[m],) if ip.n_plus_one else (),
    )


def decompose(ip: IntProblem) -> Decomposition | None:
    """The models' optima with shared limits dropped; None where the relaxation does not apply,
    a model's search passes its node limit, or a model has no plan (CP-SAT then answers)."""
    if not applies(ip):
        return None
    replicas = [0] * len(ip.candidates)
    bound = 0
    for m in range(len(ip.models)):
        sol = solve_single(model_problem(ip, m))
        if sol is None or not sol.status.has_plan or sol.cost_cents is None:
            return None
        bound += sol.cost_cents
        for j, i in enumerate(ip.by_model(m)):
            replicas[i] = sol.replicas[j]
    return Decomposition(bound, tuple(replicas))


def as_fleet_plan(ip: IntProblem, d: Decomposition, seconds: float) -> IntSolution | None:
    """``d``'s plan as the fleet's proven optimum when it meets every shared limit at the cost of
    the bound (module docstring); None otherwise."""
    prov = provisioned(ip, {i: r for i, r in enumerate(d.replicas) if r})
    priced = fleet_cost(ip, prov)  # no owned GPUs here: the plain price sum (one provider's)
    if priced is None:
        return None  # one_provider: fleet and no provider rents every accelerator of these optima
    cost, provider = priced
    if cost != d.bound_cents or not within_shared_limits(ip, prov, cost):
        return None  # whole nodes added GPUs, the one provider costs more than the cheapest
        # rows (neither proven by the bound alone), or a limit binds
    nodes = [-(-p // row.gpus_per_node) for p, row in zip(prov, ip.systems)]
    return IntSolution(
        SolveStatus.OPTIMAL, replicas=d.replicas, provisioned=tuple(prov), nodes=tuple(nodes),
        cost_cents=cost, bound_cents=float(d.bound_cents), seconds=seconds,
        owned=tuple(0 for _ in ip.systems), termination=Termination.OPTIMAL, provider=provider,
    )


def with_bound(sol: IntSolution, bound_cents: int) -> IntSolution:
    """CP-SAT's answer with the decomposition's lower bound where it is the tighter one: a plan
    that costs the bound is then proven optimal."""
    if not sol.status.has_plan or sol.cost_cents is None:
        return sol
    bound = max(sol.bound_cents if sol.bound_cents is not None else 0.0, float(bound_cents))
    if sol.cost_cents <= bound:
        return dataclasses.replace(sol, status=SolveStatus.OPTIMAL, bound_cents=bound,
                                   termination=Termination.OPTIMAL)
    return dataclasses.replace(sol, bound_cents=bound)
