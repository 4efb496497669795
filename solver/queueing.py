"""Queueing view of one replica: an M/M/c queue whose c servers are the replica's batch slots.

Why a queue at all: a replica running continuous batching with a batch cap ``B`` serves at most
``B`` requests at once; a request that arrives while every slot is busy waits for one to free up.
That wait is what turns a comfortable median TTFT into a bad p99 as load grows, so capacity at an
SLO is decided by the tail of the wait, not by the throughput peak.

Model (Erlang C, M/M/c):

- arrivals Poisson with rate ``lam`` (requests/s) per replica;
- ``c = B`` servers (slots); service time = the request's whole stay in a slot (prefill plus
  ``osl`` decode steps), exponential with mean ``s`` seconds; offered load ``a = lam * s``
  (Erlangs), utilisation ``rho = a / c`` (< 1 for a stable queue);
- probability of waiting ``C(c, a)`` (Erlang C), from Erlang B by the stable recursion
  ``1/B(k) = 1 + (k/a) / B(k-1)`` and ``C = B / (1 - rho (1 - B))``;
- the wait is 0 with probability ``1 - C`` and otherwise exponential with rate ``c/s - lam``, so
  ``P(W > t) = C exp(-(c/s - lam) t)`` and the p-quantile is
  ``t_p = max(0, ln(C / (1 - p)) / (c/s - lam))``.

Limits, stated so that the simulator can check them:

- Service times are not exponential: output lengths are skewed (tails 3-5x the median) but the
  decode time per token is nearly constant, so the squared coefficient of variation of the stay is
  typically 0.3-1.5. Allen-Cunneen's M/G/c correction scales the mean wait by ``(1 + cs^2) / 2``;
  exponential (cs^2 = 1) is conservative for lighter tails and optimistic for heavier ones.
- The slot occupancy time is taken at the batch cap (every slot busy), which over-states the
  service time at light load (conservative).
- Arrivals are Poisson; bursty traffic (batch jobs, retries) has longer waits. Size ``headroom``
  for it.
- The engine is assumed to admit a waiting request the moment a slot frees (FCFS, no KV
  preemption, no prefill/decode disaggregation).
"""

from __future__ import annotations

import functools
import math

import numpy as np

RHO_MAX = 0.95
"""Highest utilisation a replica is planned at, whatever the targets: beyond it the queue is so
sensitive to load that a few percent more traffic than planned breaks every tail target."""


def erlang_c(c: int, a: np.ndarray | float) -> np.ndarray:
    """Probability that an arrival waits, M/M/c with ``c`` servers and offered load ``a`` Erlangs.

    Vectorised over ``a``; 1.0 where ``a >= c`` (unstable queue). Numerically stable for c in
    the thousands (the Erlang B recursion never forms a^c or c!).
    """
    if c < 1:
        raise ValueError(f"c must be >= 1, got {c}")
    a = np.atleast_1d(np.asarray(a, dtype=float))
    out = np.ones_like(a)
    ok = (a > 0) & (a < c)
    out[a <= 0] = 0.0
    if not ok.any():
        return out
    x = a[ok]
    inv_b = np.ones_like(x)  # 1/B(0) = 1
    with np.errstate(over="ignore"):  # 1/B -> inf means B -> 0, which is the right limit
        for k in range(1, c + 1):
            inv_b = 1.0 + (k / x) * inv_b
    b = 1.0 / inv_b
    rho = x / c
    out[ok] = b / (1.0 - rho * (1.0 - b))
    return out


_RHO_POINTS = 4097
_RHO_GRID = np.linspace(0.0, 1.0, _RHO_POINTS)


@functools.lru_cache(maxsize=128)
def _erlang_c_table(c: int) -> np.ndarray:
    """Erlang C of ``c`` servers at utilisations ``linspace(0, 1, _RHO_POINTS)``."""
    return erlang_c(c, _RHO_GRID * c)


def erlang_c_rows(c: np.ndarray, a: np.ndarray) -> np.ndarray:
    """:func:`erlang_c` per row of arrays of server counts ``c`` and offered loads ``a``
    (Erlangs), read (linearly interpolated) off a utilisation grid of 4097 points per distinct
    ``c`` (one Erlang recursion per ``c`` per process instead of one per call); 1.0 where
    ``a >= c``. For the latency tables' many evaluations; :func:`erlang_c` is exact."""
    c = np.asarray(c)
    a = np.broadcast_to(np.asarray(a, dtype=float), c.shape)
    out = np.ones(c.shape)
    cs = np.sort(c, axis=None)
    for ci in cs[np.r_[True, cs[1:] != cs[:-1]]] if cs.size else cs:  # np.unique's values, without its overhead
        sel = c == ci
        out[sel] = np.interp(a[sel] / ci, _RHO_GRID, _erlang_c_table(int(ci)), left=0.0, right=1.0)
    return out


