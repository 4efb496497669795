"""Erlang C queueing (solver.queueing) and float->int scaling (solver.scaling)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver import scaling
from solver.queueing import (
    RHO_MAX, erlang_c, max_arrival_rate, p_wait_exceeds, wait_quantile_grid, wait_quantile_many,
    wait_quantile_s,
)


def _erlang_c_direct(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("c,a", [(1, 0.5), (2, 1.0), (4, 3.2), (8, 2.0), (16, 15.0), (30, 12.5)])
def test_erlang_c_matches_textbook_formula(c, a):
    assert erlang_c(c, a)[0] == pytest.approx(_erlang_c_direct(c, a), rel=1e-10)


def test_erlang_c_limits_and_large_c():
    assert erlang_c(1, 0.3)[0] == pytest.approx(0.3)  # M/M/1: P(wait) = rho
    assert erlang_c(4, 0.0)[0] == 0.0
    assert erlang_c(4, 4.0)[0] == 1.0 and erlang_c(4, 9.0)[0] == 1.0
    big = erlang_c(1024, np.array([10.0, 500.0, 1000.0, 1020.0]))
    assert np.all(np.isfinite(big)) and np.all(np.diff(big) >= 0) and big[0] < 1e-100


def test_wait_quantile_mm1_closed_form():
    lam, s = 0.8, 1.0  # rho 0.8, mu 1: P(W > t) = 0.8 exp(-0.2 t)
    t99 = wait_quantile_s(1, lam, s, 0.99)[0]
    assert t99 == pytest.approx(math.log(0.8 / 0.01) / 0.2)
    assert p_wait_exceeds(1, lam, s, t99) == pytest.approx(0.01)
    assert wait_quantile_s(1, 0.005, s, 0.99)[0] == 0.0  # P(wait) < 1%: the p99 wait is 0
    assert math.isinf(wait_quantile_s(2, 3.0, 1.0, 0.99)[0])


def test_max_arrival_rate_is_the_largest_rate_within_budget():
    c = np.array([1, 8, 64, 64, 256])
    s = np.array([2.0, 10.0, 20.0, 20.0, 30.0])
    budget = np.array([5.0, 0.5, 0.0, 2.0, 1.0])
    lam = max_arrival_rate(c, s, budget, p=0.99)
    waits = wait_quantile_many(c, lam, s, 0.99)
    assert np.all(waits <= budget + 1e-9)
    above = wait_quantile_many(c, lam * 1.002 + 1e-6, s, 0.99)
    assert np.all((above > budget) | (lam * 1.002 * s / c > RHO_MAX))
    assert np.all(lam * s / c <= RHO_MAX + 1e-12)
    # more budget never lowers the rate; an infinite budget gives the utilisation cap
    assert np.all(max_arrival_rate(c, s, budget + 1.0) >= lam)
    inf = max_arrival_rate(c, s, np.full(5, np.inf))
    assert inf == pytest.approx(RHO_MAX * c / s)
    assert max_arrival_rate(np.array([4]), np.array([1.0]), np.array([-1.0]))[0] == 0.0


def test_grid_wait_agrees_with_exact():
    c = np.array([8, 8, 96, 512])
    s = np.array([5.0, 5.0, 12.0, 40.0])
    lam = np.array([0.2, 1.3, 7.0, 11.0])
    exact = wait_quantile_many(c, lam, s, 0.99)
    grid = wait_quantile_grid(c, lam, s, 0.99)
    assert grid == pytest.approx(exact, rel=2e-2, abs=1e-3)


def test_scaling_rounds_conservatively():
    assert scaling.price_cents(2.69) == 269
    assert scaling.price_cents(1.66875) == 167
    assert scaling.budget_cents(400) == 40000 and scaling.budget_cents(0.129) == 12
    assert scaling.capacity_mrps(1.2349) == 1234 and scaling.capacity_mrps(0.0004) == 0
    assert scaling.capacity_mrps(float("nan")) == 0
    assert scaling.demand_mrps(14.4) == 14400 and scaling.demand_mrps(1.0001) == 1001
    assert scaling.power_w(700.2) == 701 and scaling.power_limit_w(60) == 60000
    for x in (0.1, 0.3, 1 / 3, 2.675, 14.4, 123.456789):
        assert scaling.mrps_to_rps(scaling.capacity_mrps(x)) <= x + 1e-12
        assert scaling.mrps_to_rps(scaling.demand_mrps(x)) >= x - 1e-12
        assert scaling.cents_to_usd(scaling.price_cents(x)) >= x - 1e-12
        assert scaling.cents_to_usd(scaling.budget_cents(x)) <= x + 1e-12
        # exact values survive a round trip unchanged
    assert scaling.cents_to_usd(scaling.price_cents(3.59)) == 3.59
    assert scaling.mrps_to_rps(scaling.demand_mrps(6.0)) == 6.0


def _simulate_waits(c: int, lam: float, s: float, n: int, seed: int) -> np.ndarray:
    """FCFS M/M/c by event simulation: each arrival takes the earliest-free slot."""
    import heapq

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    services = rng.exponential(s, n)
    free = [0.0] * c
    waits = np.empty(n)
    for i in range(n):
        t = arrivals[i]
        start = max(t, heapq.heappop(free))
        waits[i] = start - t
        heapq.heappush(free, start + services[i])
    return waits[n // 10:]  # drop the warm-up


@pytest.mark.parametrize("c,rho", [(1, 0.7), (8, 0.85), (32, 0.9)])
def test_erlang_c_against_a_discrete_event_simulation(c, rho):
    s = 2.0
    lam = rho * c / s
    waits = _simulate_waits(c, lam, s, 200_000, seed=c)
    assert (waits > 0).mean() == pytest.approx(erlang_c(c, lam * s)[0], abs=0.02)
    assert np.quantile(waits, 0.99) == pytest.approx(wait_quantile_s(c, lam, s, 0.99)[0], rel=0.1)
