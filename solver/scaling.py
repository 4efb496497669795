"""The one place where floats become the integers CP-SAT works with.

CP-SAT only knows integers, so every quantity gets a fixed scale and a rounding direction that
keeps the integer model *conservative*: what a plan uses or costs is rounded up, what it offers is
rounded down. A plan feasible in integers is therefore feasible in reals (the verifier checks
this), at the price of at most one unit of each scale.

=====================  =========================  ===================  ===========
quantity               integer unit               scale                rounding
=====================  =========================  ===================  ===========
price, cost, budget    US cents per hour          ``CENTS_PER_USD``    price up, budget down
capacity per replica   milli-requests per second  ``MILLI``            down
demand                 milli-requests per second  ``MILLI``            up
power per GPU          watts                      1                    up
power limit            watts                      ``W_PER_KW``         down
stage latency          microseconds               ``US_PER_MS``        up
latency budget         microseconds               ``US_PER_MS``        down
=====================  =========================  ===================  ===========
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CENTS_PER_USD = 100
MILLI = 1000
W_PER_KW = 1000
US_PER_MS = 1000

_EPS = 1e-9  # absorbs binary noise such as 2.69 * 100 = 268.99999999999997
_REL_EPS = 1e-12  # the same for large values (an ulp of 1e10 is 2e-6)


def _eps(x: float) -> float:
    return max(_EPS, abs(x) * _REL_EPS)


def price_cents(usd_per_hour: float) -> int:
    """A price or cost per hour in integer cents, rounded up (never under-states a cost)."""
    return int(math.ceil(usd_per_hour * CENTS_PER_USD - _eps(usd_per_hour * CENTS_PER_USD)))


def budget_cents(usd_per_hour: float) -> int:
    """A budget per hour in integer cents, rounded down (never over-states what may be spent)."""
    return int(math.floor(usd_per_hour * CENTS_PER_USD + _eps(usd_per_hour * CENTS_PER_USD)))


def cents_to_usd(cents: int) -> float:
    return cents / CENTS_PER_USD


def capacity_mrps(rps: float) -> int:
    """Capacity per replica in milli-requests/s, rounded down (never over-states capacity)."""
    if not math.isfinite(rps) or rps <= 0:
        return 0
    return int(math.floor(rps * MILLI + _eps(rps * MILLI)))


def capacity_mrps_array(rps: np.ndarray) -> np.ndarray:
    """:func:`capacity_mrps` of every entry of an array (int64): the same float operations,
    elementwise, for the candidate tables' thousands of rows."""
    import numpy as np

    x = np.asarray(rps, dtype=float)
    ok = np.isfinite(x) & (x > 0)
    milli = np.where(ok, x, 0.0) * MILLI
    return np.where(ok, np.floor(milli + np.maximum(_EPS, np.abs(milli) * _REL_EPS)), 0).astype(np.int64)


def demand_mrps(rps: float) -> int:
    """Demand in milli-requests/s, rounded up (never under-states load): any positive demand is
    at least 1 milli-request/s, so a tiny rate can never round to a free, empty plan."""
    if rps <= 0:
        return 0
    return max(1, int(math.ceil(rps * MILLI - _eps(rps * MILLI))))


def mrps_to_rps(mrps: int) -> float:
    return mrps / MILLI


def power_w(watts: float) -> int:
    """Power drawn, integer watts rounded up."""
    return int(math.ceil(watts - _EPS))


def power_limit_w(kw: float) -> int:
    """A power limit in integer watts, rounded down."""
    return int(math.floor(kw * W_PER_KW + _eps(kw * W_PER_KW)))


def latency_us(ms: float) -> int:
    """A stage latency in integer microseconds, rounded up (never under-states a latency)."""
    return int(math.ceil(ms * US_PER_MS - _eps(ms * US_PER_MS)))


def latency_budget_us(ms: float) -> int:
    """A latency budget in integer microseconds, rounded down (never over-states the budget)."""
    return int(math.floor(ms * US_PER_MS + _eps(ms * US_PER_MS)))
