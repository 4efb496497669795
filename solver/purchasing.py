"""Buying capacity over the hours of a day (or week): pure data and cost arithmetic.

A purchasing schedule keeps the configurations the planner chose at the peak hour (each a
:class:`Pool`: one model on one accelerator with its replica size, capacity per replica and
scale-up lead time) and says, hour by hour, how many replicas of each pool run on each price
:class:`Tier`:

- ``owned``: the fleet's own GPUs (``fleet.owned``) at ``fleet.owned_usd_per_gpu_hour`` while in use;
- ``reserved``: a committed base, the same count every hour, paid every hour of the period
  (term and discount from catalogs/prices.yaml, the discount against the same provider's
  on-demand row from the same source);
- ``on-demand``: any count per hour;
- ``spot``: any count per hour, counted at ``(1 - allowance)`` of its capacity (``allowance``:
  the share of spot replicas that may be interrupted at once; the rest is the spare it implies)
  and never towards the warm minimum.

Scale-up lead time: a replica started for hour ``h`` loads its weights before the hour begins,
so every replica added over the hour before (counted cyclically: hour 0 follows the last hour,
the day repeats) is billed ``lead_hours`` more. Lead hours are rounded up to 1/1000 h (3.6 s) so
that this arithmetic and the CP-SAT model (:mod:`solver.optimize.purchase`) agree exactly. While
it loads, such a replica holds its GPUs: inventory, owned GPUs and power count it in the hour
before as well as the replicas running then (:func:`occupied_gpus`).

Everything here is plain arithmetic on numbers: no solver code. Units: requests/s, US dollars,
hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from solver.catalog import Catalog, provider_key
from solver.unitcost import UnitCosts, unit_costs

TierKind = Literal["owned", "reserved", "on-demand", "spot"]
LEAD_STEPS_PER_HOUR = 1000
"""Lead times are whole thousandths of an hour (3.6 s), rounded up."""
CAP_SCALE = 1000
"""Capacities and demands in milli-requests/s for the integer feasibility test."""


@dataclass(frozen=True)
class Tier:
    """One way to pay for GPUs of one accelerator."""

    accelerator: str
    kind: TierKind
    provider: str
    """Provider key (:func:`solver.catalog.provider_key`), ``owned`` for owned GPUs."""
    usd_per_gpu_hour: float
    price_id: str = ""
    term_months: int | None = None
    discount: float | None = None
    """1 - price / the same provider's on-demand price from the same source (None: not stated)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pool:
    """Replicas of one configuration of one model (from the peak plan)."""

    model: str
    accelerator: str
    config: str
    gpus_per_replica: int
    capacity_rps: float
    """Requests/s one replica serves within the targets."""
    lead_hours: float
    """Scale-up lead time in hours (a whole number of thousandths)."""
    system: str = ""
    """Node shape (catalog system id): pools of one system on one tier share whole nodes."""
    gpus_per_node: int = 1
    unit_of: int | None = None
    """A mixed disaggregated unit's prefill part: the index of the pool holding the unit's decode
    part (and its capacity). This pool serves nothing alone (``capacity_rps`` 0); every hour it
    runs as many replicas (summed over tiers) as that pool runs units, on its own accelerator,
    system and tiers. None: a configuration of its own (or a unit's decode part)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelNeed:
    """What one model needs in each hour."""

    model: str
    need_rps: tuple[float, ...]
    """Capacity to hold each hour: rate x burst factor (+ application load) x (1 + headroom)."""
    served_rps: tuple[float, ...]
    """Requests/s actually served each hour (for utilisation and unit costs)."""
    min_warm: int
    n_plus_one: bool
    input_tokens_mean: float
    output_tokens_mean: float


@dataclass(frozen=True)
class PurchaseProblem:
    """Everything the schedule is chosen from (no catalog or problem objects needed after this)."""

    pools: tuple[Pool, ...]
    tiers: tuple[Tier, ...]
    needs: tuple[ModelNeed, ...]
    hours: int
    spot_allowance: float | None
    owned: dict[str, int] = field(default_factory=dict)
    inventory: dict[str, int] | None = None
    one_provider: Literal["none", "accelerator", "fleet"] = "none"
    budget_usd_per_hour: float | None = None
    """Most dollars billed in any one hour (``fleet.budget_usd_per_hour``)."""
    power_kw: float | None = None
    """Most GPU power (TDP of every GPU provisioned) in any one hour (``fleet.power_kw``)."""
    tdp_w: dict[str, float] = field(default_factory=dict)
    """TDP per accelerator, watts (for ``power_kw``)."""
    max_configs: int | None = None
    """Most configurations (pools) of one model running in any one hour
    (``fleet.max_configs_per_model``); None: no limit."""
    whole_nodes: bool = False
    """Rented GPUs come in whole nodes: per hour, each (system, tier) is billed and powered for
    its GPUs in use rounded up to whole nodes (owned GPUs are not rounded)."""

    def usable(self, p: int, t: int) -> bool:
        """Whether pool ``p`` may run on tier ``t``: same accelerator; spot only when allowed,
        and never for a part of a mixed unit (an interrupted part would take the unit's capacity
        with it, which the allowance, counted per replica, does not cover)."""
        tier = self.tiers[t]
        return (tier.accelerator == self.pools[p].accelerator
                and (tier.kind != "spot" or self.spot_allowance is not None and not self.in_unit(p)))

    def in_unit(self, p: int) -> bool:
        """Whether pool ``p`` is a part of a mixed unit (its prefill part or its decode part)."""
        return self.pools[p].unit_of is not None or any(q.unit_of == p for q in self.pools)

    def configs(self, model: str) -> list[int]:
        """The model's pools that are configurations (a mixed unit once, by its decode part)."""
        return [p for p, q in enumerate(self.pools) if q.model == model and q.unit_of is None]

    def need(self, model: str) -> ModelNeed:
        return next(n for n in self.needs if n.model == model)


