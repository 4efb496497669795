"""Fit efficiency factors to one measured concurrency sweep (``fleetplan calibrate``).

Input: the configuration the sweep ran on (:class:`SweepConfig`) and its points -- anything with
the attributes of :class:`PointLike` (what :func:`solver.measured.load_sweep` reads from every
benchmark client's results and the plain CSV). Model: the cost model's operating point at each
point's concurrency (:func:`solver.costmodel.operating_point`, no queueing: a closed-loop client
at concurrency C keeps C requests in flight) predicts the median TTFT, the median ITL (= TPOT)
and the output tokens/s. Residuals are ``log(predicted / measured)`` of those three metrics;
:func:`scipy.optimize.least_squares` fits the logarithms of the factors (so the intervals are
relative and the factors stay positive) within physical bounds.

Factors: ``eta_bw`` (achievable / datasheet HBM bandwidth), ``mfu_prefill``, ``mfu_decode``,
``host_overhead_factor`` (x the engine's host time per step) and ``collective_factor`` (x the
links' plateau efficiency; only with TP, EP or PP > 1). A factor the sweep cannot move (the
largest change of any predicted metric per unit log-factor below ``MIN_SENSITIVITY``, e.g.
``mfu_decode`` when every step is memory-bound) is held at the catalog's value and said so.

Intervals: covariance ``s^2 (J^T J)^-1`` at the optimum, ``s^2`` the residual variance with
``m - n`` degrees of freedom, Student-t quantile; reported at 90% unless asked otherwise.

Tails (:func:`fit_tail`): the cost model's zero-wait p99 TTFT of a fixed-length closed-loop sweep
is its median (no queue, every request alike), so the measured p99 / median ratio is what the
model misses -- scheduling jitter (a new prompt waiting behind another's prefill chunk, a decode
step stretched by a prefill). Per metric (TTFT, ITL): ``log(p99 / median) = a + b log2(C)`` by
least squares gives the trend ``b`` per doubling of concurrency with its interval; without a
trend (``b``'s interval holds 0, or the ratio moves by less than ``TAIL_MAX_DRIFT`` over the
sweep) the tail factor is the geometric mean ratio with a Student-t interval. The TTFT factor is
applied in planning (:meth:`solver.overlay.Calibration.ttft_tail`); the ITL factor is reported
only: it is per token, while a TPOT target bounds the per-request mean. Not identifiable -- said
so, not fitted: no separate p99 in the results, an open-loop rate sweep (its p99 holds the
queueing the planner adds itself), a trend, or an interval wider than ``TAIL_MAX_SPREAD``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import optimize, stats

from solver.catalog import Catalog
from solver.costmodel import Shape, ShapeTerms, operating_point, shape_terms, with_efficiency
from solver.errors import InputError
from solver.overlay import FACTORS, Calibration, FitQuality, Scope, TailFit

MIN_POINTS = 3
MIN_SENSITIVITY = 0.02
"""Largest |d log(metric) / d log(factor)| below which a factor is held, not fitted."""
BOUNDS: dict[str, tuple[float, float]] = {
    "eta_bw": (0.05, 1.0), "mfu_prefill": (0.01, 1.0), "mfu_decode": (0.01, 1.0),
    "host_overhead_factor": (0.01, 100.0), "collective_factor": (0.05, 10.0),
}
METRICS = ("ttft", "itl", "throughput")
TAIL_MAX_SPREAD = 2.0
"""Widest (upper / lower) interval of a tail factor that is still reported as fitted."""
TAIL_MAX_DRIFT = 1.25
"""Largest change of p99 / median across the sweep's concurrencies a constant factor may hide."""


class PointLike(Protocol):
    """What calibration reads from a measured point (``solver.measured.MeasuredPoint`` fits)."""

    concurrency: float | None
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    output_tokens_per_s: float
    requests_per_s: float


@dataclass(frozen=True)
class SweepConfig:
    """The configuration a sweep was measured on (catalog ids; lengths in tokens)."""

    model: str
    accelerator: str
    quant: str
    kv_dtype: str
    tp: int
    engine: str
    isl: int
    osl: int
    pp: int = 1
    ep: int = 1

    @property
    def shape(self) -> Shape:
        return Shape(self.model, self.accelerator, None, self.quant, self.kv_dtype, self.tp, self.pp, self.ep)


def _concurrency(p: PointLike, osl: int) -> float:
    """The point's concurrency; for a rate sweep, Little's law: requests/s x (TTFT + OSL x ITL)."""
    if p.concurrency is not None:
        return float(p.concurrency)
    return p.requests_per_s * (p.ttft_p50_ms + osl * p.itl_p50_ms) / 1e3


