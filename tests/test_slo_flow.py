"""What a candidate's evaluation puts in its shape terms -- speculative decoding, LoRA adapters,
a calibration overlay -- and the ``--confidence`` multiplier flow into the step tables of the
latency-under-load model (solver.slo) exactly as they did into the zero-load operating point:
the tables a candidate keeps are the tables of those terms, and the latencies under load read
them (tokens per step, scaled steps)."""

from __future__ import annotations

import numpy as np
import pytest

from solver.candidates import Candidate, model_table
from solver.catalog import load_catalog
from solver.costmodel import shape_terms
from solver.costmodel.speculative import cycle_ms, speculation
from solver.lora import demand_terms
from solver.overlay import Calibration, FitQuality, Scope
from solver.problem import Problem
from solver.slo import (
    STEP_GRID, PromptMix, StepTimes, capacity_at_slo, latencies, latency_at_load, load_state, slo_view, step_times,
    tpot_quantile_ms, tpot_tail,
)
from solver.uncertainty import planning_multiplier, widen

CAT = load_catalog()
LEN = {"p50": 1000, "p90": 1500, "p99": 2000}
OUT = {"p50": 200, "p90": 300, "p99": 400}


def problem(model: str, gpu: str, quant: str, extra: dict | None = None, confidence: float | None = None,
            slo: dict | None = None) -> Problem:
    m = {"name": "m", "model": model, "traffic": {"peak_rps": 5, "input_tokens": LEN, "output_tokens": OUT},
         "slo": slo or {"ttft": {"max_ms": 2000}, "tpot": {"max_ms": 80}}, "allowed_accelerators": [gpu],
         "allowed_quantizations": [quant], **(extra or {})}
    return Problem.model_validate({"name": "t", "models": [m], "confidence": confidence})


def steps_of(c: Candidate) -> StepTimes:
    return StepTimes.of(c.steps)


def same_table(a: StepTimes, b: StepTimes) -> None:
    for f in ("chunk", "overhead_ms", "cap", "decode_ms", "chunk_ms", "tokens"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-12, err_msg=f)


# -- speculative decoding --------------------------------------------------------------------

K = len(STEP_GRID)


def test_tokens_per_step_divide_the_decode_steps_hand_computed() -> None:
    """Cycles of 20 ms (with a chunk 60 ms, C = 1000) emitting 2 tokens: 100-token outputs take
    50 cycles. At 1 req/s of 100-token prompts: f = 1e-4 tau, tau = 20 + 40 f -> tau = 20 / 0.996,
    decoding batch lam (E[osl] / 2) tau, stay (E[osl] / 2) tau + E[isl] Tc / C; zero-load TPOT
    20 / 2 = 10 ms; TPOT of a 401-token output is normal with mean tau / 2 and sd
    step_sd / (2 sqrt(200))."""
    one = np.array([1.0])
    st = StepTimes(np.array([1000.0]), one, np.array([64.0]), np.full((1, K), 20.0), np.full((1, K), 60.0),
                   np.array([2.0]))
    mix = PromptMix(np.array([100.0]), one, np.array([100.0]), one)
    ls = load_state(one, np.array([64.0]), st, mix)
    tau = 20 / 0.996
    assert ls.tau_ms[0] == pytest.approx(tau, rel=1e-9)
    assert ls.batch[0] == pytest.approx(1e-3 * 50 * tau, rel=1e-9)
    assert ls.stay_ms[0] == pytest.approx(50 * tau + 100 * 60 / 1000, rel=1e-9)
    assert tpot_quantile_ms(np.zeros(1), np.array([64.0]), st, mix, 0.99)[0] == pytest.approx(10.0)
    long = PromptMix(np.array([100.0]), one, np.array([401.0]), one)
    ls = load_state(np.array([5.0]), np.array([64.0]), st, long)
    sd = ls.step_sd_ms[0] / (2 * np.sqrt(200))
    x = ls.tau_ms[0] / 2 + 1.5 * sd
    from math import erfc, sqrt
    assert tpot_tail(np.array([x]), ls, long)[0] == pytest.approx(0.5 * erfc(1.5 / sqrt(2)), abs=1e-6)


def test_speculative_candidate_reads_the_cycle_tables_and_accepted_tokens() -> None:
    """A speculative candidate of the table keeps the cycle tables (draft steps + verification)
    and the expected accepted tokens; its TPOT under load is read from them, and is below the
    same shape's plain TPOT at the same load (acceptance 0.7, 3 draft tokens: 2.53 tokens per
    cycle)."""
    spec = {"speculative": {"draft": "llama-3.1-8b", "acceptance_rate": 0.7, "draft_tokens": 3}}
    p = problem("llama-3.1-70b", "h200-sxm", "fp8", spec)
    d = p.models[0]
    table = model_table(CAT, p, d, prune=False)
    specs = [c for c in table.candidates if c.speculative]
    assert specs
    c = specs[0]
    engine = d.engine or CAT.default_engine
    sp = speculation(CAT, c.shape, "llama-3.1-8b", 0.7, 3, engine)
    terms = shape_terms(CAT, c.shape, engine)
    want = step_times(terms, np.array([c.max_batch]), d, sp)
    same_table(steps_of(c), want)
    assert steps_of(c).tokens[0] == pytest.approx((1 - 0.7**4) / 0.3)
    mean_ctx = d.traffic.input_tokens.mean() + d.traffic.output_tokens.mean() / 2
    assert want.decode_ms[0, 0] == pytest.approx(float(cycle_ms(terms, sp, 1.0, mean_ctx)))
    idle = latencies(c.max_batch, c.service_s, c.ttft_min_ms, c.tpot_p99_ms, c.e2e_min_ms, d, 1e-9, c.steps)
    assert idle.tpot_ms == pytest.approx(want.decode_ms[0, 0] / want.tokens[0], rel=1e-4)
    # under load: the candidate's TTFT at its capacity is the tables' TTFT at that load
    v = slo_view(terms, np.array([c.max_batch]), d, sp)
    assert latency_at_load(v, 0, d, c.capacity_rps_per_replica).ttft_ms == pytest.approx(c.ttft_p99_ms, rel=1e-9)
    plain = slo_view(terms, np.array([c.max_batch]), d)
    lam = 0.5 * c.capacity_rps_per_replica
    assert latency_at_load(v, 0, d, lam).tpot_ms < latency_at_load(plain, 0, d, lam).tpot_ms


