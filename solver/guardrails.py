"""Guardrails and monitoring targets for a plan: request limits, queue limits, warm capacity,
scale-up lead time and alert bands, per planned model.

Pure function of the plan, the problem and the catalog (:func:`for_plan`); the plan JSON carries
the result as ``guardrails`` (one entry per model) so that ``bench-plan`` and
``check-production`` can read the workload and the expectations back without the problem file.

Policy constants (choices, not measurements; change them here):

- ``INPUT_MULTIPLE`` x the p95 prompt is the largest prompt to admit, ``OUTPUT_MULTIPLE`` x the
  p99 output the largest generation; both are cut to fit the model's context window.
- The queue holds what arrives during the longest tolerable wait: ``max wait x arrival rate``
  (the TTFT target, else the E2E target, else the TPOT target x the p99 output). The circuit
  breaker trips at ``BREAKER_FRACTION`` of it (inside the 80-90% band), so that load is shed
  before the queue is full.
- Warm replicas carry the peak without headroom; the headroom share may be started on demand,
  which takes ``scale_up_lead_time_s``.
- Scale-up lead time is the weight transfer alone, weights per GPU / load bandwidth. By default
  the bandwidth is the accelerator's host link (catalog ``pcie_gb_s``, one direction), an upper
  bound on how fast weights reach the GPU, so the lead time is a LOWER bound: storage or network
  download, engine start-up and CUDA-graph capture come on top. Pass ``load_gb_s`` when measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from solver.catalog import Catalog
from solver.costmodel import shape_terms
from solver.costmodel.shape import UTILISATION
from solver.plan import Deployment, Plan
from solver.problem import ModelDemand, Problem, TokenLengths

INPUT_MULTIPLE = 2.0
OUTPUT_MULTIPLE = 2.0
BREAKER_FRACTION = 0.85
WARN_FRACTION = 0.8
"""Latency alerts warn at this share of the target and page at the target."""
KV_HIGH_PCT = 90.0
"""KV cache use above this risks preemption (the plan assumes no eviction)."""
BAND_POINTS = 20.0
"""Utilisation this many points below the plan's expectation means the plan over-provisions."""


def _lengths(t: TokenLengths) -> dict[str, Any]:
    if t.histogram is not None:
        return {"histogram": [{"tokens": b.tokens, "weight": b.weight} for b in t.histogram],
                "mean": t.mean()}
    return {"p50": t.p50, "p90": t.p90, "p99": t.p99, "mean": t.mean()}


def workload(d: ModelDemand) -> dict[str, Any]:
    """The demand as plain data: lengths (tokens), rates (req/s) and targets (ms)."""
    slo = {k: {"max_ms": v.max_ms, "percentile": v.percentile}
           for k, v in (("ttft", d.slo.ttft), ("tpot", d.slo.tpot), ("e2e", d.slo.e2e)) if v}
    return {
        "input_tokens": _lengths(d.traffic.input_tokens),
        "output_tokens": _lengths(d.traffic.output_tokens),
        "peak_rps": d.traffic.peak_rps, "headroom": d.headroom,
        "prefix_cache_hit_rate": d.traffic.prefix_cache_hit_rate, "slo": slo,
    }


