"""Demand over time: hourly rates of a problem, what each hour needs, and the purchasing input.

A model's ``traffic.hourly_rps`` gives the mean rate of each hour of a day (24) or a week
(168). The configuration is planned at ``peak_rps`` (the busiest hour unless a higher short-window
peak is given); hour ``h`` is then sized for ``hourly_rps[h] x burst`` where ``burst = own peak /
busiest hour`` (>= 1: the peak's burst factor applied to every hour), plus any application load
(an application with ``hourly_rps`` sends its stages their peak load times ``hourly_rps[h] /
max(hourly_rps)``; without them its load is constant), times ``1 + headroom``. A model without
hourly rates needs its own peak in every hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from solver.catalog import Catalog
from solver.errors import InputError
from solver.guardrails import lead_time
from solver.plan import Deployment, Plan
from solver.problem import ModelDemand, Problem
from solver.purchasing import ModelNeed, Pool, PurchaseProblem, Tier, lead_hours, tiers_for


def hours_of(problem: Problem) -> int | None:
    """Length of the problem's hourly profiles (24 or 168), None when no model or application
    has one; an ``InputError`` when they disagree."""
    lengths = {len(m.traffic.hourly_rps) for m in problem.models if m.traffic.hourly_rps is not None}
    lengths |= {len(a.hourly_rps) for a in problem.applications if a.hourly_rps is not None}
    if len(lengths) > 1:
        raise InputError("models[].traffic.hourly_rps: every model's and application's profile must have "
                         f"the same length (got {', '.join(str(n) for n in sorted(lengths))})")
    return lengths.pop() if lengths else None


def model_hours(problem: Problem, d: ModelDemand, hours: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(requests/s served, capacity needed) in each hour for one model, its applications' load
    following their hourly rates (see the module docstring)."""
    from solver.chains import stage_loads

    served_app = np.zeros(hours)
    need_app = np.zeros(hours)
    for a in problem.applications:
        load = stage_loads(a).get(d.name, 0.0)
        if load <= 0:
            continue
        if a.hourly_rps is None:
            served_app += load
            need_app += load
        else:
            rates = np.asarray(a.hourly_rps, dtype=float)
            served_app += load * rates / a.peak_rps
            need_app += load * rates / rates.max()
    return served_and_needed(d, hours, (tuple(served_app.tolist()), tuple(need_app.tolist())))


