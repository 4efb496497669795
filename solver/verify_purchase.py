"""Independent check of a purchasing schedule: recomputes every constraint from the schedule,
the purchasing input and (optionally) the catalog, without the CP-SAT model, so an encoding bug
cannot reach a user silently. One line per broken constraint."""

from __future__ import annotations

import math

from solver.catalog import Catalog, provider_key
from solver.purchasing import (PurchaseProblem, Schedule, Tier, cap_units, hourly_costs, loading, need_units,
                               node_gpus, occupied_gpus, started)


def schedule_violations(pp: PurchaseProblem, s: Schedule, integer: bool = False,
                        cat: Catalog | None = None) -> list[str]:
    """Broken constraints of ``s``. ``integer``: test capacity in the optimiser's integer units
    (for the brute-force reference); otherwise in requests/s as floats."""
    out: list[str] = []
    H = pp.hours
    allowance = pp.spot_allowance or 0.0
    for (p, t), counts in s.counts.items():
        pool, tier = pp.pools[p], pp.tiers[t]
        if len(counts) != H:
            out.append(f"pool {p} tier {t}: {len(counts)} hourly counts, expected {H}")
            return out
        if tier.accelerator != pool.accelerator:
            out.append(f"pool {p} ({pool.accelerator}) runs on a {tier.accelerator} tier ({tier.price_id})")
        if tier.kind == "spot" and pp.spot_allowance is None and any(counts):
            out.append(f"pool {p}: spot replicas but no spot allowance was given")
        if tier.kind == "reserved" and len(set(counts)) > 1:
            out.append(f"pool {p} tier {tier.price_id}: reserved replicas change over the period {counts}")
        if min(counts) < 0:
            out.append(f"pool {p} tier {t}: negative replicas")
        if tier.kind == "spot" and pp.in_unit(p) and any(counts):
            out.append(f"pool {p}: a part of a mixed unit runs on spot ({tier.price_id})")
    for q, part in enumerate(pp.pools):
        if part.unit_of is None:
            continue
        for h in range(H):
            parts = sum(c[h] for (p, _), c in s.counts.items() if p == q)
            units = sum(c[h] for (p, _), c in s.counts.items() if p == part.unit_of)
            if parts != units:
                out.append(f"pool {q} hour {h}: {parts} prefill part(s) for {units} unit(s) of pool {part.unit_of}")
    for need in pp.needs:
        mine = [(p, t) for (p, t) in s.counts if pp.pools[p].model == need.model]
        largest = max(q.capacity_rps for q in pp.pools if q.model == need.model)
        for h in range(H):
            if integer:
                cap = sum(cap_units(pp.pools[p].capacity_rps, pp.tiers[t], pp.spot_allowance) * s.counts[p, t][h]
                          for p, t in mine)
                spare = cap_units(largest, Tier("", "on-demand", "", 0.0), None) if need.n_plus_one else 0
                short = cap < need_units(need.need_rps[h]) + spare
            else:
                cap = sum(pp.pools[p].capacity_rps * s.counts[p, t][h]
                          * ((1.0 - allowance) if pp.tiers[t].kind == "spot" else 1.0) for p, t in mine)
                spare = largest if need.n_plus_one else 0.0
                short = cap - spare < need.need_rps[h] * (1 - 1e-9)
            if short:
                out.append(f"{need.model} hour {h}: capacity {'units ' if integer else ''}{cap:g} "
                           f"{'less the largest replica ' if need.n_plus_one else ''}below the need "
                           f"{need.need_rps[h]:.4g} req/s")
            configs = len({p for p, t in mine if s.counts[p, t][h] > 0 and pp.pools[p].unit_of is None})
            if pp.max_configs is not None and configs > pp.max_configs:
                out.append(f"{need.model} hour {h}: {configs} configurations > {pp.max_configs} (max_configs_per_model)")
            warm = sum(s.counts[p, t][h] for p, t in mine if pp.tiers[t].kind != "spot" and pp.pools[p].unit_of is None)
            if warm < need.min_warm:
                out.append(f"{need.model} hour {h}: {warm} non-spot replica(s) < warm minimum {need.min_warm}")
    occupied = [occupied_gpus(pp, s, h) for h in range(H)]  # per hour: accelerator -> GPUs
    for acc in sorted({q.accelerator for q in pp.pools}):
        on_acc = [(p, t) for (p, t) in s.counts if pp.pools[p].accelerator == acc]
        for h in range(H):
            gpus = occupied[h].get(acc, 0)
            owned = sum(pp.pools[p].gpus_per_replica
                        * (s.counts[p, t][h] + loading(s.counts[p, t], "owned", pp.pools[p].lead_hours, h))
                        for p, t in on_acc if pp.tiers[t].kind == "owned")
            if pp.inventory is not None and acc in pp.inventory and gpus > pp.inventory[acc]:
                out.append(f"{acc} hour {h}: {gpus} GPUs > inventory {pp.inventory[acc]} "
                           f"(running, and loading for hour {(h + 1) % H})")
            if owned > pp.owned.get(acc, 0):
                out.append(f"{acc} hour {h}: {owned} owned GPUs in use > {pp.owned.get(acc, 0)} owned "
                           f"(running, and loading for hour {(h + 1) % H})")
    out.extend(_hourly_limits(pp, s, integer, occupied))
    if pp.one_provider != "none":
        seen: dict[str, set[str]] = {}
        for (p, t), counts in s.counts.items():
            tier = pp.tiers[t]
            if tier.kind != "owned" and any(counts):
                scope = "the fleet" if pp.one_provider == "fleet" else tier.accelerator
                seen.setdefault(scope, set()).add(tier.provider)
        for scope, provs in sorted(seen.items()):
            if len(provs) > 1:
                out.append(f"one_provider: {scope} rents from {len(provs)} providers ({', '.join(sorted(provs))})")
    if cat is not None:
        for (p, t), counts in s.counts.items():
            tier = pp.tiers[t]
            if tier.kind == "owned" or not any(counts):
                continue
            row = cat.prices.get(tier.price_id)
            if row is None or row.usd_per_gpu_hour != tier.usd_per_gpu_hour or row.pricing != tier.kind \
                    or provider_key(row.provider) != tier.provider or row.accelerator != tier.accelerator:
                out.append(f"tier {tier.price_id}: price, kind, provider or accelerator differs from the catalog")
    return out


