"""What a report says, as plain data: built once from the problem, the plan and the Pareto set,
then rendered as Markdown, HTML and JSON (``render.py``). Numbers come from the plan and the
cost model, never from the renderers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solver.catalog import Catalog
from solver.uncertainty import band_for_demand
from solver.costmodel import memory_budget, operating_point, shape_terms
from solver.labels import config_label
from solver.lora import demand_terms
from solver.unitcost import UnitCosts, unit_costs
from solver.plan import Deployment, Plan
from solver.problem import ModelDemand, Problem
from solver.report.plots import Curve
from solver.slo import memory_context_tokens

NOT_CAPTURED = (
    "Speculative decoding, prefill/decode disaggregation and KV-cache offload are not modelled.",
    "Engines differ: efficiency factors are per accelerator family and fitted on public "
    "TensorRT-LLM/vLLM/SGLang measurements, not on your stack; calibrate before buying.",
    "Percentiles use an M/M/c (Erlang-C) view of batch slots with Poisson arrivals; bursty "
    "traffic, long-tail lengths beyond p99 and preemption under memory pressure are not.",
    "Network contention between replicas, host CPU limits, cold starts and failures are not "
    "modelled; the headroom factor is the only reserve for them.",
    "Quality loss per format is one published measurement on a named model and benchmark.",
)


@dataclass(frozen=True)
class DeploymentView:
    """One chosen configuration with the derived figures a reader checks."""

    deployment: Deployment
    usd_per_million_output_tokens: float
    output_tokens_per_s_at_peak: float
    bound: str
    memory_gib: dict[str, float]
    hbm_gib: float
    curve: Curve
    slo: dict[str, float | None]
    percentiles: dict[str, float]
    """Percentile of each latency figure (the target's, 99 where there is no target)."""
    quality_loss_points: float
    """Published quality loss of the weight format (catalog), accuracy points."""
    costs: UnitCosts


@dataclass(frozen=True)
class ReportContent:
    problem: Problem
    plan: Plan
    deployments: tuple[DeploymentView, ...]
    pareto_axis: str | None
    pareto_points: tuple[dict[str, Any], ...]
    assumptions: dict[str, Any]
    binding: tuple[str, ...]
    confidence: dict[str, Any] | None = None
    """With a confidence level: :func:`solver.confidence.confidence_summary` (cost at the point
    estimate vs at the level, hardware within the error of each other)."""
    schedule: dict[str, Any] | None = None
    """``fleetplan purchase``'s result (schedule, unit costs at peak and mean) when the problem
    gives hourly demand (:mod:`solver.purchase_plan`); None otherwise."""

    @property
    def feasible(self) -> bool:
        return self.plan.status.has_plan


def problem_paragraph(problem: Problem) -> str:
    """The problem in one paragraph of plain English."""
    parts = []
    for d in problem.models:
        t = d.traffic
        slo = []
        for key, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "end-to-end")):
            target = getattr(d.slo, key)
            if target is not None:
                slo.append(f"p{target.percentile:g} {label} <= {target.max_ms:g} ms")
        parts.append(
            f"{d.name} serves {d.model} at a peak of {t.peak_rps:g} requests/s "
            f"(+{d.headroom:.0%} headroom) with prompts of {t.input_tokens.percentile(50)}"
            f"/{t.input_tokens.percentile(99)} tokens and outputs of "
            f"{t.output_tokens.percentile(50)}/{t.output_tokens.percentile(99)} tokens (p50/p99), "
            f"targets {', '.join(slo)}"
        )
    f = problem.fleet
    limits = []
    if f.inventory:
        limits.append("inventory " + ", ".join(f"{n} x {g}" for g, n in sorted(f.inventory.items())))
    if f.budget_usd_per_hour:
        limits.append(f"budget ${f.budget_usd_per_hour:g}/h")
    if f.power_kw:
        limits.append(f"power {f.power_kw:g} kW")
    text = "; ".join(parts) + f". Prices: {f.pricing}"
    if limits:
        text += "; fleet limits: " + ", ".join(limits)
    return text + "."


def _demand(problem: Problem, name: str) -> ModelDemand:
    return next(d for d in problem.models if d.name == name)


def _knee(throughput: np.ndarray, tpot: np.ndarray) -> int | None:
    """The knee: the point of the curve farthest from the chord between its ends (normalised)."""
    if len(throughput) < 3:
        return None
    x = (throughput - throughput.min()) / max(np.ptp(throughput), 1e-12)
    y = (tpot - tpot.min()) / max(np.ptp(tpot), 1e-12)
    dist = np.abs((y[-1] - y[0]) * x - (x[-1] - x[0]) * y + x[-1] * y[0] - y[-1] * x[0])
    return int(np.argmax(dist))


