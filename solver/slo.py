"""Percentile latencies of one replica under load: the cost model's operating point plus the
queueing wait of :mod:`solver.queueing`.

For a replica of shape ``terms`` with batch cap ``B`` (slots) and Poisson arrivals ``lam``:

- ``TTFT_q(lam) = TTFT0_q + W_q(lam)`` where ``TTFT0_q`` is the prefill of the q-th percentile
  prompt co-scheduled with a full batch (``B - 1`` decoding sequences) and ``W_q`` the q-quantile
  of the wait for a slot (M/M/B, see :mod:`solver.queueing`);
- ``TPOT_q`` = the step time at a full batch with q-th percentile prompt and output lengths
  (every slot holding a long request is the conservative proxy; it does not depend on load once
  the batch is full, and is lower below);
- ``E2E_q(lam) = TTFT_q(lam) + OSL_q x TPOT_q`` (a sum of quantiles bounds the quantile of the
  sum from above for these co-monotone parts);
- the slot occupancy ``s`` (service time) is the *mean* request's stay at a full batch:
  ``OSL_mean x TPOT(ISL_mean, OSL_mean)``; prefill work is amortised into TPOT by the cost model.

Capacity at the SLO is the largest ``lam`` that keeps every target (and utilisation
<= ``queueing.RHO_MAX``). A target that the replica misses even at zero load is reported as
violated; the capacity is then computed against the other targets, so that the optimiser can
tell *which* target makes a candidate unusable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from solver.costmodel import ShapeTerms, max_concurrency
from solver.costmodel import operating_point as plain_operating_point
from solver.costmodel.speculative import Speculation, max_concurrency_spec, speculative_operating_point
from solver.problem import ModelDemand
from solver.queueing import RHO_MAX, max_arrival_rate, wait_quantile_s


BATCH_GRID = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
"""Batch caps (max concurrent sequences per replica) considered: a 1.5x/2x ladder; engines
rarely run more than 1024 sequences per replica."""



@dataclass(frozen=True)
class Lengths:
    """Token lengths the percentile model reads from a model's traffic."""

    isl_mean: int
    osl_mean: int
    prefix_hit_rate: float

    @staticmethod
    def of(d: ModelDemand) -> "Lengths":
        t = d.traffic
        return Lengths(
            isl_mean=max(1, math.ceil(t.input_tokens.mean())),
            osl_mean=max(1, math.ceil(t.output_tokens.mean())),
            prefix_hit_rate=t.prefix_cache_hit_rate,
        )


def memory_context_tokens(d: ModelDemand) -> int:
    """Context each slot reserves: p99 prompt + p99 output (a no-eviction scheduler)."""
    t = d.traffic
    return t.input_tokens.percentile(99) + t.output_tokens.percentile(99)


def memory_limit(terms: ShapeTerms, d: ModelDemand, spec: Speculation | None = None) -> int:
    """Largest batch a replica holds at :func:`memory_context_tokens` per slot, after the
    traffic's cached shared prefix (``shared_prefix_tokens``, held once per KV pool) and, with
    ``spec``, the draft's weights and KV."""
    if spec is not None:
        return max_concurrency_spec(terms, spec, memory_context_tokens(d), d.traffic.shared_prefix_tokens)
    n = max_concurrency(terms, memory_context_tokens(d), shared_prefix_tokens=d.traffic.shared_prefix_tokens)
    return int(n) if np.ndim(n) == 0 else n  # type: ignore[return-value]  # stacked terms: one per shape


@dataclass(frozen=True)
class SloView:
    """Load-independent parts of the percentile latencies, one entry per batch cap."""

    batch: np.ndarray
    service_s: np.ndarray
    ttft0_ms: np.ndarray
    """TTFT at zero wait (at the ttft target's percentile, p99 without one)."""
    tpot_ms: np.ndarray
    """TPOT at the tpot target's percentile (p99 when there is no tpot target)."""
    e2e0_ms: np.ndarray
    """E2E at zero wait (at the e2e target's percentile, p99 without one)."""
    max_concurrency: int