def _terms_with(base: ShapeTerms, names: Sequence[str], values: Sequence[float], eff0: dict[str, float]) -> ShapeTerms:
    f = dict(zip(names, values))
    host = f.get("host_overhead_factor", 1.0) / eff0["host_overhead_factor"]
    coll = f.get("collective_factor", 1.0) / eff0["collective_factor"]
    return with_efficiency(
        base, eta_bw=f.get("eta_bw"), mfu_prefill=f.get("mfu_prefill"), mfu_decode=f.get("mfu_decode"),
        host_overhead_graph_ms=base.host_overhead_graph_s * 1e3 * host if "host_overhead_factor" in f else None,
        host_overhead_eager_ms=base.host_overhead_eager_s * 1e3 * host if "host_overhead_factor" in f else None,
        collective_factor=coll if "collective_factor" in f else None,
    )


def predict(terms: ShapeTerms, conc: np.ndarray, isl: int, osl: int) -> np.ndarray:
    """Predicted (median TTFT ms, ITL ms, output tokens/s) per concurrency, shape (3, n)."""
    op = operating_point(terms, np.maximum(np.rint(conc), 1).astype(np.int64), isl, osl)
    return np.vstack([op.ttft_ms, op.tpot_ms, op.output_tokens_per_s])


def fit_tail(metric: str, p50_ms: np.ndarray, p99_ms: np.ndarray, conc: np.ndarray | None,
             level: float = 0.9) -> TailFit:
    """The p99 / median tail factor of one latency over a sweep (see module docstring);
    ``conc`` None for an open-loop rate sweep."""
    n = int(p50_ms.size)
    if conc is None:
        return TailFit(metric=metric, points=n, identifiable=False,
                       note="open-loop rate sweep: its p99 includes queueing, which the planner models "
                            "itself (Erlang-C); run a concurrency sweep to fit the tail")
    ratio = np.log(np.maximum(p99_ms, 1e-12) / np.maximum(p50_ms, 1e-12))
    if np.all(ratio <= 1e-9):
        return TailFit(metric=metric, points=n, identifiable=False,
                       note="the results give the same p99 as the median at every point: no tail to fit")
    x = np.log2(conc)
    xc = x - x.mean()
    t1 = float(stats.t.ppf(0.5 + level / 2.0, max(n - 1, 1)))
    slope = slope_iv = None
    if n >= 3 and float(xc @ xc) > 0:
        b = float(xc @ (ratio - ratio.mean()) / (xc @ xc))
        rss = float(np.sum((ratio - ratio.mean() - b * xc) ** 2))
        se_b = math.sqrt(rss / (n - 2) / float(xc @ xc))
        t2 = float(stats.t.ppf(0.5 + level / 2.0, n - 2))
        slope, slope_iv = round(b, 6) + 0.0, (round(b - t2 * se_b, 6) + 0.0, round(b + t2 * se_b, 6) + 0.0)
        drift = math.exp(abs(b) * float(x.max() - x.min()))
        if (slope_iv[0] > 0 or slope_iv[1] < 0) and drift > TAIL_MAX_DRIFT:
            return TailFit(metric=metric, points=n, identifiable=False, slope_per_octave=slope,
                           slope_interval=slope_iv,
                           note=f"p99 / median changes {drift:.2f}x across the sweep (log ratio {b:+.3f} per "
                                f"doubling of concurrency, {level:.0%} interval {slope_iv[0]:+.3f} to "
                                f"{slope_iv[1]:+.3f}): a constant tail factor would misstate it; not applied")
    mean = float(ratio.mean())
    se = float(ratio.std(ddof=1)) / math.sqrt(n) if n > 1 else float("inf")
    lo, hi = math.exp(mean - t1 * se), math.exp(mean + t1 * se)
    if not math.isfinite(hi) or hi / lo > TAIL_MAX_SPREAD:
        return TailFit(metric=metric, points=n, identifiable=False, slope_per_octave=slope, slope_interval=slope_iv,
                       note=f"p99 / median too scattered to fit ({level:.0%} interval {lo:.2f} to {hi:.2f}, "
                            f"wider than {TAIL_MAX_SPREAD:g}x); not applied")
    applied = metric == "ttft"
    use = ("applied to the model's zero-wait TTFT at the target's percentile" if applied else
           "reported only: ITL p99 is per token, a TPOT target bounds the per-request mean")
    return TailFit(metric=metric, points=n, identifiable=True, applied=applied, factor=round(math.exp(mean), 6),
                   interval=(round(lo, 6), round(hi, 6)), slope_per_octave=slope, slope_interval=slope_iv,
                   note=f"p99 = {math.exp(mean):.2f} x median ({level:.0%} interval {lo:.2f} to {hi:.2f}); {use}")


def _tails(points: Sequence[PointLike], level: float) -> dict[str, TailFit]:
    closed = all(p.concurrency is not None for p in points)
    conc = np.array([float(p.concurrency) for p in points]) if closed else None  # type: ignore[arg-type]
    return {
        "ttft": fit_tail("ttft", np.array([p.ttft_p50_ms for p in points], dtype=float),
                         np.array([p.ttft_p99_ms for p in points], dtype=float), conc, level),
        "itl": fit_tail("itl", np.array([p.itl_p50_ms for p in points], dtype=float),
                        np.array([p.itl_p99_ms for p in points], dtype=float), conc, level),
    }