def served_and_needed(d: ModelDemand, hours: int,
                      app_hours: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                      ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(requests/s served, capacity needed) in each hour for one model (see the module
    docstring); ``app_hours``: the applications' load (served, needed) per hour (default: their
    peak load, ``application_rps``, in every hour)."""
    peak = float(d.traffic.peak_rps)  # type: ignore[arg-type]
    app = d.application_rps
    app_served, app_need = (np.asarray(x, dtype=float) for x in app_hours) if app_hours else (app, app)
    if d.traffic.hourly_rps is None:
        served = np.full(hours, peak - app) + app_served
        need = (np.full(hours, peak - app) + app_need) * (1 + d.headroom)
        return tuple(served.tolist()), tuple(need.tolist())
    own = np.asarray(d.traffic.hourly_rps, dtype=float)
    burst = (peak - app) / own.max()
    served = own + app_served
    need = (own * burst + app_need) * (1 + d.headroom)
    return tuple(served.tolist()), tuple(need.tolist())


def hours_short(rates: Sequence[float], capacity_rps: float) -> int:
    """Hours whose rate exceeds ``capacity_rps`` (what sizing for one rate leaves unserved)."""
    return int(np.sum(np.asarray(rates, dtype=float) > capacity_rps + 1e-12))


def profile_stats(rates: Sequence[float]) -> dict[str, float]:
    """Mean, p95 and p99 (linear interpolation between hours) and maximum of an hourly profile."""
    x = np.asarray(rates, dtype=float)
    return {"mean": float(x.mean()), "p95": float(np.percentile(x, 95)),
            "p99": float(np.percentile(x, 99)), "max": float(x.max())}


def one_provider_mode(problem: Problem) -> Literal["none", "accelerator", "fleet"]:
    v = problem.fleet.one_provider
    if v is True:
        return "accelerator"
    return "none" if v is False else v


def deployment_pools(cat: Catalog, dep: Deployment, load_gb_s: float | None, first: int) -> list[Pool]:
    """A deployment as purchasing pools (``first``: the index its first pool will have): one
    pool, or for a mixed disaggregated unit (its prefill pool on another accelerator) two: the
    decode part (the unit's capacity) and the prefill part (``unit_of`` the decode part), each
    with its own accelerator, GPUs per unit, node shape and lead time (its own weights)."""
    pre = dep.pool("prefill")
    mixed = pre is not None and pre.accelerator not in (None, dep.accelerator)
    label = f"{dep.accelerator} {dep.quant}/kv-{dep.kv_dtype} TP{dep.tp} PP{dep.pp} EP{dep.ep}"
    lead = lead_hours(lead_time(cat, dep, load_gb_s)[0])
    per_node = cat.system(dep.system).gpus_per_node
    if not mixed:
        return [Pool(dep.model, dep.accelerator, label, dep.gpus_per_replica, dep.capacity_rps_per_replica,
                     lead, dep.system, per_node)]
    dec = dep.pool("decode")
    assert pre is not None and dec is not None and pre.system is not None  # a mixed unit names both pools
    pre_dep = replace(dep, shape=replace(dep.shape, accelerator=pre.accelerator, system=pre.system,
                                         quant=pre.quant or dep.quant, tp=pre.tp, pp=pre.pp, ep=pre.ep, moe_tp=0))
    decode = Pool(dep.model, dep.accelerator, f"{label} x{dec.replicas} decode of a unit",
                  dec.replicas * dec.gpus_per_replica, dep.capacity_rps_per_replica, lead, dep.system, per_node)
    prefill = Pool(dep.model, pre.accelerator,
                   f"{pre.accelerator} {pre_dep.quant}/kv-{dep.kv_dtype} TP{pre.tp} PP{pre.pp} EP{pre.ep} "
                   f"x{pre.replicas} prefill of pool {first}'s units",
                   pre.replicas * pre.gpus_per_replica, 0.0, lead_hours(lead_time(cat, pre_dep, load_gb_s)[0]),
                   pre.system, cat.system(pre.system).gpus_per_node, unit_of=first)
    return [decode, prefill]


def purchase_problem(problem: Problem, plan: Plan, cat: Catalog, *, spot_allowance: float | None = None,
                     reserved: bool | None = None, min_warm: int | None = None,
                     load_gb_s: float | None = None, alternatives: Sequence[Deployment] = ()) -> PurchaseProblem:
    """The purchasing input: the plan's configurations (and ``alternatives``, one replica each,
    offered to every hour) as pools, the catalog's tiers for their accelerators, and each
    model's hourly needs. Keyword arguments override the problem's ``purchasing`` block (the
    CLI's flags)."""
    hours = hours_of(problem) or 24
    pur = problem.purchasing
    allowance = spot_allowance if spot_allowance is not None else pur.spot_interruption_allowance
    use_reserved = pur.reserved if reserved is None else reserved
    warm_default = min_warm if min_warm is not None else pur.min_warm_replicas
    gb_s = load_gb_s if load_gb_s is not None else pur.load_gb_s
    pools: list[Pool] = []
    for dep in (*plan.deployments, *alternatives):
        pools.extend(deployment_pools(cat, dep, gb_s, len(pools)))
    tiers: list[Tier] = []
    fleet = problem.fleet
    for acc in sorted({p.accelerator for p in pools}):
        if (fleet.owned or {}).get(acc, 0) > 0:
            tiers.append(Tier(acc, "owned", "owned", fleet.owned_usd_per_gpu_hour, "fleet.owned"))
        tiers.extend(tiers_for(cat, acc, fleet.provider, use_reserved, allowance is not None))
    needs = []
    for d in problem.models:
        served, need = model_hours(problem, d, hours)
        needs.append(ModelNeed(d.name, need, served, warm_default or d.min_replicas, d.redundancy == "n+1",
                               d.traffic.input_tokens.mean(), d.traffic.output_tokens.mean()))
    return PurchaseProblem(tuple(pools), tuple(tiers), tuple(needs), hours, allowance,
                           dict(fleet.owned or {}), dict(fleet.inventory) if fleet.inventory else None,
                           one_provider_mode(problem), budget_usd_per_hour=fleet.budget_usd_per_hour,
                           power_kw=fleet.power_kw,
                           tdp_w={p.accelerator: cat.accelerator(p.accelerator).tdp_w for p in pools},
                           whole_nodes=fleet.whole_nodes, max_configs=fleet.max_configs_per_model)