@dataclass(frozen=True)
class Schedule:
    """Replicas per (pool, tier) per hour; a reserved tier's counts are equal in every hour."""

    counts: dict[tuple[int, int], tuple[int, ...]]
    """(pool index, tier index) -> replicas in each hour; absent pairs are all zero."""

    def at(self, p: int, t: int, h: int) -> int:
        c = self.counts.get((p, t))
        return c[h] if c is not None else 0


def lead_hours(lead_s: float) -> float:
    """Seconds -> hours, rounded up to a thousandth of an hour."""
    return math.ceil(lead_s / 3600.0 * LEAD_STEPS_PER_HOUR - 1e-9) / LEAD_STEPS_PER_HOUR


def cap_units(capacity_rps: float, tier: Tier, allowance: float | None) -> int:
    """Capacity one replica counts towards demand, milli-requests/s rounded down: spot at
    ``(1 - allowance)`` of it."""
    share = 1.0 - (allowance or 0.0) if tier.kind == "spot" else 1.0
    return math.floor(capacity_rps * share * CAP_SCALE + 1e-9)


def need_units(need_rps: float) -> int:
    return math.ceil(need_rps * CAP_SCALE - 1e-9)


def started(counts: Sequence[int], h: int) -> int:
    """Replicas added at the start of hour ``h`` (cyclic: hour 0 follows the last hour)."""
    return max(0, counts[h] - counts[h - 1])


def loading(counts: Sequence[int], kind: TierKind, lead: float, h: int) -> int:
    """Replicas loading their weights in hour ``h`` for hour ``h + 1`` (cyclic); none on a
    reserved tier, whose count never changes, nor without a lead time (``lead``, hours)."""
    return 0 if kind == "reserved" or lead <= 0 else started(counts, (h + 1) % len(counts))


def billed_gpu_hours(counts: Sequence[int], kind: TierKind, gpus_per_replica: int,
                     lead: float) -> list[float]:
    """GPU-hours billed in each hour for these replica counts on one tier: reserved capacity is
    paid for its count every hour; other tiers pay their count plus ``lead`` hours for every
    replica started for the next hour (billed in the hour it starts loading, the one before)."""
    n = len(counts)
    if kind == "reserved":
        return [float(counts[h] * gpus_per_replica) for h in range(n)]
    return [gpus_per_replica * (counts[h] + lead * started(counts, (h + 1) % n)) for h in range(n)]


