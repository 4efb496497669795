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


def within_inventory(ip: IntProblem, d: Decomposition) -> Decomposition | None:
    """The models' own optima ``d`` moved, greedily, off accelerators whose inventory they
    overfill: a start for CP-SAT where the shared inventory binds (it then need not find a first
    plan itself, which on a thousand models it may not within its time limit). None when no
    such moves empty every overfilled accelerator. Not an optimum; hints guide the search only.

    While an accelerator is over its inventory, each model on it gets its own optimum over the
    candidates on accelerators that are neither over nor full; moves are taken cheapest extra
    cost per GPU freed first, each only where its GPUs fit in what is left."""
    if not ip.inventory:
        return None
    replicas = list(d.replicas)
    acc_of = [ip.systems[c.system].accelerator for c in ip.candidates]

    def used() -> dict[str, int]:
        out: dict[str, int] = {}
        for p, s in zip(provisioned(ip, {i: r for i, r in enumerate(replicas) if r}), ip.systems):
            out[s.accelerator] = out.get(s.accelerator, 0) + p
        return out

    def on(m: int, accs: set[str]) -> int:
        return sum(replicas[i] * ip.candidates[i].gpus for i in ip.by_model(m) if acc_of[i] in accs)

    for _ in range(len({s.accelerator for s in ip.systems}) + 1):  # each round fills or empties one
        use = used()
        over = {a for a, n in ip.inventory.items() if use.get(a, 0) > n}
        if not over:
            return Decomposition(d.bound_cents, tuple(replicas))
        closed = over | {a for a, n in ip.inventory.items() if use.get(a, 0) >= n}
        moves = []
        for m in range(len(ip.models)):
            freed = on(m, over)
            if not freed:
                continue
            sub = model_problem(ip, m)
            keep = [j for j, i in enumerate(ip.by_model(m)) if acc_of[i] not in closed]
            alt = solve_single(dataclasses.replace(sub, candidates=tuple(sub.candidates[j] for j in keep),
                                                   source=tuple(sub.source[j] for j in keep)))
            if alt is None or not alt.status.has_plan or alt.cost_cents is None:
                continue
            now = sum(replicas[i] * ip.candidates[i].cost_cents for i in ip.by_model(m))
            moves.append(((alt.cost_cents - now) / freed, m, {ip.by_model(m)[keep[j]]: r
                                                            for j, r in enumerate(alt.replicas) if r}))
        moved = False
        for _, m, new in sorted(moves, key=lambda t: (t[0], t[1])):
            need: dict[str, int] = {}
            for i, r in new.items():
                need[acc_of[i]] = need.get(acc_of[i], 0) + r * ip.candidates[i].gpus
            if any(use.get(a, 0) + k > ip.inventory[a] for a, k in need.items() if a in ip.inventory) \
                    or not on(m, over):
                continue
            for i in ip.by_model(m):  # GPUs in use move; whole-node rounding is rechecked next round
                if replicas[i]:
                    use[acc_of[i]] -= replicas[i] * ip.candidates[i].gpus
                replicas[i] = new.get(i, 0)
            for a, k in need.items():
                use[a] = use.get(a, 0) + k
            over = {a for a, n in ip.inventory.items() if use.get(a, 0) > n}
            moved = True
            if not over:
                break
        if not moved:
            return None
    return None


def inventory_bound(ip: IntProblem, d: Decomposition, upper_cents: int, rounds: int = 12) -> int:
    """A lower bound on the fleet's optimum at least ``d.bound_cents``, tighter where the
    inventory binds: the Lagrangian relaxation of the inventory. For prices ``l_a >= 0`` (cents
    per GPU-hour) added to accelerator ``a``'s GPUs, every model's own optimum at the raised
    prices, summed, less ``sum_a l_a x inventory_a``, bounds the optimum from below (a plan within
    the inventory pays at most that much less with the raised prices). The prices follow the
    subgradient (GPUs in use over the inventory) with Polyak steps towards ``upper_cents``, the
    cost of a known plan; the best bound met is returned."""
    best = d.bound_cents
    if not ip.inventory or upper_cents <= best:
        return best
    lam = dict.fromkeys(ip.inventory, 0)
    replicas, value, scale = d.replicas, best, 1.0
    for _ in range(rounds):
        use: dict[str, int] = {}
        for i, r in enumerate(replicas):
            if r:
                a = ip.systems[ip.candidates[i].system].accelerator
                use[a] = use.get(a, 0) + r * ip.candidates[i].gpus
        g = {a: use.get(a, 0) - n for a, n in ip.inventory.items()}
        norm = sum(v * v for a, v in g.items() if v > 0 or lam[a] > 0)
        if norm == 0:
            break
        step = scale * (upper_cents - value) / norm
        lam = {a: max(0, lam[a] + round(step * g[a])) for a in lam}
        priced = tuple(dataclasses.replace(s, price_cents_per_gpu=s.price_cents_per_gpu + lam.get(s.accelerator, 0))
                       for s in ip.systems)
        at = decompose(dataclasses.replace(ip, systems=priced))
        if at is None:
            break
        value = at.bound_cents - sum(lam[a] * n for a, n in ip.inventory.items())
        replicas = at.replicas
        if value > best:
            best = value
        else:
            scale /= 2
    return best