def wait_quantile_s(
    c: int, lam_per_s: np.ndarray | float, service_s: float, p: float = 0.99
) -> np.ndarray:
    """p-quantile of the queueing wait (seconds) of an M/M/c queue; ``inf`` when unstable."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if service_s <= 0:
        raise ValueError(f"service time must be positive, got {service_s}")
    lam = np.atleast_1d(np.asarray(lam_per_s, dtype=float))
    a = lam * service_s
    pw = erlang_c(c, a)
    drain = c / service_s - lam
    out = np.full_like(lam, np.inf)
    stable = a < c
    with np.errstate(divide="ignore"):
        t = np.log(np.maximum(pw[stable], 1e-300) / (1.0 - p)) / drain[stable]
    out[stable] = np.maximum(t, 0.0)
    return out


def wait_quantile_many(
    c: np.ndarray, lam_per_s: np.ndarray, service_s: np.ndarray, p: np.ndarray | float = 0.99
) -> np.ndarray:
    """:func:`wait_quantile_s` over arrays of queues (one Erlang recursion per distinct c)."""
    c = np.asarray(c, dtype=int)
    lam = np.broadcast_to(np.asarray(lam_per_s, dtype=float), c.shape)
    s = np.broadcast_to(np.asarray(service_s, dtype=float), c.shape)
    p = np.broadcast_to(np.asarray(p, dtype=float), c.shape)
    out = np.full(c.shape, np.inf)
    for ci in np.unique(c):
        sel = c == ci
        a = lam[sel] * s[sel]
        pw = erlang_c(int(ci), a)
        drain = ci / s[sel] - lam[sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.log(np.maximum(pw, 1e-300) / (1.0 - p[sel])) / drain
        out[sel] = np.where(a < ci, np.maximum(t, 0.0), np.inf)
    return out


@functools.lru_cache(maxsize=64)
def _wait_table(c: int, p: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """For one c: utilisation grid rho and the p-quantile wait in units of the service time."""
    rho = np.linspace(0.0, RHO_MAX, points)
    a = rho * c
    pw = erlang_c(c, a)
    with np.errstate(divide="ignore"):
        t = np.log(np.maximum(pw, 1e-300) / (1.0 - p)) / (c - a)  # in units of s
    return rho, np.maximum(t, 0.0)


def max_arrival_rate(
    c: np.ndarray,
    service_s: np.ndarray,
    wait_budget_s: np.ndarray,
    p: float = 0.99,
    points: int = 4097,
) -> np.ndarray:
    """Largest Poisson arrival rate (req/s) per replica whose p-quantile wait fits the budget.

    Vectorised over candidates: ``c`` (slots), ``service_s`` (mean stay in a slot) and
    ``wait_budget_s`` (what the latency target leaves for waiting; ``inf`` when no target
    depends on the wait) are arrays of one length. Never above ``RHO_MAX * c / s``; 0 where the
    budget is negative. The answer is read from a utilisation grid of ``points`` steps per c and
    rounded *down* to a grid point, so it errs on the safe side by at most ``RHO_MAX/points``
    of the slot capacity.
    """
    c = np.asarray(c, dtype=int)
    service_s = np.asarray(service_s, dtype=float)
    budget = np.asarray(wait_budget_s, dtype=float)
    out = np.zeros(c.shape, dtype=float)
    for ci in np.unique(c):
        sel = c == ci
        rho, t_units = _wait_table(int(ci), float(p), points)
        # t_units is non-decreasing in rho; the largest rho with t*s <= budget.
        tau = budget[sel] / service_s[sel]
        idx = np.searchsorted(t_units, tau, side="right") - 1
        r = np.where(idx >= 0, rho[np.clip(idx, 0, None)], 0.0)
        r = np.where(budget[sel] < 0, 0.0, r)
        out[sel] = r * ci / service_s[sel]
    return out


def wait_quantile_grid(
    c: np.ndarray, lam_per_s: np.ndarray, service_s: np.ndarray, p: float = 0.99,
    points: int = 4097,
) -> np.ndarray:
    """Fast :func:`wait_quantile_many` read (linearly interpolated) off the same utilisation
    grid as :func:`max_arrival_rate`; exact at the grid points, ``inf`` beyond ``RHO_MAX``.
    For tables of many candidates; a single queue is checked with :func:`wait_quantile_s`."""
    c = np.asarray(c, dtype=int)
    lam = np.broadcast_to(np.asarray(lam_per_s, dtype=float), c.shape)
    s = np.broadcast_to(np.asarray(service_s, dtype=float), c.shape)
    out = np.full(c.shape, np.inf)
    for ci in np.unique(c):
        sel = c == ci
        rho_grid, t_units = _wait_table(int(ci), float(p), points)
        rho = lam[sel] * s[sel] / ci
        val = np.interp(rho, rho_grid, t_units) * s[sel]
        out[sel] = np.where(rho <= RHO_MAX * (1 + 1e-12), val, np.inf)
    return out


def allen_cunneen(service_cv2: np.ndarray | float) -> np.ndarray:
    """Allen-Cunneen's M/G/c correction to an M/M/c wait: ``(1 + cs^2) / 2``, ``cs^2`` the
    squared coefficient of variation of the service time (1 for exponential, 0 for constant).
    Applied to the wait quantile (the conditional wait's scale), as queueing texts apply it to
    the mean wait (e.g. Hopp & Spearman, *Factory Physics*, the Kingman/Allen-Cunneen VUT
    equation). Used for prefill pools, whose service times are the prompt-length mix's prefill
    times, far less variable than exponential."""
    return (1.0 + np.asarray(service_cv2, dtype=float)) / 2.0


def littles_law_concurrency(lam_per_s: float, service_s: float) -> float:
    """Mean number of busy slots (Little's law), for sanity checks and reports."""
    return lam_per_s * service_s


def p_wait_exceeds(c: int, lam_per_s: float, service_s: float, t_s: float) -> float:
    """P(W > t) of the M/M/c queue (scalar helper for tests and the verifier)."""
    a = lam_per_s * service_s
    if a >= c:
        return 1.0
    return float(erlang_c(c, a)[0] * math.exp(-(c / service_s - lam_per_s) * t_s))