def fit_calibration(
    cat: Catalog, config: SweepConfig, points: Sequence[PointLike], sources: Sequence[str], date: str,
    level: float = 0.9,
) -> Calibration:
    """Least-squares factors for ``config`` from ``points`` (see module docstring); raises
    ``InputError`` for fewer than three points or a configuration the catalog refuses."""
    if len(points) < MIN_POINTS:
        raise InputError(f"a sweep needs at least {MIN_POINTS} points to calibrate, got {len(points)}")
    if not 0.0 < level < 1.0:
        raise InputError(f"confidence level must be in (0, 1), got {level}")
    base = shape_terms(cat.with_calibrations(()), config.shape, config.engine)
    eff = cat.with_calibrations(()).efficiency_for(config.accelerator)
    eff0 = {k: float(getattr(eff, k)) for k in FACTORS}
    conc = np.array([_concurrency(p, config.osl) for p in points], dtype=float)
    measured = np.array([[p.ttft_p50_ms for p in points], [p.itl_p50_ms for p in points],
                         [p.output_tokens_per_s for p in points]], dtype=float)
    log_meas = np.log(measured)

    candidates = [k for k in FACTORS if k != "collective_factor" or max(config.tp, config.ep, config.pp) > 1]
    held: dict[str, str] = {}
    if "collective_factor" not in candidates:
        held["collective_factor"] = "no collective in a one-GPU stage (TP = EP = PP = 1)"

    def residuals(names: Sequence[str], x: np.ndarray) -> np.ndarray:
        pred = predict(_terms_with(base, names, np.exp(x), eff0), conc, config.isl, config.osl)
        return (np.log(pred) - log_meas).ravel()

    # sensitivity at the catalog's factors: a factor no metric responds to is held
    x0_all = np.log([eff0[k] for k in candidates])
    r0 = residuals(candidates, x0_all)
    names: list[str] = []
    for j, k in enumerate(candidates):
        step = np.zeros_like(x0_all)
        step[j] = 0.05
        sens = float(np.max(np.abs(residuals(candidates, x0_all + step) - r0))) / 0.05
        if sens < MIN_SENSITIVITY:
            held[k] = f"the sweep does not constrain it (sensitivity {sens:.3f} < {MIN_SENSITIVITY})"
        else:
            names.append(k)
    if not names:
        raise InputError("the sweep constrains none of the factors (no metric responds to them)")
    lo = np.log([max(BOUNDS[k][0], 1e-9) for k in names])
    hi = np.log([BOUNDS[k][1] for k in names])
    x0 = np.clip(np.log([eff0[k] for k in names]), lo + 1e-9, hi - 1e-9)
    res = optimize.least_squares(lambda x: residuals(names, x), x0, bounds=(lo, hi), method="trf",
                                 x_scale=1.0, xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
    r = res.fun
    m, n = r.size, len(names)
    dof = max(m - n, 1)
    s2 = float(r @ r) / dof
    jtj = res.jac.T @ res.jac
    cov = s2 * np.linalg.pinv(jtj)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    t = float(stats.t.ppf(0.5 + level / 2.0, dof))
    factors = {**eff0, **{k: float(np.exp(v)) for k, v in zip(names, res.x)}}
    interval = {k: (float(np.exp(v - t * e)), float(np.exp(v + t * e))) for k, v, e in zip(names, res.x, se)}
    pred = np.exp(r.reshape(measured.shape) + log_meas)
    mape = {name: float(100.0 * np.mean(np.abs(pred[i] - measured[i]) / measured[i]))
            for i, name in enumerate(METRICS)}
    acc = cat.accelerator(config.accelerator)
    scope = Scope(model=config.model, accelerator=config.accelerator, family=acc.family,
                  quant=config.quant, kv_dtype=config.kv_dtype, engine=config.engine, tp=config.tp,
                  pp=config.pp, ep=config.ep, isl=config.isl, osl=config.osl,
                  concurrency_min=round(float(conc.min()), 6), concurrency_max=round(float(conc.max()), 6))
    return Calibration(
        id=f"{config.model}/{config.accelerator}/{config.quant}/{config.engine}",
        applies_to=scope,
        factors={k: round(v, 6) for k, v in factors.items()},
        fitted=names,
        held=held,
        interval_level=level,
        interval={k: (round(a, 6), round(b, 6)) for k, (a, b) in interval.items()},
        fit=FitQuality(points=len(points), residual_sd_log=round(math.sqrt(s2), 6),
                       mape_pct={k: round(v, 3) for k, v in mape.items()}),
        error_band=round(math.sqrt(s2), 6),
        tails=_tails(points, level),
        sources=list(sources),
        date=date,
    )
