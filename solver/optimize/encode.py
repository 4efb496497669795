"""Integer view of a problem's candidate tables: what CP-SAT (and the brute-force reference) see.

All scaling goes through :mod:`solver.scaling` (costs up, capacities down, demand up, limits
down), so an integer-feasible plan is feasible in real units. No solver imports here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from solver import chains, scaling
from solver.candidates import Candidate, ModelTable
from solver.mig import mig_cover, mig_layouts
from solver.families import Family
from solver.problem import MAX_MS, Application, Fleet
from solver.schemas import MigProfile


@dataclass(frozen=True)
class IntCandidate:
    """One candidate in integers. ``model`` and ``system`` index ``IntProblem.models/systems``."""

    model: int
    system: int
    gpus: int
    cap_mrps: int
    cost_cents: int
    """Cost of one replica: gpus x price per GPU-hour in cents."""
    power_w: int
    max_replicas: int
    violations: frozenset[Family]
    lat_us: int = 0
    """E2E at the target percentile when loaded at capacity, microseconds rounded up: the most
    this configuration adds to an application path (:mod:`solver.chains`)."""
    gpu_share: int = -1
    """Index into ``IntProblem.gpu_shares`` for a replica on a GPU share (``gpus`` is then 1 and a
    replica takes ``1 / per_gpu`` of a GPU); -1: whole GPUs."""
    also: tuple[tuple[int, int], ...] = ()
    """(system, GPUs per replica) on other node shapes (a mixed disaggregated unit's prefill
    pool); ``gpus`` counts only those on ``system``; cost and power include both."""


@dataclass(frozen=True)
class IntGpuShare:
    """GPUs of one system split into ``per_gpu`` equal shares of one kind (one MIG profile, or
    ``k`` co-located replicas): replicas of any model on this share fill them, ``n`` replicas
    take ``ceil(n / per_gpu)`` whole GPUs of the system."""

    system: int
    partition: str
    per_gpu: int


@dataclass(frozen=True)
class IntMigPool:
    """The MIG shares of one system, packed together: a GPU holds any one of ``layouts``
    (instance counts per share of ``shares``, same order; the maximal valid MIG layouts,
    :func:`solver.mig.mig_layouts`), so replicas of different profiles, of one
    model or several, may share a GPU. ``n_j`` replicas on share ``shares[j]`` take the fewest
    GPUs whose layouts hold them all."""

    system: int
    shares: tuple[int, ...]
    """Indices into ``IntProblem.gpu_shares`` (MIG shares of ``system``)."""
    layouts: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class IntSystem:
    """A node shape in use: replicas of one system share its nodes, price and power."""

    accelerator: str
    system: str
    gpus_per_node: int
    price_cents_per_gpu: int
    tdp_w: int


@dataclass(frozen=True)
class IntProvider:
    """One provider a ``one_provider: fleet`` plan may rent every GPU from: its price per
    system (cents per GPU-hour, its cheapest row of the system's accelerator), -1 where it has
    no row for that accelerator."""

    key: str
    price_cents: tuple[int, ...]

    def offers(self, s: int) -> bool:
        return self.price_cents[s] >= 0


@dataclass(frozen=True)
class IntChain:
    """An application with a latency budget: its stages (model indices), edges and paths."""

    name: str
    stages: tuple[int, ...]
    edges: tuple[tuple[int, int, int], ...]
    """(source model, target model, calls)."""
    paths: tuple[tuple[tuple[int, int], ...], ...]
    """Entry-to-exit paths as ((model, calls), ...)."""
    budget_us: int


@dataclass(frozen=True)
class IntProblem:
    models: tuple[str, ...]
    demand_mrps: tuple[int, ...]
    candidates: tuple[IntCandidate, ...]
    source: tuple[Candidate, ...]
    """The float candidate behind each integer one (same index)."""
    systems: tuple[IntSystem, ...]
    max_configs: int
    inventory: dict[str, int]
    """GPUs per accelerator; an accelerator absent from the map is unlimited."""
    whole_nodes: bool
    power_limit_w: int | None
    budget_cents: int | None
    owned: dict[str, int] = dataclasses.field(default_factory=dict)
    """GPUs owned per accelerator: each costs ``owned_cents_per_gpu`` instead of its system's
    rental price (a second cost tier; rented GPUs are the provisioned ones beyond)."""
    owned_cents_per_gpu: int = 0
    min_replicas: tuple[int, ...] = ()
    """Fewest replicas per model (empty: 1 each)."""
    n_plus_one: tuple[bool, ...] = ()
    """Per model: capacity without its largest replica must still cover the demand."""
    chains: tuple[IntChain, ...] = ()
    """Applications with an ``e2e_budget_ms`` (empty without applications)."""
    gpu_shares: tuple[IntGpuShare, ...] = ()
    """GPU shares in use by some candidate (empty without ``gpu_sharing``)."""
    mig_pools: tuple[IntMigPool, ...] = ()
    """Per system with MIG shares, the layouts its GPUs may take (every MIG share is in one
    pool; co-located shares are not: they fill GPUs of their own kind)."""
    providers: tuple[IntProvider, ...] = ()
    """``one_provider: fleet``: the providers to choose one from (every rented GPU from it at
    its price); empty otherwise, and then each system costs its ``price_cents_per_gpu`` (the
    cheapest row, a lower bound on any provider's price)."""

    @functools.cached_property
    def pooled(self) -> frozenset[int]:
        """Indices of the GPU shares counted through a MIG pool."""
        return frozenset(h for pool in self.mig_pools for h in pool.shares)

    def by_model(self, m: int) -> list[int]:
        """Indices of model ``m``'s candidates, in order (an index built once: fleets of
        hundreds of models ask this per model and per constraint family)."""
        return list(self._model_index[m])

    @functools.cached_property
    def _model_index(self) -> tuple[tuple[int, ...], ...]:
        index: list[list[int]] = [[] for _ in self.models]
        for i, c in enumerate(self.candidates):
            index[c.model].append(i)
        return tuple(tuple(x) for x in index)


def encode(tables: Sequence[ModelTable], fleet: Fleet,
           applications: Sequence[Application] = (),
           mig_profiles: Mapping[str, Sequence[MigProfile]] | None = None,
           offers: Mapping[str, Mapping[str, float]] | None = None) -> IntProblem:
    """Scale every table entry to integers (see :mod:`solver.scaling`); ``applications``: the
    problem's chains (those with a budget become :class:`IntChain`); ``mig_profiles``: the
    catalog's MIG profiles per accelerator, from which the layouts of each system's MIG pool
    are enumerated once (without them, or for a profile missing there, a GPU holds one
    profile only); ``offers``: provider key -> accelerator -> $/GPU-h (its cheapest row), read
    only under ``one_provider: fleet`` without a named provider, where two or more providers
    make a choice."""
    systems: dict[tuple[str, str], int] = {}
    sys_rows: list[IntSystem] = []
    share_index: dict[tuple[int, str], int] = {}
    share_rows: list[IntGpuShare] = []
    cands: list[IntCandidate] = []
    src: list[Candidate] = []
    inventory = dict(fleet.inventory or {})
    demands = []
    mins = tuple(t.demand.min_replicas for t in tables)
    spare = tuple(t.demand.redundancy == "n+1" for t in tables)
    for m, t in enumerate(tables):
        demand = scaling.demand_mrps(t.load_rps)
        demands.append(demand)
        for c in t.candidates:
            key = (c.accelerator, c.system)
            price = scaling.price_cents(c.usd_per_gpu_hour)
            if key not in systems:
                systems[key] = len(sys_rows)
                sys_rows.append(IntSystem(c.accelerator, c.system, c.gpus_per_node, price,
                                          scaling.power_w(c.tdp_w)))
            also = []
            for a in c.also:  # a mixed unit's GPUs on another node shape
                if (a.accelerator, a.system) not in systems:
                    systems[(a.accelerator, a.system)] = len(sys_rows)
                    sys_rows.append(IntSystem(a.accelerator, a.system, a.gpus_per_node,
                                              scaling.price_cents(a.usd_per_gpu_hour), scaling.power_w(a.tdp_w)))
                also.append((systems[(a.accelerator, a.system)], a.gpus))
            cap = scaling.capacity_mrps(c.capacity_rps_per_replica)
            # More replicas of one candidate than cover the demand alone are never needed. The
            # inventory is *not* folded into this bound: it is a guarded family of its own, and
            # relaxing it must be able to lift the limit when infeasibility is explained.
            # With N+1, one replica more; with a replica minimum, at least that many (a replica
            # beyond either is removable without losing feasibility, so optima stay inside).
            bound = math.ceil(demand / cap) + int(spare[m]) if cap > 0 else 0
            bound = max(bound, mins[m]) if cap > 0 else 0
            share = -1
            if c.partition:
                pkey = (systems[key], c.partition)
                if pkey not in share_index:
                    share_index[pkey] = len(share_rows)
                    share_rows.append(IntGpuShare(systems[key], c.partition, c.per_gpu))
                share = share_index[pkey]
            own = c.own_gpus
            cands.append(IntCandidate(
                model=m, system=systems[key], gpus=own, cap_mrps=cap,
                cost_cents=-(-own * price // c.per_gpu) + sum(g * sys_rows[s].price_cents_per_gpu for s, g in also),
                power_w=-(-own * scaling.power_w(c.tdp_w) // c.per_gpu) + sum(g * sys_rows[s].tdp_w for s, g in also),
                max_replicas=bound, violations=c.violations, lat_us=_lat_us(c.e2e_p99_ms), gpu_share=share,
                also=tuple(also),
            ))
            src.append(c)
    return IntProblem(
        models=tuple(t.name for t in tables),
        demand_mrps=tuple(demands),
        candidates=tuple(cands),
        source=tuple(src),
        systems=tuple(sys_rows),
        max_configs=fleet.max_configs_per_model,
        inventory=inventory,
        whole_nodes=fleet.whole_nodes,
        power_limit_w=scaling.power_limit_w(fleet.power_kw) if fleet.power_kw else None,
        budget_cents=scaling.budget_cents(fleet.budget_usd_per_hour) if fleet.budget_usd_per_hour else None,
        owned={a: n for a, n in (fleet.owned or {}).items() if n > 0},
        owned_cents_per_gpu=scaling.price_cents(fleet.owned_usd_per_gpu_hour),
        min_replicas=mins,
        n_plus_one=spare,
        chains=_chains(tables, applications),
        gpu_shares=tuple(share_rows),
        mig_pools=_mig_pools(sys_rows, share_rows, mig_profiles or {}),
        providers=_providers(sys_rows, fleet, offers),
    )


def _mig_pools(systems: Sequence[IntSystem], shares: Sequence[IntGpuShare],
               profiles: Mapping[str, Sequence[MigProfile]]) -> tuple[IntMigPool, ...]:
    """One pool per system with MIG shares, its maximal layouts enumerated from the catalog."""
    out = []
    for s, row in enumerate(systems):
        idx = tuple(h for h, x in enumerate(shares) if x.system == s and x.partition.startswith("mig "))
        if not idx:
            continue
        known = {p.name: p for p in profiles.get(row.accelerator, ())}
        names = [shares[h].partition.removeprefix("mig ") for h in idx]
        if all(n in known for n in names):
            layouts = mig_layouts([known[n] for n in names])
        else:  # one profile per GPU
            layouts = tuple(tuple(shares[h].per_gpu if j == i else 0 for j in range(len(idx)))
                            for i, h in enumerate(idx))
        out.append(IntMigPool(s, idx, layouts))
    return tuple(out)


def _providers(systems: Sequence[IntSystem], fleet: Fleet,
               offers: Mapping[str, Mapping[str, float]] | None) -> tuple[IntProvider, ...]:
    """The provider choice of ``one_provider: fleet`` (providers with a row for some system in
    use, in key order); empty when there is no choice to make."""
    if fleet.one_provider != "fleet" or fleet.provider is not None or not offers:
        return ()
    out = []
    for key in sorted(offers):
        row = offers[key]
        prices = tuple(scaling.price_cents(row[s.accelerator]) if s.accelerator in row else -1 for s in systems)
        if any(p >= 0 for p in prices):
            out.append(IntProvider(key, prices))
    return tuple(out) if len(out) > 1 else ()


LAT_CAP_US = scaling.latency_budget_us(MAX_MS) + 1
"""Latencies above any budget are held at this (an exact clamp: such a configuration breaks
every budget either way), so path sums stay far inside 64-bit integers."""


def _lat_us(ms: float) -> int:
    return scaling.latency_us(ms) if math.isfinite(ms) and ms < MAX_MS else LAT_CAP_US


def _chains(tables: Sequence[ModelTable], applications: Sequence[Application]) -> tuple[IntChain, ...]:
    index = {t.name: m for m, t in enumerate(tables)}
    out = []
    for a in applications:
        if a.e2e_budget_ms is None:
            continue
        out.append(IntChain(
            name=a.name, stages=tuple(index[s] for s in a.stages),
            edges=tuple((index[e.source], index[e.target], e.calls) for e in a.edges),
            paths=tuple(tuple((index[v], calls) for v, calls in p) for p in chains.paths(a)),
            budget_us=scaling.latency_budget_us(a.e2e_budget_ms),
        ))
    return tuple(out)


def share_gpus(ip: IntProblem, replicas_on_share: Sequence[int]) -> dict[int, int]:
    """Whole GPUs per system index that ``replicas_on_share[h]`` replicas on each GPU share h
    fill: ``ceil(n / per_gpu)`` per co-located share kind, and per MIG pool the fewest GPUs
    whose layouts hold every profile's replicas (:func:`~solver.mig.mig_cover`)."""
    used: dict[int, int] = {}
    for h, (share, n) in enumerate(zip(ip.gpu_shares, replicas_on_share)):
        if n and h not in ip.pooled:
            used[share.system] = used.get(share.system, 0) + -(-n // share.per_gpu)
    for pool in ip.mig_pools:
        demand = [replicas_on_share[h] for h in pool.shares]
        if any(demand):
            used[pool.system] = used.get(pool.system, 0) + len(mig_cover(demand, pool.layouts))
    return used