def deployment_view(cat: Catalog, problem: Problem, dep: Deployment) -> DeploymentView:
    """Memory budget at the batch cap, throughput-latency curve and cost per token of one deployment."""
    d = _demand(problem, dep.model)
    shape = dep.shape
    terms = shape_terms(cat, shape, d.engine)
    if dep.partition:  # the replica's share of its GPU (memory, bandwidth, SMs or time)
        from solver.costmodel.partition import partition_terms, resolve_partition

        part = resolve_partition(cat, dep.accelerator, dep.partition)
        if not isinstance(part, str):
            eng = cat.engine(terms.engine)
            terms = partition_terms(terms, part, eng.kv_memory_policy, eng.kv_memory_fraction)
    terms = demand_terms(cat, d, terms)  # with LoRA adapters, if any
    ctx = memory_context_tokens(d)
    mem = memory_budget(terms, dep.max_batch, ctx)
    memory = {
        "weights": round(float(mem.weights_gib), 3),
        "kv": round(float(mem.kv_gib), 3),
        "activations": round(float(mem.activations_gib), 3),
        "overhead": round(float(mem.overhead_gib), 3),
        "free": round(max(float(mem.free_gib), 0.0), 3),
        "reserved": round(float(mem.hbm_gib - mem.usable_gib), 3),
    }
    isl = d.traffic.input_tokens.percentile(50)
    osl = d.traffic.output_tokens.percentile(50)
    hit = d.traffic.prefix_cache_hit_rate
    top = max(dep.max_batch, 2)
    grid = np.unique(np.round(np.geomspace(1, top * 2, 24)).astype(int))
    grid = grid[grid <= max(top * 2, 2)]
    op = operating_point(terms, grid, isl, osl, hit)
    at_cap = operating_point(terms, [dep.max_batch], isl, osl, hit)
    operating_index = int(np.argmin(np.abs(grid - dep.max_batch)))
    curve = Curve(
        label=f"{dep.model}: {config_label(dep)}",
        tpot_ms=[round(float(v), 3) for v in op.tpot_ms],
        output_tokens_per_s=[round(float(v), 2) for v in op.output_tokens_per_s],
        operating_index=operating_index,
        knee_index=_knee(np.asarray(op.output_tokens_per_s), np.asarray(op.tpot_ms)),
    )
    # Tokens actually served at peak (headroom is spare capacity, not traffic).
    share = dep.load_rps / (d.traffic.peak_rps * (1 + d.headroom))
    served_rps = d.traffic.peak_rps * share
    out_tps = served_rps * d.traffic.output_tokens.mean()
    costs = unit_costs(dep.cost_usd_per_hour, served_rps, d.traffic.input_tokens.mean(),
                       d.traffic.output_tokens.mean())
    slo = {
        "ttft_ms": d.slo.ttft.max_ms if d.slo.ttft else None,
        "tpot_ms": d.slo.tpot.max_ms if d.slo.tpot else None,
        "e2e_ms": d.slo.e2e.max_ms if d.slo.e2e else None,
    }
    return DeploymentView(
        deployment=dep,
        usd_per_million_output_tokens=round(costs.usd_per_million_output_tokens, 4),
        output_tokens_per_s_at_peak=round(out_tps, 2),
        bound=str(at_cap.bound[0]),
        memory_gib=memory,
        hbm_gib=round(float(mem.hbm_gib), 3),
        curve=curve,
        slo=slo,
        percentiles={k: d.slo.percentile(k) for k in ("ttft", "tpot", "e2e")},
        quality_loss_points=cat.quantization(dep.quant).quality_loss.points,
        costs=costs,
    )


def assumptions(cat: Catalog, problem: Problem, plan: Plan) -> dict[str, Any]:
    """Efficiency factors, headroom and prices behind the plan, with their sources and dates."""
    gpus = sorted({d.accelerator for d in plan.deployments})
    eff = {}
    engines = sorted({m.engine or cat.default_engine for m in problem.models})
    for g in gpus:
        e = cat.efficiency_for(g)
        eff[g] = {"id": e.id, "eta_bw": e.eta_bw, "mfu_prefill": e.mfu_prefill,
                  "mfu_decode": e.mfu_decode, "stream_kernel_us": e.stream_kernel_us,
                  "moe_layer_fixed_us": e.moe_layer_fixed_us, "source": e.source}
    engine_info = {
        k: {"host_overhead_graph_ms": cat.engine(k).host_overhead_graph_ms,
            "host_overhead_eager_ms": cat.engine(k).host_overhead_eager_ms,
            "chunk_tokens": cat.engine(k).chunk_tokens, "source": cat.engine(k).source}
        for k in engines
    }
    prices = {}
    for d in plan.deployments:
        p = cat.prices.get(d.price_id)
        if p is not None:
            prices[p.id] = {"accelerator": p.accelerator, "provider": p.provider, "pricing": p.pricing,
                            "usd_per_gpu_hour": p.usd_per_gpu_hour, "date": p.date.isoformat(),
                            "source": p.source}
    demand = {m.name: m for m in problem.models}
    bands = {}
    for d in plan.deployments:
        eng = demand[d.model].engine or cat.default_engine
        b = band_for_demand(cat, demand[d.model], d.accelerator, d.quant, eng, d.max_batch)
        bands[f"{d.model}: {d.accelerator} {d.quant}"] = b.to_dict()
    return {
        "headroom": {d.name: d.headroom for d in problem.models},
        "pricing": problem.fleet.pricing,
        "efficiency": eff,
        "error_bands": bands,
        "calibrations": [c.id for c in cat.calibrations],
        "confidence": problem.confidence,
        "engines": engine_info,
        "prices": dict(sorted(prices.items())),
        "not_captured": list(NOT_CAPTURED),
    }


def build_content(
    cat: Catalog, problem: Problem, plan: Plan, pareto_axis: str | None = None,
    pareto_points: tuple[dict[str, Any], ...] = (), binding: tuple[str, ...] = (),
    confidence: dict[str, Any] | None = None,
) -> ReportContent:
    views = tuple(deployment_view(cat, problem, d) for d in plan.deployments)
    return ReportContent(
        problem=problem, plan=plan, deployments=views, pareto_axis=pareto_axis,
        pareto_points=pareto_points, assumptions=assumptions(cat, problem, plan), binding=binding,
        confidence=confidence,
    )
