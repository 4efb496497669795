"""Exact solve of a one-model problem without shared limits (what ``query`` asks), in pure Python.

A problem with one model and no inventory, owned GPUs, whole nodes, power limit, budget, GPU
shares or application budgets is the CP-SAT model of :mod:`.cpsat` reduced to (integers as
scaled by :mod:`solver.scaling`; every guard enforced)::

    minimise    sum_c k_c r_c            k_c = price of c's system (cents per GPU-hour) x gpus_c
    subject to  r_c in [0, M_c];  r_c = 0 where c violates a family (the guards)
                sum_c cap_c r_c >= D                                (capacity)
                sum_c r_c >= R                   where R > 1        (replica minimum)
                sum_c cap_c r_c - max_{r_c > 0} cap_c >= D   under N+1
                |{c : r_c > 0}| <= K                                (configurations)

With no whole nodes and no owned GPUs, CP-SAT's provisioned GPUs P_s equal the GPUs in use (it
holds ``P_s = used_s``), so its objective ``sum_s p_s P_s`` is the sum above.

:func:`solve_single` enumerates every choice of at most K usable candidates and replica counts
``1..M_c`` by depth-first search over the candidates sorted by cost per unit of capacity, and
cuts a branch only when it cannot beat the best plan found (never on a guess):

- a lower bound: the capacity still missing costs at least its amount times the lowest cost per
  unit of capacity among the candidates still allowed, and replicas still missing below R cost at
  least the cheapest such replica each (both in exact integer arithmetic);
- once a choice is feasible, adding replicas or candidates cannot lower the cost (costs are
  >= 0), so it is not extended; a replica count above the least that completes a choice costs
  more than that one, so it is not tried.

So the answer is the optimum of the same integer model CP-SAT solves (ties: the first plan found
in that order). A search that would visit more than ``node_limit`` choices returns None and the
caller uses CP-SAT instead; so does any problem outside the class above.
"""

from __future__ import annotations

import time
from fractions import Fraction

from solver.families import CANDIDATE_FAMILIES
from solver.optimize.encode import IntProblem
from solver.optimize.solution import IntSolution
from solver.plan import SolveStatus, Termination

NODE_LIMIT = 200_000
"""Most partial choices the search visits before handing the problem to CP-SAT."""


def applies(ip: IntProblem) -> bool:
    """Whether ``ip`` is in the class :func:`solve_single` solves exactly (module docstring)."""
    return (len(ip.models) == 1 and not ip.gpu_shares and not ip.chains and not ip.whole_nodes
            and not any(c.also for c in ip.candidates)  # mixed units: GPUs on two node shapes
            and ip.power_limit_w is None and ip.budget_cents is None and not ip.owned and not ip.providers
            and not any(s.accelerator in ip.inventory for s in ip.systems))


_GUARDED = frozenset(CANDIDATE_FAMILIES)
"""Families that forbid a candidate when their guard holds (as in :mod:`.cpsat`)."""


class _TooBig(Exception):
    """The search passed its node limit."""


def solve_single(ip: IntProblem, node_limit: int = NODE_LIMIT) -> IntSolution | None:
    """The optimum of a one-model problem without shared limits, every guard enforced, proven
    by exhaustive search (module docstring); None when ``ip`` is outside that class or the
    search passes ``node_limit`` partial choices."""
    if not applies(ip):
        return None
    t0 = time.perf_counter()
    demand = ip.demand_mrps[0]
    least = ip.min_replicas[0] if ip.min_replicas else 1
    least = least if least > 1 else 0  # CP-SAT states the minimum only above 1
    spare = bool(ip.n_plus_one and ip.n_plus_one[0])
    items: list[tuple[int, int, int, int]] = []  # (candidate index, cost, capacity, max replicas)
    for i, c in enumerate(ip.candidates):
        if c.violations & _GUARDED or c.cap_mrps <= 0 or c.max_replicas <= 0:
            continue
        items.append((i, ip.systems[c.system].price_cents_per_gpu * c.gpus, c.cap_mrps, c.max_replicas))
    items.sort(key=lambda t: (Fraction(t[1], t[2]), t[0]))
    # cheapest replica among items[j:], for the replica-minimum bound
    suffix_cost = [0] * (len(items) + 1)
    running = None
    for j in range(len(items) - 1, -1, -1):
        running = items[j][1] if running is None else min(running, items[j][1])
        suffix_cost[j] = running
    best: list = [None, ()]  # cost, ((item position, replicas), ...)
    visited = [0]

    def feasible(cap: int, z: int, n: int) -> bool:
        return cap - (z if spare else 0) >= demand and n >= least

    def search(pos: int, left: int, cap: int, cost: int, n: int, z: int,
               chosen: tuple[tuple[int, int], ...]) -> None:
        visited[0] += 1
        if visited[0] > node_limit:
            raise _TooBig
        if feasible(cap, z, n):
            if best[0] is None or cost < best[0]:
                best[0], best[1] = cost, chosen
            return  # extending a feasible choice never lowers its cost
        if left == 0:
            return
        for j in range(pos, len(items)):
            _, k, u, top = items[j]
            if best[0] is not None:
                # lower bound with items[j:], all at least as costly per unit as items[j]
                missing = demand + (z if spare else 0) - cap
                if missing > 0 and (best[0] - cost) * u <= missing * k:
                    break  # the bound only grows with j (items sorted by k / u)
                if n < least and cost + (least - n) * suffix_cost[j] >= best[0]:
                    break
            z2 = max(z, u) if spare else 0
            need = demand + z2 - cap
            complete = max(1, -(-need // u) if need > 0 else 0, least - n)
            if complete <= top:
                total = cost + complete * k
                if best[0] is None or total < best[0]:
                    best[0], best[1] = total, chosen + ((j, complete),)
            if left == 1:
                continue  # one more candidate only: the least completing count is its best
            for r in range(min(complete - 1, top), 0, -1):
                if best[0] is not None and cost + r * k >= best[0]:
                    continue
                search(j + 1, left - 1, cap + r * u, cost + r * k, n + r, max(z, u), chosen + ((j, r),))

    try:
        search(0, ip.max_configs, 0, 0, 0, 0, ())
    except _TooBig:
        return None
    seconds = time.perf_counter() - t0
    if best[0] is None:
        return IntSolution(SolveStatus.INFEASIBLE, seconds=seconds, termination=Termination.INFEASIBLE_PROVEN)
    replicas = [0] * len(ip.candidates)
    for j, r in best[1]:
        replicas[items[j][0]] = r
    provisioned = [0] * len(ip.systems)
    for i, r in enumerate(replicas):
        provisioned[ip.candidates[i].system] += r * ip.candidates[i].gpus
    return IntSolution(
        SolveStatus.OPTIMAL,
        replicas=tuple(replicas),
        provisioned=tuple(provisioned),
        nodes=tuple(-(-p // s.gpus_per_node) for p, s in zip(provisioned, ip.systems)),
        owned=tuple(0 for _ in ip.systems),
        cost_cents=best[0], bound_cents=float(best[0]), seconds=seconds,
        termination=Termination.OPTIMAL,
    )
