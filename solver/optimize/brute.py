"""Brute-force reference solver over an :class:`IntProblem` (every guard enforced), and the
plain arithmetic of a replica assignment it rests on (provisioned GPUs, cost, shared limits),
which :mod:`.decompose` uses too.

Enumerates every replica vector of every model and every combination across models, so it is
only for small tables (tests compare it with CP-SAT). No solver library involved.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from solver.optimize.encode import IntProblem, share_gpus


@dataclass(frozen=True)
class BruteResult:
    cost_cents: int | None
    replicas: tuple[int, ...] | None


def _serves(ip: IntProblem, m: int, caps: list[int], combo: list[int]) -> bool:
    """Whether replicas ``combo`` of candidates with capacities ``caps`` serve model ``m``: cover
    its demand, reach its replica minimum and, under N+1, cover it without the largest replica."""
    chosen = [(c, r) for c, r in zip(caps, combo) if r > 0]
    total = sum(c * r for c, r in chosen)
    spare = max(c for c, _ in chosen) if chosen and ip.n_plus_one and ip.n_plus_one[m] else 0
    least = ip.min_replicas[m] if ip.min_replicas else 1
    return total - spare >= ip.demand_mrps[m] and sum(combo) >= least


def _model_options(ip: IntProblem, m: int) -> list[dict[int, int]]:
    """Every *minimal* replica vector of one model: at most K configurations, serving it (see
    :func:`_serves`), and no replica can be removed while still serving it (extra replicas never
    lower the cost nor help any limit, so an optimum made of minimal vectors always exists)."""
    idx = [i for i in ip.by_model(m) if not ip.candidates[i].violations]
    out = []
    for k in range(1, ip.max_configs + 1):
        for subset in itertools.combinations(idx, k):
            caps = [ip.candidates[i].cap_mrps for i in subset]
            ranges = [range(1, ip.candidates[i].max_replicas + 1) for i in subset]
            for combo in itertools.product(*ranges):
                if not _serves(ip, m, caps, list(combo)):
                    continue
                if all(not _serves(ip, m, caps, [r - (j == i) for j, r in enumerate(combo)])
                       for i in range(len(combo))):
                    out.append(dict(zip(subset, combo)))
    return out


def owned_cost(ip: IntProblem, prov: list[int], prices: tuple[int, ...] | None = None) -> int | None:
    """Cents per hour of provisioned GPUs ``prov`` (per system) with the owned GPUs of each
    accelerator placed on its dearest systems first (where owning saves the most). ``prices``:
    cents per GPU-hour per system (default: each system's own; -1: not for rent there, so its
    GPUs must all be owned, else None)."""
    price = list(prices) if prices is not None else [s.price_cents_per_gpu for s in ip.systems]
    rented = list(prov)
    for a, n in ip.owned.items():
        # systems not for rent first (owning them is the only way), then the dearest
        rows = sorted(((price[s] < 0, price[s], s) for s, row in enumerate(ip.systems) if row.accelerator == a),
                      reverse=True)
        for missing, p, s in rows:
            take = min(n, rented[s]) if missing or p > ip.owned_cents_per_gpu else 0
            rented[s] -= take
            n -= take
    if any(r > 0 and p < 0 for r, p in zip(rented, price)):
        return None
    return (sum(r * p for r, p in zip(rented, price) if r > 0)
            + (sum(prov) - sum(rented)) * ip.owned_cents_per_gpu)


def fleet_cost(ip: IntProblem, prov: list[int]) -> tuple[int, int] | None:
    """(cents per hour, provider index) of provisioned GPUs ``prov``: under a provider choice
    (``ip.providers``) the cheapest provider that rents every GPU not owned (ties: the first),
    None when none does; otherwise the systems' own prices and provider -1."""
    if not ip.providers:
        return owned_cost(ip, prov), -1  # type: ignore[return-value]
    best: tuple[int, int] | None = None
    for k, p in enumerate(ip.providers):
        cost = owned_cost(ip, prov, p.price_cents)
        if cost is not None and (best is None or cost < best[0]):
            best = (cost, k)
    return best


def provisioned(ip: IntProblem, replicas: dict[int, int]) -> list[int]:
    """GPUs provisioned per system for a replica assignment (whole nodes when asked)."""
    used = used_gpus(ip, replicas)
    if ip.whole_nodes:
        return [-(-u // s.gpus_per_node) * s.gpus_per_node for u, s in zip(used, ip.systems)]
    return used


def used_gpus(ip: IntProblem, replicas: dict[int, int]) -> list[int]:
    """GPUs running replicas per system: whole-GPU replicas x their GPUs (a mixed unit's on both
    node shapes), plus per GPU share the whole GPUs its replicas (of any model) fill."""
    used = [0] * len(ip.systems)
    shares = [0] * len(ip.gpu_shares)
    for i, r in replicas.items():
        c = ip.candidates[i]
        if c.gpu_share >= 0:
            shares[c.gpu_share] += r
        else:
            used[c.system] += r * c.gpus
        for s, g in c.also:  # a mixed unit's GPUs on another node shape
            used[s] += r * g
    for s, n in share_gpus(ip, shares).items():  # GPU shares: the whole GPUs they fill
        used[s] += n
    return used


def within_shared_limits(ip: IntProblem, prov: list[int], cost_cents: int) -> bool:
    """Whether provisioned GPUs ``prov`` (per system) costing ``cost_cents`` keep the limits
    models share: GPUs per accelerator within the inventory, power and budget within theirs."""
    by_acc: dict[str, int] = {}
    for p, s in zip(prov, ip.systems):
        by_acc[s.accelerator] = by_acc.get(s.accelerator, 0) + p
    if any(by_acc.get(a, 0) > n for a, n in ip.inventory.items()):
        return False
    if ip.power_limit_w is not None and sum(p * s.tdp_w for p, s in zip(prov, ip.systems)) > ip.power_limit_w:
        return False
    return ip.budget_cents is None or cost_cents <= ip.budget_cents


def chains_hold(ip: IntProblem, replicas: dict[int, int]) -> bool:
    """Every path of every application within its budget: sum of calls x the slowest used
    configuration of each stage (paths enumerated, unlike CP-SAT's longest-path variables)."""
    slowest: dict[int, int] = {}
    for i, r in replicas.items():
        if r > 0:
            m = ip.candidates[i].model
            slowest[m] = max(slowest.get(m, 0), ip.candidates[i].lat_us)
    return all(sum(k * slowest.get(m, 0) for m, k in path) <= ch.budget_us
               for ch in ip.chains for path in ch.paths)


def brute_force(ip: IntProblem) -> BruteResult:
    """The optimal cost (cents) and one optimal replica vector; ``None`` when infeasible."""
    per_model = [_model_options(ip, m) for m in range(len(ip.models))]
    best: tuple[int, tuple[int, ...]] | None = None
    for choice in itertools.product(*per_model):
        reps: dict[int, int] = {}
        for d in choice:
            reps.update(d)
        prov = provisioned(ip, reps)
        priced = fleet_cost(ip, prov)
        if priced is None:
            continue
        cost = priced[0]
        if not within_shared_limits(ip, prov, cost) or not chains_hold(ip, reps):
            continue
        if best is None or cost < best[0]:
            best = (cost, tuple(reps.get(i, 0) for i in range(len(ip.candidates))))
    if best is None:
        return BruteResult(None, None)
    return BruteResult(best[0], best[1])