def node_gpus(pp: PurchaseProblem, s: Schedule, with_loading: bool = False) -> dict[tuple[str, int], list[int]]:
    """Under ``whole_nodes``: GPUs provisioned per (system, rented tier) in each hour, the GPUs
    its replicas use (``with_loading``: plus those of replicas loading for the next hour) rounded
    up to whole nodes; empty otherwise."""
    if not pp.whole_nodes:
        return {}
    used: dict[tuple[str, int], list[int]] = {}
    per_node: dict[str, int] = {}
    for (p, t), counts in s.counts.items():
        pool = pp.pools[p]
        kind = pp.tiers[t].kind
        if kind == "owned":
            continue
        row = used.setdefault((pool.system, t), [0] * pp.hours)
        per_node[pool.system] = pool.gpus_per_node
        for h, c in enumerate(counts):
            row[h] += (c + (loading(counts, kind, pool.lead_hours, h) if with_loading else 0)) * pool.gpus_per_replica
    return {k: [-(-g // per_node[k[0]]) * per_node[k[0]] for g in row] for k, row in used.items()}


def hourly_costs(pp: PurchaseProblem, s: Schedule) -> list[float]:
    """Dollars billed in each hour (under ``whole_nodes``, every GPU of a rented node)."""
    out = [0.0] * pp.hours
    nodes = node_gpus(pp, s)
    for (p, t), counts in s.counts.items():
        tier, pool = pp.tiers[t], pp.pools[p]
        for h, g in enumerate(billed_gpu_hours(counts, tier.kind, pool.gpus_per_replica, pool.lead_hours)):
            if nodes and tier.kind != "owned":
                g -= counts[h] * pool.gpus_per_replica  # the running GPUs are billed as nodes below
            out[h] += g * tier.usd_per_gpu_hour
    for (_, t), row in nodes.items():
        for h, g in enumerate(row):
            out[h] += g * pp.tiers[t].usd_per_gpu_hour
    return out


def occupied_gpus(pp: PurchaseProblem, s: Schedule, h: int) -> dict[str, int]:
    """GPUs occupied per accelerator in hour ``h`` at its busiest (its end): the replicas running
    in it plus those loading their weights for hour ``h + 1`` (which hold their GPUs from the
    start of loading); owned GPUs as they are, rented ones rounded up to whole nodes per (system,
    tier) under ``whole_nodes``. What inventory and power must hold."""
    out: dict[str, int] = {}
    nodes = node_gpus(pp, s, with_loading=True)
    for (p, t), counts in s.counts.items():
        kind = pp.tiers[t].kind
        if not nodes or kind == "owned":
            pool = pp.pools[p]
            out[pool.accelerator] = (out.get(pool.accelerator, 0)
                                     + (counts[h] + loading(counts, kind, pool.lead_hours, h)) * pool.gpus_per_replica)
    for (system, t), row in nodes.items():
        acc = pp.tiers[t].accelerator
        out[acc] = out.get(acc, 0) + row[h]
    return out


def capacity_rps(pp: PurchaseProblem, s: Schedule, model: str, h: int) -> float:
    """Requests/s the model's replicas count in hour ``h`` (spot at ``1 - allowance``)."""
    total = 0.0
    for (p, t), counts in s.counts.items():
        pool = pp.pools[p]
        if pool.model == model:
            share = 1.0 - (pp.spot_allowance or 0.0) if pp.tiers[t].kind == "spot" else 1.0
            total += counts[h] * pool.capacity_rps * share
    return total


def replicas(pp: PurchaseProblem, s: Schedule, model: str, h: int, kinds: Sequence[str] | None = None) -> int:
    """The model's replicas in hour ``h`` on tiers of ``kinds`` (a mixed unit counts once)."""
    return sum(c[h] for (p, t), c in s.counts.items()
               if pp.pools[p].model == model and pp.pools[p].unit_of is None
               and (kinds is None or pp.tiers[t].kind in kinds))


def tiers_for(cat: Catalog, accelerator: str, provider: str | None, reserved: bool, spot: bool) -> list[Tier]:
    """The catalog's tiers for one accelerator: per provider its cheapest on-demand row, every
    reserved row (each term) when ``reserved``, its cheapest spot row when ``spot``; the
    discount is against the row's ``on_demand_ref`` (same provider, same source)."""
    rows = cat.prices_for(accelerator, None, provider)
    out: list[Tier] = []
    seen: set[tuple[str, str]] = set()
    for r in rows:  # cheapest first
        key = provider_key(r.provider)
        if r.pricing == "reserved" and not reserved or r.pricing == "spot" and not spot:
            continue
        if r.pricing != "reserved" and (key, r.pricing) in seen:
            continue
        seen.add((key, r.pricing))
        ref = cat.prices.get(r.on_demand_ref) if r.on_demand_ref else None
        disc = 1.0 - r.usd_per_gpu_hour / ref.usd_per_gpu_hour if ref is not None else None
        out.append(Tier(accelerator, r.pricing, key, r.usd_per_gpu_hour, r.id, r.term_months,
                        None if disc is None else round(disc, 4)))
    return sorted(out, key=lambda x: (x.provider, x.kind, x.usd_per_gpu_hour, x.price_id))


# -- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HourRow:
    """One hour of a schedule, for tables, JSON and plots."""

    hour: int
    demand_rps: dict[str, float]
    capacity_rps: dict[str, float]
    replicas: dict[str, dict[str, int]]
    """Model -> tier kind -> replicas."""
    spot_spare_replicas: float
    """Spot replicas held beyond the capacity counted: allowance x spot replicas."""
    utilisation: float | None
    """Requests served / capacity counted, all models together."""
    cost_usd: float
    usd_per_million_tokens: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hour_rows(pp: PurchaseProblem, s: Schedule) -> list[HourRow]:
    costs = hourly_costs(pp, s)
    rows = []
    for h in range(pp.hours):
        demand = {n.model: n.served_rps[h] for n in pp.needs}
        cap = {n.model: capacity_rps(pp, s, n.model, h) for n in pp.needs}
        reps = {n.model: {k: replicas(pp, s, n.model, h, [k]) for k in ("owned", "reserved", "on-demand", "spot")}
                for n in pp.needs}
        spot = sum(r["spot"] for r in reps.values())
        tokens = sum(n.served_rps[h] * (n.input_tokens_mean + n.output_tokens_mean) for n in pp.needs) * 3600
        total_cap = sum(cap.values())
        rows.append(HourRow(h, demand, cap, reps, (pp.spot_allowance or 0.0) * spot,
                            sum(demand.values()) / total_cap if total_cap > 0 else None,
                            costs[h], costs[h] / tokens * 1e6 if tokens > 0 else None))
    return rows


def average_unit_costs(pp: PurchaseProblem, s: Schedule) -> UnitCosts:
    """Unit costs over the whole period: its cost over the traffic served in it (same basis as
    :mod:`solver.unitcost`, whose figures are at peak)."""
    total = sum(hourly_costs(pp, s))
    rps = sum(sum(n.served_rps) for n in pp.needs) / pp.hours
    tin = sum(sum(n.served_rps) * n.input_tokens_mean for n in pp.needs) / pp.hours
    tout = sum(sum(n.served_rps) * n.output_tokens_mean for n in pp.needs) / pp.hours
    return unit_costs(total / pp.hours, rps, tin / rps if rps > 0 else 0.0, tout / rps if rps > 0 else 0.0)


def schedule_dict(pp: PurchaseProblem, s: Schedule) -> dict[str, Any]:
    """The schedule as JSON: pools, tiers used, per (pool, tier) counts, per hour rows, totals."""
    costs = hourly_costs(pp, s)
    used = sorted({t for (p, t), c in s.counts.items() if any(c)})
    return {
        "hours": pp.hours,
        "spot_interruption_allowance": pp.spot_allowance,
        "one_provider": pp.one_provider,
        "pools": [p.to_dict() for p in pp.pools],
        "tiers": [{"index": t, **pp.tiers[t].to_dict()} for t in used],
        "counts": [{"pool": p, "tier": t, "replicas": list(c)} for (p, t), c in sorted(s.counts.items()) if any(c)],
        "hourly": [r.to_dict() for r in hour_rows(pp, s)],
        "cost_usd": sum(costs),
        "cost_usd_per_hour_mean": sum(costs) / pp.hours,
        "unit_costs_mean": average_unit_costs(pp, s).to_dict(),
    }