# -- LoRA ------------------------------------------------------------------------------------

def test_lora_per_token_cost_is_in_the_step_tables() -> None:
    lora = {"lora": {"adapters": [f"t{i}" for i in range(64)], "rank": 64, "resident": 16}}
    p = problem("llama-3.1-8b", "l4", "bf16", lora)
    d = p.models[0]
    c = model_table(CAT, p, d, prune=False).candidates[0]
    engine = d.engine or CAT.default_engine
    base = shape_terms(CAT, c.shape, engine)
    with_adapters = step_times(demand_terms(CAT, d, base), np.array([c.max_batch]), d)
    same_table(steps_of(c), with_adapters)
    without = step_times(base, np.array([c.max_batch]), d)
    assert (with_adapters.decode_ms > without.decode_ms).all()
    assert (with_adapters.chunk_ms > without.chunk_ms).all()


# -- calibration -----------------------------------------------------------------------------

def test_calibration_overlay_is_in_the_step_tables() -> None:
    factors = {"eta_bw": 0.5, "mfu_prefill": 0.4, "mfu_decode": 0.3}
    cal = Calibration(
        id="hand-made", applies_to=Scope(model="llama-3.1-70b", accelerator="h100-sxm", family="hopper",
                                         quant="fp8", kv_dtype="fp8", engine="vllm", tp=4, isl=1000, osl=200),
        factors=factors, fitted=list(factors), interval={k: (v * 0.9, v * 1.1) for k, v in factors.items()},
        fit=FitQuality(points=8, residual_sd_log=0.05, mape_pct={"tpot": 4.0}), error_band=0.05,
        sources=["hand-made for a test"], date="2026-12-01")
    calibrated = CAT.with_calibrations((cal,))
    p = problem("llama-3.1-70b", "h100-sxm", "fp8", {"engine": "vllm"})
    d = p.models[0]
    c = next(c for c in model_table(calibrated, p, d, prune=False).candidates if c.quant == "fp8")
    want = step_times(shape_terms(calibrated, c.shape, "vllm"), np.array([c.max_batch]), d)
    same_table(steps_of(c), want)
    plain = step_times(shape_terms(CAT, c.shape, "vllm"), np.array([c.max_batch]), d)
    assert not np.allclose(want.decode_ms, plain.decode_ms)


# -- --confidence ----------------------------------------------------------------------------

def test_confidence_scales_the_tables_and_rescales_time() -> None:
    """Every step time x m is the same engine run m times slower: at lam / m its latencies are
    m x those at lam, so its capacity within targets T is the point estimate's capacity within
    T / m, divided by m (and never above the point capacity / m)."""
    p = problem("llama-3.1-70b", "h100-sxm", "fp8")
    d = p.models[0]
    point = [c for c in model_table(CAT, p, d, prune=False).candidates if c.quant == "fp8"]
    sure = [c for c in model_table(CAT, p.model_copy(update={"confidence": 0.9}), d, prune=False).candidates
            if c.quant == "fp8"]
    engine = d.engine or CAT.default_engine
    m = planning_multiplier(CAT, "llama-3.1-70b", "h100-sxm", "fp8", engine, 0.9)
    assert m > 1.05
    by = {(c.shape, c.max_batch, bool(c.speculative)): c for c in point}
    n = 0
    for c in sure:
        a = by.get((c.shape, c.max_batch, bool(c.speculative)))
        if a is None:
            continue
        n += 1
        mc = float(planning_multiplier(CAT, "llama-3.1-70b", "h100-sxm", "fp8", engine, 0.9,
                                       np.array([c.max_batch]), d)[0])  # the batch's regime
        same_table(steps_of(c), steps_of(a).scaled(mc))
        if c.violations == a.violations:  # a target missed at zero load leaves the capacity
            assert c.capacity_rps_per_replica <= a.capacity_rps_per_replica / mc * (1 + 1e-5)
    assert n > 3
    c = max(point, key=lambda x: x.capacity_rps_per_replica)
    terms = shape_terms(CAT, c.shape, engine)
    v = slo_view(terms, np.array([c.max_batch]), d)
    w = widen(v, m)
    lam = 0.7 * c.capacity_rps_per_replica
    a, b = latency_at_load(v, 0, d, lam), latency_at_load(w, 0, d, lam / m)
    assert b.ttft_ms == pytest.approx(m * a.ttft_ms, rel=1e-6)
    assert b.tpot_ms == pytest.approx(m * a.tpot_ms, rel=1e-6)
    tight = d.model_copy(update={"slo": d.slo.model_copy(update={
        "ttft": d.slo.ttft.model_copy(update={"max_ms": d.slo.ttft.max_ms / m}),
        "tpot": d.slo.tpot.model_copy(update={"max_ms": d.slo.tpot.max_ms / m})})})
    want = float(capacity_at_slo(v, tight).capacity_rps[0]) / m
    assert float(capacity_at_slo(w, d).capacity_rps[0]) == pytest.approx(want, rel=1e-5)
    assert want < c.capacity_rps_per_replica / m