def token_limits(d: ModelDemand, context_window: int) -> tuple[int, int]:
    """(max_input_tokens, max_new_tokens): multiples of the p95 prompt and p99 output, cut so that
    their sum fits ``context_window`` (new tokens keep at most half of it)."""
    t = d.traffic
    new = math.ceil(OUTPUT_MULTIPLE * t.output_tokens.percentile(99))
    new = min(new, context_window // 2)
    inp = math.ceil(INPUT_MULTIPLE * t.input_tokens.percentile(95))
    return max(1, min(inp, context_window - new)), max(1, new)


def max_wait_s(d: ModelDemand) -> tuple[float, str]:
    """Longest tolerable queue wait (s) and which target set it."""
    if d.slo.ttft is not None:
        return d.slo.ttft.max_ms / 1e3, "ttft target"
    if d.slo.e2e is not None:
        return d.slo.e2e.max_ms / 1e3, "e2e target"
    assert d.slo.tpot is not None
    return d.slo.tpot.max_ms * d.traffic.output_tokens.percentile(99) / 1e3, "tpot target x p99 output"


def queue_limits(wait_s: float, arrival_rps: float) -> tuple[int, int]:
    """(queue_limit, circuit_breaker_queue): ``wait x rate`` requests and the trip point at
    ``BREAKER_FRACTION`` of it. 2 s x 50 req/s -> (100, 85)."""
    limit = max(1, math.ceil(wait_s * arrival_rps - 1e-9))
    return limit, max(1, math.floor(BREAKER_FRACTION * limit + 1e-9))


def expected_use(dep: Deployment, d: ModelDemand) -> dict[str, float]:
    """What the plan expects one replica of ``dep`` to show at its planned load.

    In flight (Little's law) = rate per replica x mean stay, the stay taken as p99 TTFT + mean
    output x p99 TPOT from the plan (so an upper estimate). KV use = in flight x (mean prompt + half the mean output) over the pool the batch
    cap reserves (batch cap x (p99 prompt + p99 output)). GPU busy share = 1 - exp(-in flight),
    the chance at least one request is in flight (M/G/infinity), since an engine runs kernels
    whenever it holds a request.
    """
    t = d.traffic
    lam = dep.load_rps / dep.replicas
    in_flight = lam * (dep.ttft_p99_ms + t.output_tokens.mean() * dep.tpot_p99_ms) / 1e3
    held = t.input_tokens.mean() + t.output_tokens.mean() / 2
    pool = dep.max_batch * (t.input_tokens.percentile(99) + t.output_tokens.percentile(99))
    return {
        "in_flight_per_replica": in_flight,
        "kv_utilisation_pct": min(100.0, 100.0 * in_flight * held / pool),
        "gpu_busy_pct": 100.0 * (1.0 - math.exp(-in_flight)),
        "slot_utilisation_pct": min(100.0, 100.0 * in_flight / dep.max_batch),
    }


def lead_time(cat: Catalog, dep: Deployment, load_gb_s: float | None) -> tuple[float, float, str, float]:
    """(seconds, GB/s, source of the bandwidth, weight GB per GPU) to load one replica's weights."""
    terms = shape_terms(cat, dep.shape)
    gb = terms.weight_bytes_gpu / 1e9
    if load_gb_s is not None:
        return gb / load_gb_s, load_gb_s, "given load bandwidth", gb
    bw = cat.accelerator(dep.accelerator).pcie_gb_s
    src = (f"catalog accelerators.yaml {dep.accelerator} pcie_gb_s (host link, one direction): a "
           "lower bound on lead time; storage/network, engine start and graph capture add to it")
    return gb / bw, bw, src, gb


def alerts(d: ModelDemand, expected: dict[str, float]) -> list[dict[str, Any]]:
    """Alert targets: GPU memory and KV bands, preemption, prefix-cache hit rate, p99 latencies."""
    out: list[dict[str, Any]] = [
        {"metric": "gpu_memory_used_pct", "warn_below": round(100 * UTILISATION - 10, 1),
         "warn_above": round(100 * UTILISATION + 5, 1),
         "why": f"the engine reserves {UTILISATION:.0%} of HBM at start; far below means the "
                "memory cap was not applied, above means something else shares the GPU"},
        {"metric": "kv_cache_utilisation_pct",
         "warn_below": round(max(0.0, expected["kv_utilisation_pct"] - BAND_POINTS), 1),
         "warn_above": KV_HIGH_PCT,
         "expected": round(expected["kv_utilisation_pct"], 1),
         "why": "above: near preemption; below the band: the plan over-provisions (re-plan)"},
        {"metric": "preemptions_per_s", "page_above": 0.0,
         "why": "the plan assumes a no-eviction scheduler; any sustained preemption breaks p99"},
    ]
    hit = d.traffic.prefix_cache_hit_rate
    if hit > 0:
        out.append({"metric": "prefix_cache_hit_rate", "warn_below": round(max(0.0, hit - 0.1), 3),
                    "expected": hit,
                    "why": "the plan's prefill time assumes this hit rate; lower means slower TTFT"})
    for key, target, metric in (("ttft", d.slo.ttft, "ttft_p99_ms"), ("tpot", d.slo.tpot, "itl_p99_ms"),
                                ("e2e", d.slo.e2e, "e2e_p99_ms")):
        if target is not None:
            out.append({"metric": metric, "warn_above": round(WARN_FRACTION * target.max_ms, 3),
                        "page_above": target.max_ms,
                        "why": f"{key} target p{target.percentile:g} <= {target.max_ms:g} ms"})
    return out


def for_model(cat: Catalog, d: ModelDemand, deps: Sequence[Deployment],
              load_gb_s: float | None = None) -> dict[str, Any]:
    """Guardrails for one planned model (``deps``: its deployments, at least one)."""
    ctx = cat.model(deps[0].model_id).max_context
    max_in, max_new = token_limits(d, ctx)
    wait, wait_from = max_wait_s(d)
    q, breaker = queue_limits(wait, d.traffic.peak_rps)
    replicas = sum(x.replicas for x in deps)
    capacity = sum(x.total_capacity_rps for x in deps)
    warm = max(1, min(replicas, math.ceil(replicas * d.traffic.peak_rps / capacity - 1e-9)))
    leads = [lead_time(cat, x, load_gb_s) for x in deps]
    slow = max(leads)
    busiest = max(deps, key=lambda x: x.load_rps / x.replicas)
    expected = expected_use(busiest, d)
    return {
        "model": d.name, "model_id": deps[0].model_id, "context_window": ctx,
        "max_input_tokens": max_in, "max_new_tokens": max_new,
        "queue_limit": q, "circuit_breaker_queue": breaker,
        "queue_basis": {"max_wait_s": wait, "from": wait_from, "arrival_rps": d.traffic.peak_rps},
        "min_warm_replicas": warm, "replicas": replicas,
        "scale_up_lead_time_s": round(slow[0], 3),
        "scale_up_basis": {"weight_gb_per_gpu": round(slow[3], 3), "load_gb_s": slow[1], "source": slow[2]},
        "expected": {k: round(v, 3) for k, v in expected.items()},
        "alerts": alerts(d, expected),
        "workload": workload(d),
    }


def for_plan(plan: Plan, problem: Problem, cat: Catalog, load_gb_s: float | None = None) -> tuple[dict[str, Any], ...]:
    """Guardrails for every model of a plan that has deployments (in the problem's order)."""
    out = []
    for d in problem.models:
        deps = [x for x in plan.deployments if x.model == d.name]
        if deps:
            out.append(for_model(cat, d, deps, load_gb_s))
    return tuple(out)


def attach(plan: Plan, problem: Problem, cat: Catalog, load_gb_s: float | None = None) -> Plan:
    """``plan`` with its guardrails (what ``api.solve`` returns)."""
    return replace(plan, guardrails=for_plan(plan, problem, cat, load_gb_s))
