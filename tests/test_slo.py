"""solver.slo directly: zero-load latencies from the cost model, capacity at the targets, and
latencies at load (hand-checked against the queueing formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, operating_point, shape_terms
from solver.problem import LatencyTarget, ModelDemand, Slo, TokenLengths, Traffic
from solver.costmodel import decode_step
from solver.queueing import RHO_MAX
from solver.slo import (
    STEP_GRID, Lengths, PromptMix, SloView, StepTimes, capacity_at_slo, latencies, latency_at_load, load_latencies_ms,
    mean_step_ms, memory_context_tokens, slo_view, slot_capacity,
)


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


def test_step_tables_are_the_cost_model_steps_at_the_grid_batches(terms) -> None:
    """Decode-only steps at 1 + (cap - 1) x grid decoding sequences and the mean decode context
    (mean prompt + half the mean output); chunk steps carry a full budget of prompt tokens; the
    stacked evaluation (grid on a leading axis) equals one call per cap."""
    d = demand(Slo(tpot=LatencyTarget(max_ms=50)))
    v = slo_view(terms, np.array([8, 64]), d)
    ctx = d.traffic.input_tokens.mean() + d.traffic.output_tokens.mean() / 2
    for i, cap in enumerate((8, 64)):
        b = 1 + (cap - 1) * STEP_GRID
        np.testing.assert_allclose(v.steps.decode_ms[i], decode_step(terms, b, ctx).total_ms, rtol=1e-12)
    c = float(terms.prefill_chunk_tokens)
    assert (v.steps.chunk_ms > v.steps.decode_ms).all() and (v.steps.chunk == c).all()
    assert (v.steps.tokens == 1).all() and (v.steps.own_scale == 1).all()
    assert list(v.steps.overhead_ms) == [terms.request_overhead_s * 1e3] * 2


def test_slot_capacity_hand_computed() -> None:
    """One row, steps flat in the batch (Td = 10 ms, Tc = 30 ms), B = 8, chunk 1000 tokens,
    mean new prompt 500, mean output 100: A = 100 x 0.010 = 1 s, D = 500 x 0.030 / 1000 =
    0.015 s, k = 500 x 0.020 / 1000 = 0.01 s, R = 0.95 x 8 = 7.6; the smaller root of
    0.015 x 0.01 lam^2 - (1 + 0.015 + 0.076) lam + 7.6 = 0 is 6.97277 req/s; there
    lam E[isl] tau_full / C = 6.97277 x 500 x 0.01075 / 1000 = 0.037 < 1 (prefill not saturated)."""
    g = len(STEP_GRID)
    st = StepTimes(np.array([1000.0]), np.array([0.0]), np.array([8.0]), np.full((1, g), 10.0),
                   np.full((1, g), 30.0), np.array([1.0]), np.array([1.0]))
    d = demand(Slo(tpot=LatencyTarget(max_ms=1000)), isl=(500, 500, 500), osl=(100, 100, 100))
    view = SloView(np.array([8]), np.array([1.0]), np.array([1.0]), np.array([10.0]), np.array([1.0]), 8, st)
    mix = PromptMix.of(d)
    assert mix.mean == pytest.approx(500) and mix.osl_mean == pytest.approx(100)
    a, dd, k, r = 1.0, 0.015, 0.01, 7.6
    bq = a + dd + r * k
    root = (bq - math.sqrt(bq * bq - 4 * dd * k * r)) / (2 * dd * k)
    assert root == pytest.approx(6.97277, abs=1e-5)
    assert slot_capacity(view, d)[0] == pytest.approx(root, rel=1e-12)
    # the slot load there (the full batch's stay, as load_latencies_ms reports it) is RHO_MAX
    assert load_latencies_ms(view, d, np.array([root]))[3][0] == pytest.approx(RHO_MAX, rel=1e-9)


def test_mean_step_at_load_hand_computed() -> None:
    """Td(b) = 10 + b ms, Tc(b) = 30 + b ms (linear), cap 64, chunk 1000, mean prompt 500,
    mean output 100. At lam = 2 req/s (0.002 per ms): b = 0.2 tau, f = 0.001 tau, so
    tau = 10 + 0.2 tau + 0.001 tau x 20 -> tau = 10 / 0.78 = 12.8205 ms (b = 2.56 < 64,
    f = 0.0128 < 1): the exact least fixed point, as iterating would find."""
    cap = 64.0
    b = 1 + (cap - 1) * STEP_GRID
    st = StepTimes(np.array([1000.0]), np.array([0.0]), np.array([cap]), (10 + b)[None, :], (30 + b)[None, :],
                   np.array([1.0]), np.array([1.0]))
    tau = mean_step_ms(np.array([2.0 / 1e3]), np.array([cap]), st, 100.0, 500.0)
    assert tau[0] == pytest.approx(10 / 0.78, rel=1e-12)
    x = st.decode_ms[0, 0]  # plain iteration from Td(1) converges to the same point
    for _ in range(200):
        bb = min(cap, 2e-3 * 100 * x)
        td, tc = 10 + bb, 30 + bb
        x = td + min(1.0, 2e-3 * 500 * x / 1000) * (tc - td)
    assert tau[0] == pytest.approx(x, rel=1e-12)
    # at 20 req/s the slots fill (b = 2 tau >= 64 from tau = 32): tau = 74 + 0.01 tau x 20,
    # tau = 74 / 0.8 = 92.5 ms (f = 0.925 < 1)
    tau = mean_step_ms(np.array([20.0 / 1e3]), np.array([cap]), st, 100.0, 500.0)
    assert tau[0] == pytest.approx(92.5, rel=1e-12)


def test_capacity_without_latency_budget_is_the_slot_load_cap(terms) -> None:
    """With targets that never bind, capacity is where the slots (the full batch's stay) are
    RHO_MAX busy."""
    d = demand(Slo(tpot=LatencyTarget(max_ms=1000)))
    v = slo_view(terms, np.array([4, 32]), d)
    res = capacity_at_slo(v, d)
    assert not res.tpot_violated.any()
    occ = load_latencies_ms(v, d, res.capacity_rps)[3]
    np.testing.assert_allclose(occ, RHO_MAX, rtol=1e-9)


def test_missed_target_is_flagged_and_capacity_ignores_it(terms) -> None:
    d = demand(Slo(ttft=LatencyTarget(max_ms=1e-3), tpot=LatencyTarget(max_ms=1000)))
    v = slo_view(terms, np.array([4, 32]), d)
    res = capacity_at_slo(v, d)
    assert res.ttft_violated.all()
    occ = load_latencies_ms(v, d, res.capacity_rps)[3]
    np.testing.assert_allclose(occ, RHO_MAX, rtol=1e-9)


def test_ttft_at_capacity_uses_the_whole_budget(terms) -> None:
    """At the capacity the TTFT target allows, the p99 TTFT under load is the target (within
    the search's 1e-4), and 5% more load misses it."""
    d = demand(Slo(ttft=LatencyTarget(max_ms=800, percentile=99)))
    v = slo_view(terms, np.array([16]), d)
    lam = float(capacity_at_slo(v, d).capacity_rps[0])
    lat = latency_at_load(v, 0, d, lam)
    assert lat.utilisation < RHO_MAX * (1 - 1e-4)  # the target, not the slots, binds here
    assert lat.ttft_ms <= 800 * (1 + 1e-4) and lat.ttft_ms == pytest.approx(800, rel=2e-2)
    assert latency_at_load(v, 0, d, lam * 1.05).ttft_ms > 800


def test_pruned_runs_keep_each_runs_best_capacity(terms) -> None:
    """With runs, a row is left unfinished (NaN) only where another row of its run has at
    least its capacity; the best row of every run gets the capacity the full search gives."""
    d = demand(Slo(ttft=LatencyTarget(max_ms=800), tpot=LatencyTarget(max_ms=60)))
    batch = np.array([1, 2, 4, 8, 16, 32, 64, 1, 2, 4, 8, 16, 32, 64])
    v = slo_view(terms, batch, d)
    full = capacity_at_slo(v, d).capacity_rps
    runs = np.repeat([0, 1], 7)
    part = capacity_at_slo(v, d, runs, np.zeros(14, dtype=bool)).capacity_rps
    done = np.isfinite(part)
    np.testing.assert_array_equal(part[done], full[done])
    from solver.scaling import capacity_mrps_array
    for r in (0, 1):
        rows = runs == r
        assert capacity_mrps_array(part[rows & done]).max() == capacity_mrps_array(full[rows]).max()


def test_latencies_grow_with_load(terms) -> None:
    d = demand(Slo(ttft=LatencyTarget(max_ms=900, percentile=95), e2e=LatencyTarget(max_ms=90000, percentile=99)))
    v = slo_view(terms, np.array([32]), d)
    idle = latencies(32, float(v.service_s[0]), float(v.ttft0_ms[0]), float(v.tpot_ms[0]), float(v.e2e0_ms[0]),
                     d, 1e-9, v.steps.at(0))
    busy = latency_at_load(v, 0, d, 5.0)
    assert busy.ttft_ms > idle.ttft_ms and busy.tpot_ms > idle.tpot_ms and busy.e2e_ms > idle.e2e_ms
    assert 0 < busy.utilisation < 1
    # idle: TPOT is the lone sequence's decode step, TTFT a prompt's own chunks plus overhead
    assert idle.tpot_ms == pytest.approx(float(v.steps.decode_ms[0, 0]), rel=1e-4)
    assert idle.ttft_ms < float(v.ttft0_ms[0])  # below the full-batch operating point


def test_lengths_mean_rounds_up() -> None:
    d = demand(Slo(tpot=LatencyTarget(max_ms=50)))
    ln = Lengths.of(d)
    assert ln.isl_mean == math.ceil(d.traffic.input_tokens.mean())
    assert ln.osl_mean == math.ceil(d.traffic.output_tokens.mean())