def slo_view(terms: ShapeTerms, batch: np.ndarray, d: ModelDemand, spec: Speculation | None = None) -> SloView:
    """Evaluate the cost model at every batch cap for the demand's lengths and targets (with
    speculative decoding when ``spec`` is given)."""
    batch = np.asarray(batch, dtype=np.int64)
    t, slo = d.traffic, d.slo
    hit = t.prefix_cache_hit_rate

    def operating_point(terms_: ShapeTerms, b: np.ndarray, isl: int, osl: int, h: float):  # type: ignore[no-untyped-def]
        if spec is None:
            return plain_operating_point(terms_, b, isl, osl, h)
        return speculative_operating_point(terms_, spec, b, isl, osl, h, t.shared_prefix_tokens)

    ln = Lengths.of(d)
    mean_op = operating_point(terms, batch, ln.isl_mean, ln.osl_mean, hit)
    service_s = ln.osl_mean * mean_op.tpot_ms / 1e3

    cache: dict[float, object] = {}

    def op_at(q: float):
        if q not in cache:
            cache[q] = operating_point(
                terms, batch, t.input_tokens.percentile(q), t.output_tokens.percentile(q), hit
            )
        return cache[q]

    tpot_q = slo.tpot.percentile if slo.tpot else 99.0
    tpot_ms = op_at(tpot_q).tpot_ms
    ttft0 = op_at(slo.ttft.percentile if slo.ttft else 99.0).ttft_ms
    q = slo.e2e.percentile if slo.e2e else 99.0
    op = op_at(q)
    e2e0 = op.ttft_ms + t.output_tokens.percentile(q) * op.tpot_ms
    cap = memory_limit(terms, d, spec)
    return SloView(batch, service_s, ttft0, tpot_ms, e2e0, cap)


@dataclass(frozen=True)
class SloResult:
    """Per batch cap: which targets are missed at zero load, and the capacity at the others."""

    ttft_violated: np.ndarray
    tpot_violated: np.ndarray
    e2e_violated: np.ndarray
    capacity_rps: np.ndarray


def capacity_at_slo(view: SloView, d: ModelDemand) -> SloResult:
    """Largest arrival rate per replica within every target the replica can meet at all."""
    slo = d.slo
    n = view.batch.shape
    no = np.zeros(n, dtype=bool)
    tpot_bad = view.tpot_ms > slo.tpot.max_ms if slo.tpot else no
    cap = RHO_MAX * view.batch / view.service_s
    ttft_bad, e2e_bad = no, no
    if slo.ttft is not None:
        budget_ms = slo.ttft.max_ms - view.ttft0_ms
        ttft_bad = budget_ms < 0
        lam = max_arrival_rate(view.batch, view.service_s, np.maximum(budget_ms, 0) / 1e3,
                               p=slo.ttft.percentile / 100)
        cap = np.where(ttft_bad, cap, np.minimum(cap, lam))
    if slo.e2e is not None:
        budget_ms = slo.e2e.max_ms - view.e2e0_ms
        e2e_bad = budget_ms < 0
        lam = max_arrival_rate(view.batch, view.service_s, np.maximum(budget_ms, 0) / 1e3,
                               p=slo.e2e.percentile / 100)
        cap = np.where(e2e_bad, cap, np.minimum(cap, lam))
    return SloResult(ttft_bad, tpot_bad, e2e_bad, cap)


@dataclass(frozen=True)
class LatencyAtLoad:
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    utilisation: float


def latencies(batch: int, service_s: float, ttft0_ms: float, tpot_ms: float, e2e0_ms: float,
              d: ModelDemand, lam_per_s: float) -> LatencyAtLoad:
    """Percentile latencies of a replica with ``batch`` slots at arrival rate ``lam_per_s``:
    the zero-load TTFT/E2E plus the queueing wait at each target's percentile (p99 if none)."""
    slo = d.slo

    def wait_ms(q: float) -> float:
        return float(wait_quantile_s(batch, lam_per_s, service_s, q / 100)[0]) * 1e3

    ttft = ttft0_ms + wait_ms(slo.ttft.percentile if slo.ttft else 99.0)
    e2e = e2e0_ms + wait_ms(slo.e2e.percentile if slo.e2e else 99.0)
    return LatencyAtLoad(ttft, tpot_ms, e2e, lam_per_s * service_s / batch)


def latency_at_load(view: SloView, i: int, d: ModelDemand, lam_per_s: float) -> LatencyAtLoad:
    """Percentile latencies of batch cap ``view.batch[i]`` at arrival rate ``lam_per_s``."""
    return latencies(int(view.batch[i]), float(view.service_s[i]), float(view.ttft0_ms[i]),
                     float(view.tpot_ms[i]), float(view.e2e0_ms[i]), d, lam_per_s)