def _hourly_limits(pp: PurchaseProblem, s: Schedule, integer: bool, occupied: list[dict[str, int]]) -> list[str]:
    """Budget and power in every hour (power: ``occupied[h]``, the GPUs per accelerator running
    or loading for the next hour, in whole nodes where asked;
    :func:`solver.purchasing.occupied_gpus`). ``integer``:
    the cost in 1e-7 dollars (prices to 1e-4 $, hours to 1e-3) as the optimiser counts it."""
    out = []
    costs = _cost_units(pp, s) if integer else hourly_costs(pp, s)
    for h in range(pp.hours):
        if pp.budget_usd_per_hour is not None:
            limit = (math.floor(pp.budget_usd_per_hour * 1e7 + 1e-6) if integer
                     else pp.budget_usd_per_hour * (1 + 1e-9) + 1e-9)
            if costs[h] > limit:
                usd = costs[h] / 1e7 if integer else costs[h]
                out.append(f"hour {h}: cost ${usd:.4f} > budget ${pp.budget_usd_per_hour:g}/h")
        if pp.power_kw is not None:
            watts = sum(g * math.ceil(pp.tdp_w.get(a, 0.0) - 1e-9) for a, g in occupied[h].items())
            if watts > pp.power_kw * 1000 + 1e-6:
                out.append(f"hour {h}: power {watts / 1000:g} kW > {pp.power_kw:g} kW "
                           f"(GPUs running, and loading for hour {(h + 1) % pp.hours})")
    return out


def _cost_units(pp: PurchaseProblem, s: Schedule) -> list[int]:
    """Each hour's cost in 1e-7 dollars, in integers (see :func:`_hourly_limits`)."""
    out = [0] * pp.hours
    nodes = node_gpus(pp, s)
    for (p, t), counts in s.counts.items():
        pool, tier = pp.pools[p], pp.tiers[t]
        price = round(tier.usd_per_gpu_hour * 10_000)
        lead = round(pool.lead_hours * 1000)
        for h in range(pp.hours):
            if not (nodes and tier.kind != "owned"):
                out[h] += price * pool.gpus_per_replica * 1000 * counts[h]
            if tier.kind != "reserved":
                out[h] += price * pool.gpus_per_replica * lead * started(counts, (h + 1) % pp.hours)
    for (_, t), row in nodes.items():
        for h, g in enumerate(row):
            out[h] += round(pp.tiers[t].usd_per_gpu_hour * 10_000) * 1000 * g
    return out
