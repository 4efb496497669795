"""What a confidence level costs, and which hardware choices the error bands cannot separate.

A plan made with ``confidence: c`` (``--confidence c``) is compared with the plan at the point
estimate (the same problem solved without it); the difference in $/h is the cost of that
confidence. Per model, the cheapest usable configuration of each accelerator at the point
estimate is priced per request/s of capacity; an accelerator is *within the error* of the
cheapest when its price per request/s is within ``exp(z x sqrt(sigma_a^2 + sigma_b^2))`` of it
(both bands, one-sided z of the level; 0.9 when planning at the point estimate).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from solver import api
from solver.candidates import ModelTable, TableCache, build_tables
from solver.catalog import Catalog
from solver.plan import Plan
from solver.problem import Problem
from solver.uncertainty import band_for_demand

DEFAULT_LEVEL = 0.9


def point_tables(problem: Problem, cat: Catalog, cache: TableCache | None = None) -> list[ModelTable]:
    """The problem's candidate tables at the point estimate (no confidence level)."""
    return build_tables(problem.model_copy(update={"confidence": None}), cat, cache=cache)


def hardware_within_error(problem: Problem, cat: Catalog, level: float | None,
                          cache: TableCache | None = None,
                          tables: list[ModelTable] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per model: each accelerator's cheapest $/h per req/s at the point estimate, its band, and
    whether it is within the error of the cheapest (see module docstring). ``cache``: the
    shape evaluations the plan was solved with, reused; ``tables``: :func:`point_tables`, if
    the caller has them already."""
    z = NormalDist().inv_cdf(level or DEFAULT_LEVEL)
    out: dict[str, list[dict[str, Any]]] = {}
    for t in tables if tables is not None else point_tables(problem, cat, cache):
        engine = t.demand.engine or cat.default_engine
        best: dict[str, tuple[float, Any]] = {}
        for c in t.candidates:
            if c.violations or c.capacity_rps_per_replica <= 0:
                continue
            usd = c.cost_usd_per_hour / c.capacity_rps_per_replica
            if c.accelerator not in best or usd < best[c.accelerator][0]:
                best[c.accelerator] = (usd, c)
        if not best:
            continue
        ranked = sorted(best.items(), key=lambda kv: (kv[1][0], kv[0]))
        usd0, c0 = ranked[0][1]
        s0 = band_for_demand(cat, t.demand, c0.accelerator, c0.quant, engine, c0.max_batch).sigma
        rows = []
        for acc, (usd, c) in ranked:
            band = band_for_demand(cat, t.demand, acc, c.quant, engine, c.max_batch)
            limit = math.exp(z * math.hypot(s0, band.sigma))
            rows.append({"accelerator": acc, "config": c.label(), "usd_per_hour_per_rps": round(usd, 4),
                         "ratio_to_cheapest": round(usd / usd0, 4), "band_sigma": round(band.sigma, 4),
                         "band_source": band.source, "within_error_of_cheapest": usd / usd0 <= limit})
        out[t.name] = rows
    return out


def confidence_summary(problem: Problem, cat: Catalog, plan: Plan, time_limit_s: float, workers: int,
                       cache: TableCache | None = None) -> dict[str, Any]:
    """The ``confidence`` object of a plan: level, cost at the point estimate and at the level,
    the difference, and the hardware within the error of each other. ``cache``: shape
    evaluations to reuse (the plan's own, so nothing is evaluated twice)."""
    level = problem.confidence
    out: dict[str, Any] = {"level": level, "cost_usd_per_hour": plan.cost_usd_per_hour}
    if level is not None:
        point = api.solve(problem.model_copy(update={"confidence": None}), cat, time_limit_s, workers,
                          cache=cache)
        out["cost_usd_per_hour_at_point_estimate"] = point.cost_usd_per_hour
        out["gpus_at_point_estimate"] = point.gpus if point.status.has_plan else None
        out["gpus"] = plan.gpus if plan.status.has_plan else None
        if point.cost_usd_per_hour is not None and plan.cost_usd_per_hour is not None:
            out["cost_of_confidence_usd_per_hour"] = round(plan.cost_usd_per_hour - point.cost_usd_per_hour, 6)
    tables = point_tables(problem, cat, cache)
    out["hardware"] = hardware_within_error(problem, cat, level, cache, tables)
    out["pricing"] = problem.fleet.pricing
    out["provider"] = problem.fleet.provider
    out["unpriced"] = unpriced_accelerators(tables)
    return out


def unpriced_accelerators(tables: list[ModelTable]) -> dict[str, list[str]]:
    """Per model (only those with any): allowed accelerators that were not planned because the
    catalog has no price for the fleet's ``pricing`` (and ``provider``). Why a ``reserved`` plan
    can cost more than the on-demand one: its cheapest hardware may have no reserved row."""
    return {t.name: sorted(t.unpriced) for t in tables if t.unpriced}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The text lines a plan prints for its ``confidence`` object."""
    lines = []
    if summary.get("level") is not None and "cost_of_confidence_usd_per_hour" in summary:
        lines.append(
            f"confidence {summary['level']:g}: ${summary['cost_usd_per_hour']:,.2f}/h "
            f"({summary['gpus']} GPUs) vs ${summary['cost_usd_per_hour_at_point_estimate']:,.2f}/h "
            f"({summary['gpus_at_point_estimate']} GPUs) at the point estimate: the confidence costs "
            f"${summary['cost_of_confidence_usd_per_hour']:,.2f}/h")
    elif summary.get("level") is not None:
        lines.append(f"confidence {summary['level']:g}: no plan at the point estimate to compare with")
    who = f" from {summary['provider']}" if summary.get("provider") else ""
    for model, gpus in summary.get("unpriced", {}).items():
        lines.append(f"{model}: no {summary['pricing']} price{who} for {', '.join(gpus)} in the catalog: not planned")
    for model, rows in summary["hardware"].items():
        close = [r["accelerator"] for r in rows if r["within_error_of_cheapest"]]
        lines.append(f"{model}: cheapest per req/s {rows[0]['accelerator']}; within the error of it: "
                     f"{', '.join(close[1:]) or 'none'} (bands: "
                     + ", ".join(f"{r['accelerator']} {r['band_sigma']:.0%}" for r in rows) + ")")
    return lines


REPORT_HEADERS = ("model", "accelerator", "cheapest config", "$/h per req/s", "x cheapest", "band (1 sigma)",
                  "within the error")


def report_section(summary: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The report's "Cost of confidence" section: one sentence (the plan at the level against the
    plan at the point estimate, and what the margin costs) and the hardware rows."""
    level, cost = summary.get("level"), summary.get("cost_usd_per_hour")
    point = summary.get("cost_usd_per_hour_at_point_estimate")
    if level is None:
        text = "Planned at the point estimate (no confidence level)."
    elif point is None or cost is None:
        text = f"Planned at confidence {level:g}; no plan at the point estimate to compare with."
    else:
        diff = summary["cost_of_confidence_usd_per_hour"]
        pct = f" ({diff / point:+.0%})" if point > 0 else ""
        text = (f"Planned at confidence {level:g} (upper latency and lower capacity bounds at {level:.0%}): "
                f"${cost:,.2f}/h on {summary['gpus']} GPUs. At the point estimate: ${point:,.2f}/h on "
                f"{summary['gpus_at_point_estimate']} GPUs. The margin costs ${diff:,.2f}/h{pct}.")
    rows = [[model, r["accelerator"], r["config"], f"{r['usd_per_hour_per_rps']:,.4f}", f"{r['ratio_to_cheapest']:.2f}",
             f"{r['band_sigma']:.0%}", "cheapest" if i == 0 else ("yes" if r["within_error_of_cheapest"] else "no")]
            for model, rs in summary.get("hardware", {}).items() for i, r in enumerate(rs)]
    return text, rows


def capacity_summary(problem: Problem, cat: Catalog, gpus: int, answer: api.CapacityAnswer,
                     time_limit_s: float, workers: int) -> dict[str, Any]:
    """The ``confidence`` object of a capacity answer: requests/s at the point estimate and at
    the level (the lower capacity bound), and the capacity the confidence costs."""
    level = problem.confidence
    out: dict[str, Any] = {"level": level, "requests_per_s": answer.requests_per_s}
    if level is not None:
        point = api.capacity(problem.model_copy(update={"confidence": None}), cat, gpus, time_limit_s, workers)
        out["requests_per_s_at_point_estimate"] = point.requests_per_s
        out["capacity_cost_of_confidence_rps"] = round(point.requests_per_s - answer.requests_per_s, 6)
    return out
