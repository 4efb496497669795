"""Hand-computed checks of the latency-under-load terms of solver.slo (continuous batching with a
prefill-token budget): the mean step at load, the prefill-token queue (M/G/1), the slot queue
(Erlang C), a prompt's own chunks, the running step's residual, and the capacity search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver.slo import (
    STEP_GRID,
    PromptMix,
    StepTimes,
    load_state,
    _normal_tail,
    max_rate_within,
    own_prefill_ms,
    ttft_quantile_ms,
    tpot_quantile_ms,
    tpot_tail,
    ttft_tail,
)

# Td(b) = 10 ms, Tc(b) = 50 ms (no batch slope), 1000 prompt tokens per step, 1 ms overhead
K = len(STEP_GRID)
ONE = np.array([1.0])
ST = StepTimes(np.array([1000.0]), np.array([1.0]), np.array([64.0]), np.full((1, K), 10.0), np.full((1, K), 50.0), ONE)


def mix(tokens: float, osl: float = 100.0) -> PromptMix:
    return PromptMix(np.array([tokens]), np.array([1.0]), np.array([osl]), np.array([1.0]))


def test_mean_step_and_prefill_queue_at_load() -> None:
    """1 req/s of 100-token prompts and 100-token outputs: f = 1e-4 tau, tau = 10 + 40 f, so
    tau = 10 / 0.996 ms; b = lam E[osl] tau; rho_p = lam E[isl] Tc / C = 0.005; service of a prompt
    S = 100 x 50 / 1000 = 5 ms, so the Pollaczek-Khinchine mean wait is lam E[S^2] / (2 (1 - rho))."""
    ls = load_state(ONE, np.array([64.0]), ST, mix(100))
    tau = 10 / 0.996
    assert ls.tau_ms[0] == pytest.approx(tau, rel=1e-9)
    assert ls.batch[0] == pytest.approx(1e-3 * 100 * tau, rel=1e-9)
    assert ls.chunk_share[0] == pytest.approx(1e-4 * tau, rel=1e-9)
    assert ls.rho_prefill[0] == pytest.approx(0.005)
    wbar = 1e-3 * 25 / (2 * 0.995)
    assert ls.p_wait_prefill[0] == pytest.approx(0.005)
    assert ls.theta_prefill[0] == pytest.approx(0.005 / wbar)


def test_slot_queue_is_erlang_c_on_the_stay_at_load() -> None:
    """Two slots; stay = E[osl] tau + E[isl] Tc / C; C(2, a) = (a^2 / (2 - a)) / (1 + a + a^2 / (2 - a))."""
    ls = load_state(ONE, np.array([2.0]), ST, mix(100))
    tau = 10 / 0.996
    stay = 100 * tau + 100 * 50 / 1000
    a = 1e-3 * stay
    top = a * a / (2 - a)
    assert ls.stay_ms[0] == pytest.approx(stay)
    assert ls.p_wait_slot[0] == pytest.approx(top / (1 + a + top))
    # waiting happens with both slots busy: steps at b = 2, the same 10 / 50 ms here
    assert ls.stay_full_ms[0] == pytest.approx(stay)
    assert ls.theta_slot[0] == pytest.approx((2 - a) / stay)
    assert ls.p_idle[0] == pytest.approx(math.exp(-a))


def test_own_chunks_fill_the_last_step_with_the_queue_utilisation() -> None:
    """2500 tokens, 1000 per step: two full chunk steps, then 500 tokens whose spare budget is
    used with probability rho_p = 0.005: 2 x 50 + 10 + (0.5 + 0.5 x 0.005) x 40."""
    ls = load_state(ONE, np.array([64.0]), ST, mix(100))
    own = own_prefill_ms(np.array([2500.0]), ST, ls)
    assert own[0, 0] == pytest.approx(100 + 10 + 0.5025 * 40)


def test_zero_load_ttft_is_overhead_plus_own_chunks() -> None:
    """No load: no queue, no running step; 2500 tokens: 1 + 2 x 50 + 10 + 0.5 x 40 = 131 ms."""
    assert ttft_quantile_ms(np.zeros(1), np.array([64.0]), ST, mix(2500), 0.99)[0] == pytest.approx(131, rel=1e-3)


def test_zero_load_ttft_quantile_reads_the_prompt_mix() -> None:
    """Half the prompts 100 tokens (1 + 10 + 0.1 x 40 = 15 ms), half 2500 (131 ms): the median is
    the short prompt's, the p99 the long one's."""
    m = PromptMix(np.array([100.0, 2500.0]), np.array([0.5, 0.5]), np.array([100.0]), np.array([1.0]))
    p99 = ttft_quantile_ms(np.zeros(1), np.array([64.0]), ST, m, 0.99)[0]
    p40 = ttft_quantile_ms(np.zeros(1), np.array([64.0]), ST, m, 0.40)[0]
    assert p99 == pytest.approx(131, rel=1e-3)
    assert p40 == pytest.approx(15, rel=1e-3)


def test_running_step_residual_is_uniform_over_the_length_biased_step() -> None:
    """A busy replica (1 req/s, stays ~1 s): a 100-token prompt waits for the running step, spread
    over three points (1/6, 1/2, 5/6 of the length-biased step (1-f) Td^2 + f Tc^2 over tau).
    Between the 1/2 and 5/6 points only the last third (of the busy share) and the queue's own
    tiny tail remain."""
    m = mix(100)
    ls = load_state(ONE, np.array([64.0]), ST, m)
    f, tau = ls.chunk_share[0], ls.tau_ms[0]
    tr = ((1 - f) * 100 + f * 2500) / tau
    assert ls.residual_ms[0] == pytest.approx(tr)
    own = own_prefill_ms(np.array([100.0]), ST, ls)[0, 0] + 1.0
    t = own + 0.7 * tr
    busy = 1 - ls.p_idle[0]
    tail = ttft_tail(np.array([t]), ls, ST, m)[0]
    assert busy / 3 < tail < busy / 3 + 0.006  # the queue waits add < rho_p + P(all slots busy)


def test_unstable_prefill_queue_has_infinite_ttft() -> None:
    """rho_p = lam E[isl] Tc / C >= 1: 25 req/s of 1000-token prompts at 50 ms per 1000 tokens is 1.25."""
    assert np.isinf(ttft_quantile_ms(np.array([25.0]), np.array([4096.0]), ST, mix(1000, 1), 0.99)[0])


def test_capacity_is_where_the_quantile_reaches_the_budget() -> None:
    """The rate found keeps the p99 within 300 ms, and 2% more breaks it; never above the cap."""
    m = PromptMix(np.array([100.0, 2500.0]), np.array([0.7, 0.3]), np.array([200.0]), np.array([1.0]))
    cap = np.array([64.0])
    lam = max_rate_within(np.array([300.0]), np.array([100.0]), cap, ST, m, 0.99)[0]
    assert 0 < lam < 100
    assert ttft_quantile_ms(np.array([lam]), cap, ST, m, 0.99)[0] <= 300 * (1 + 1e-4)
    assert ttft_quantile_ms(np.array([lam * 1.02]), cap, ST, m, 0.99)[0] > 300
    assert max_rate_within(np.array([1e9]), np.array([0.5]), cap, ST, m, 0.99)[0] == 0.5


def test_step_spread_from_prompt_tokens() -> None:
    """1 req/s of 100-token prompts: lam tau prompts per step, so the prompt tokens of a step
    have variance lam tau E[isl^2] (below the Bernoulli cap f (1 - f) C^2), and the step's sd is
    (Tc - Td) / C times its root, over 1 - lam E[isl] (Tc - Td) / C = 1 - 0.004."""
    ls = load_state(ONE, np.array([64.0]), ST, mix(100))
    tau = 10 / 0.996
    assert ls.step_sd_ms[0] == pytest.approx(40 / 1000 * math.sqrt(1e-3 * tau * 100**2) / 0.996)


def test_normal_tail() -> None:
    """Against math.erfc: P(Z > z) = erfc(z / sqrt 2) / 2, within 1e-6."""
    z = np.array([-3.0, -1.0, 0.0, 0.5, 2.326, 4.0])
    want = np.array([0.5 * math.erfc(x / math.sqrt(2)) for x in z])
    assert np.allclose(_normal_tail(z), want, atol=1e-6)


def test_tpot_tail_is_widest_for_short_outputs() -> None:
    """Outputs of 2 and 401 tokens, half each: P(TPOT > tau + x) = (Q(x / sd) + Q(20 x / sd)) / 2
    (one step and 400 steps); the p99 is set by the short outputs."""
    m = PromptMix(np.array([100.0]), np.array([1.0]), np.array([2.0, 401.0]), np.array([0.5, 0.5]))
    ls = load_state(np.array([5.0]), np.array([64.0]), ST, m)
    sd, tau = ls.step_sd_ms[0], ls.tau_ms[0]
    x = 1.5 * sd
    q = lambda z: 0.5 * math.erfc(z / math.sqrt(2))  # noqa: E731
    assert tpot_tail(np.array([tau + x]), ls, m)[0] == pytest.approx((q(1.5) + q(30.0)) / 2, abs=1e-6)
    # p99 over the mix: Q(z) = 0.02 for the short half, z = 2.054
    p99 = tpot_quantile_ms(np.array([5.0]), np.array([64.0]), ST, m, 0.99)[0]
    assert p99 == pytest.approx(tau + 2.0537 * sd, rel=2e-3)


def test_tpot_at_zero_load_is_the_decode_step() -> None:
    """No prompts running beside it: every step is decode-only, 10 ms."""
    assert tpot_quantile_ms(np.zeros(1), np.array([64.0]), ST, mix(100), 0.99)[0] == pytest.approx(10, rel=1e-3)


def test_tpot_capacity_is_where_the_quantile_reaches_the_target() -> None:
    m = PromptMix(np.array([100.0, 2500.0]), np.array([0.7, 0.3]), np.array([20.0, 300.0]), np.array([0.5, 0.5]))
    cap = np.array([64.0])
    lam = max_rate_within(np.array([20.0]), np.array([100.0]), cap, ST, m, 0.99, "tpot")[0]
    assert 0 < lam < 100
    assert tpot_quantile_ms(np.array([lam]), cap, ST, m, 0.99)[0] <= 20 * (1 + 1e-4)
    assert tpot_quantile_ms(np.array([lam * 1.02]), cap, ST, m, 0.99)[0] > 20


def test_step_table_interpolates_between_batches() -> None:
    """Cap 65: the grid holds b = 1, 5, 17, 33, 65; step = b ms there, so at b = 20 it is 20 ms
    (between 17 and 33), and beyond the cap or below 1 it is clamped."""
    b = 1 + 64 * STEP_GRID
    st = StepTimes(np.array([1000.0]), np.array([0.0]), np.array([65.0]), b[None, :], 2 * b[None, :], ONE)
    assert st.decode_at(np.array([20.0]))[0] == pytest.approx(20)
    assert st.chunk_at(np.array([20.0]))[0] == pytest.approx(40)
    assert st.decode_at(np.array([0.2]))[0] == pytest.approx(1)
    assert st.decode_at(np.array([99.0]))[0] == pytest.approx(65)
    assert StepTimes.of(st.at(0)).decode_at(np.array([20.0]))[0] == pytest.approx(20)


def test_slot_queue_drains_at_the_full_batch() -> None:
    """Decode steps 10 ms at b = 1 but 20 ms at the cap of 4: with every slot busy a 100-output
    request stays 100 x tau_full + 100 x 50 / 1000 ms, tau_full = 20 / (1 - lam E[isl] 30 / C);
    at 1.5 req/s that is ~2.0 s, so 4 slots drain 2.0 - 1.5 per s; at 2.5 req/s they cannot."""
    st = StepTimes(np.array([1000.0]), np.array([1.0]), np.array([4.0]),
                   (10 + 10 * STEP_GRID)[None, :], np.full((1, K), 50.0), ONE)
    ls = load_state(np.array([1.5]), np.array([4.0]), st, mix(100))
    tau_full = 20 / (1 - 1.5e-3 * 100 * 30 / 1000)
    full = 100 * tau_full + 5
    assert ls.stay_full_ms[0] == pytest.approx(full)
    assert ls.theta_slot[0] == pytest.approx((4 - 1.5e-3 * full) / full)
    assert load_state(np.array([2.5]), np.array([4.0]), st, mix(100)).theta_slot[0] == 0
