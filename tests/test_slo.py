"""solver.slo directly: zero-load latencies from the cost model, capacity at the targets, and
latencies at load (hand-checked against the queueing formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, operating_point, shape_terms
from solver.problem import LatencyTarget, ModelDemand, Slo, TokenLengths, Traffic
from solver.queueing import RHO_MAX, wait_quantile_s
from solver.slo import Lengths, capacity_at_slo, latencies, memory_context_tokens, slo_view


def demand(slo: Slo, isl=(1000, 2000, 4000), osl=(100, 200, 400)) -> ModelDemand:
    return ModelDemand(
        name="m", model="llama-3.1-8b",
        traffic=Traffic(peak_rps=5, input_tokens=TokenLengths(p50=isl[0], p90=isl[1], p99=isl[2]),
                        output_tokens=TokenLengths(p50=osl[0], p90=osl[1], p99=osl[2])),
        slo=slo)


@pytest.fixture(scope="module")
def terms():
    cat = load_catalog()
    return shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8", 1))


def test_memory_context_is_p99_prompt_plus_p99_output() -> None:
    assert memory_context_tokens(demand(Slo(tpot=LatencyTarget(max_ms=50)))) == 4000 + 400


def test_view_reads_the_cost_model_at_the_targets_percentiles(terms) -> None:
    d = demand(Slo(ttft=LatencyTarget(max_ms=500, percentile=90), tpot=LatencyTarget(max_ms=50, percentile=99)))
    batch = np.array([1, 8, 64])
    v = slo_view(terms, batch, d)
    t = d.traffic
    p90 = operating_point(terms, batch, t.input_tokens.percentile(90), t.output_tokens.percentile(90), 0.0)
    p99 = operating_point(terms, batch, t.input_tokens.percentile(99), t.output_tokens.percentile(99), 0.0)
    np.testing.assert_allclose(v.ttft0_ms, p90.ttft_ms)  # the TTFT target is p90
    np.testing.assert_allclose(v.tpot_ms, p99.tpot_ms)
    # E2E without a target: p99 prompt's TTFT + p99 output x TPOT at p99
    np.testing.assert_allclose(v.e2e0_ms, p99.ttft_ms + t.output_tokens.percentile(99) * p99.tpot_ms)
    ln = Lengths.of(d)
    mean = operating_point(terms, batch, ln.isl_mean, ln.osl_mean, 0.0)
    np.testing.assert_allclose(v.service_s, ln.osl_mean * mean.tpot_ms / 1e3)


def test_capacity_without_latency_budget_is_the_utilisation_cap(terms) -> None:
    d = demand(Slo(tpot=LatencyTarget(max_ms=1000)))
    v = slo_view(terms, np.array([4, 32]), d)
    res = capacity_at_slo(v, d)
    np.testing.assert_allclose(res.capacity_rps, RHO_MAX * v.batch / v.service_s)
    assert not res.tpot_violated.any()


def test_missed_target_is_flagged_and_capacity_ignores_it(terms) -> None:
    d = demand(Slo(ttft=LatencyTarget(max_ms=1e-3), tpot=LatencyTarget(max_ms=1000)))
    v = slo_view(terms, np.array([4, 32]), d)
    res = capacity_at_slo(v, d)
    assert res.ttft_violated.all()
    np.testing.assert_allclose(res.capacity_rps, RHO_MAX * v.batch / v.service_s)


def test_ttft_at_capacity_uses_the_whole_budget(terms) -> None:
    """At the capacity the TTFT target allows, zero-load TTFT + p-quantile wait = the target."""
    d = demand(Slo(ttft=LatencyTarget(max_ms=800, percentile=99)))
    v = slo_view(terms, np.array([16]), d)
    res = capacity_at_slo(v, d)
    lam = float(res.capacity_rps[0])
    lat = latencies(16, float(v.service_s[0]), float(v.ttft0_ms[0]), float(v.tpot_ms[0]),
                    float(v.e2e0_ms[0]), d, lam)
    if lam < RHO_MAX * 16 / float(v.service_s[0]) * (1 - 1e-9):  # the target, not utilisation, binds
        assert lat.ttft_ms == pytest.approx(800, rel=1e-3)
    else:
        assert lat.ttft_ms <= 800 * (1 + 1e-6)


def test_latencies_at_load_add_the_queueing_wait() -> None:
    d = demand(Slo(ttft=LatencyTarget(max_ms=900, percentile=95), e2e=LatencyTarget(max_ms=9000, percentile=99)))
    lat = latencies(8, 2.0, 100.0, 20.0, 4100.0, d, 3.0)
    w95 = float(wait_quantile_s(8, 3.0, 2.0, 0.95)[0]) * 1e3
    w99 = float(wait_quantile_s(8, 3.0, 2.0, 0.99)[0]) * 1e3
    assert lat.ttft_ms == pytest.approx(100.0 + w95)
    assert lat.e2e_ms == pytest.approx(4100.0 + w99)
    assert lat.tpot_ms == 20.0
    assert lat.utilisation == pytest.approx(3.0 * 2.0 / 8)
    # light load: no wait at all
    assert latencies(8, 2.0, 100.0, 20.0, 4100.0, d, 1e-6).ttft_ms == pytest.approx(100.0)


def test_lengths_mean_rounds_up() -> None:
    d = demand(Slo(tpot=LatencyTarget(max_ms=50)))
    ln = Lengths.of(d)
    assert ln.isl_mean == math.ceil(d.traffic.input_tokens.mean())
    assert ln.osl_mean == math.ceil(d.traffic.output_tokens.mean())
