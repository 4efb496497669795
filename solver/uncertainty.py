"""Error bands of the cost model and the step-time multiplier of ``--confidence``.

Every estimate carries a band: the relative error (1 sigma, in log space) of its step times.

*Uncalibrated*, the band is the error measured against public reference data in the estimate's
regime (catalogs/error_bands.yaml ``regimes``: MAPE by accelerator family, dense/MoE, weight
format -- 16-, 8- or 4-bit -- and batch -- ``small`` up to :data:`SMALL_BATCH_MAX` sequences,
``large`` above -- from ``benchmarks/accuracy.py``). The narrowest regime resting on at least
:data:`MIN_ROWS` rows gives the band; a thinner one falls back along :data:`PARENTS` (format
and batch pooled first, then the family) and the band's ``source`` says which regime it used,
on how many rows, and why. MAPE is converted with sigma = MAPE x sqrt(pi / 2), the mean absolute
value of a normal error being sigma x sqrt(2 / pi).

*Calibrated* (an overlay matches the shape), the band is the fit's residual sd inside what the
sweep measured, and widens outside it (:func:`extrapolation_octaves`): with ``d`` the octaves
(log2 of the ratio) by which the workload's ISL and OSL ranges (p50..p99) and the batch lie
outside the measured ISL, OSL and concurrency, summed over the three,
``sigma = sigma_fit + min(1, d / REVERT_OCTAVES) x (sigma_uncalibrated - sigma_fit)`` (never below
``sigma_fit``): a calibration at 1K tokens is two thirds of the way back to the uncalibrated band
at 4K and all the way at 8K and beyond. ``REVERT_OCTAVES = 3`` is a stated rule, not a fitted
figure: the public data holds no calibrate-here, predict-there pairs to fit it on.

Planning at confidence ``c`` multiplies every step time (TTFT, TPOT, E2E, service time) by
``exp(z_c x sigma)``, ``z_c`` the one-sided normal quantile of ``c``: the latency's upper bound
and (service time longer) the capacity's lower bound at that confidence. :func:`widen` is applied
where candidates are evaluated (:mod:`solver.candidates`) and re-checked (:mod:`solver.verify`),
with the band of each candidate's own regime (its batch cap). A calibration's fitted p99 TTFT
tail (:func:`tail_adjust`) applies at the point estimate too: it corrects the model, it is not a
margin.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from solver.catalog import Catalog
from solver.errors import InputError
from solver.loading import read_yaml
from solver.slo import SloView

if TYPE_CHECKING:
    from solver.overlay import Calibration
    from solver.problem import ModelDemand

BANDS_FILE = "error_bands.yaml"
SMALL_BATCH_MAX = 16
"""Largest batch of the ``small`` regime (benchmarks/accuracy.py's; a test keeps them equal)."""
MIN_ROWS = 5
"""Fewest reference rows a regime's band may rest on (else its parent's band is used)."""
PARENTS = (
    ("family", "kind", "format", "batch"), ("family", "kind", "format"), ("family", "kind", "batch"),
    ("family", "kind"), ("kind", "format", "batch"), ("kind", "format"), ("kind", "batch"), ("kind",),
)
"""Regimes tried narrowest first; an axis left out is pooled (``any``)."""
AXES = ("family", "kind", "format", "batch")
REVERT_OCTAVES = 3.0
"""Octaves outside the calibrated range at which the band is back to the uncalibrated one."""

Range = tuple[float, float]


@dataclass(frozen=True)
class Band:
    """Relative 1-sigma error of step times (log space), where it comes from and, for a
    reference-data band, how many rows it rests on."""

    sigma: float
    source: str
    rows: int | None = None
    regime: str | None = None

    def to_dict(self) -> dict[str, float | str | int | None]:
        return {"sigma": round(self.sigma, 6), "source": self.source, "rows": self.rows, "regime": self.regime}


def check_confidence(confidence: float | None, name: str = "--confidence") -> None:
    """One ``InputError`` line for a confidence outside (0, 1)."""
    if confidence is not None and not (0.0 < float(confidence) < 1.0 and math.isfinite(confidence)):
        raise InputError(f"{name}: must be in (0, 1), e.g. 0.9; got {confidence}")


@functools.lru_cache(maxsize=4)
def _tables(folder: Path) -> tuple[dict[tuple[str, str], float], dict[tuple[str, ...], tuple[float, int]]]:
    """(family, kind) -> MAPE %, and (family, kind, format, batch) -> (MAPE %, rows)."""
    path = folder / BANDS_FILE
    if not path.is_file():
        return {}, {}
    data = read_yaml(path)
    bands = {(b["family"], b["kind"]): float(b["mape_pct"]) for b in data.get("bands", [])}
    regimes = {(r["family"], r["kind"], r["format"], r["batch"]): (float(r["mape_pct"]), int(r["rows"]))
               for r in data.get("regimes", [])}
    return bands, regimes


def _sigma(mape_pct: float) -> float:
    return mape_pct / 100.0 * math.sqrt(math.pi / 2.0)


def batch_regime(batch: int | None) -> str:
    """``small`` (<= SMALL_BATCH_MAX), ``large``, or ``any`` when the batch is not known."""
    if batch is None:
        return "any"
    return "small" if batch <= SMALL_BATCH_MAX else "large"


def format_regime(cat: Catalog, quant: str) -> str:
    """``16-bit``, ``8-bit`` or ``4-bit``: the format's weight bits (benchmarks/accuracy.py's)."""
    return f"{cat.quantization(quant).weight_bits}-bit"


def reference_band(cat: Catalog, model: str, accelerator: str, quant: str, batch: int | None = None) -> Band:
    """The uncalibrated band of one configuration at batch cap ``batch`` (see module docstring)."""
    fam = cat.accelerator(accelerator).family
    kind = "moe" if cat.model(model).moe is not None else "dense"
    bands, regimes = _tables(cat.folder)
    if regimes:
        axes = {"family": fam, "kind": kind, "format": format_regime(cat, quant), "batch": batch_regime(batch)}
        own = "/".join(axes[a] for a in AXES if axes[a] != "any")
        for keep in PARENTS:
            key = tuple(axes[a] if a in keep else "any" for a in AXES)
            if key not in regimes or regimes[key][1] < MIN_ROWS:
                continue
            mape, rows = regimes[key]
            name = "/".join(k for k in key if k != "any") or "any"
            name = name if key[0] != "any" else "any/" + name
            n_own = regimes.get(tuple(axes[a] for a in AXES), (0.0, 0))[1]
            why = "" if name == own else (
                f" (regime {own} has {n_own} row{'' if n_own == 1 else 's'} < {MIN_ROWS}: parent regime used)")
            return Band(_sigma(mape), f"{BANDS_FILE} {name}: MAPE {mape:g}% over {rows} rows vs public "
                        f"reference data{why}", rows, name)
    for key in ((fam, kind), ("any", kind)):
        if key in bands:
            return Band(_sigma(bands[key]), f"{BANDS_FILE} {key[0]}/{key[1]}: MAPE {bands[key]:g}% vs public "
                        "reference data", None, f"{key[0]}/{key[1]}")
    return Band(0.0, f"no error band for {fam}/{kind} in {BANDS_FILE}")


def _octaves(measured: Range, asked: Range) -> float:
    """Octaves by which ``asked`` (lo, hi) reaches outside ``measured`` (lo, hi); 0 inside."""
    lo, hi = measured
    return max(0.0, math.log2(lo / asked[0]), math.log2(asked[1] / hi))


def extrapolation_octaves(cal: "Calibration", batch: int | None = None, isl: Range | None = None,
                          osl: Range | None = None) -> dict[str, float]:
    """Per axis (isl, osl, batch), the octaves the asked range lies outside what ``cal``
    measured; an axis not asked (or not recorded in an older overlay) counts 0."""
    s = cal.applies_to
    out = {"isl": _octaves((s.isl, s.isl), isl) if isl else 0.0,
           "osl": _octaves((s.osl, s.osl), osl) if osl else 0.0, "batch": 0.0}
    if batch is not None and s.concurrency_min is not None and s.concurrency_max is not None:
        out["batch"] = _octaves((s.concurrency_min, s.concurrency_max), (batch, batch))
    return out


def lengths_of(d: "ModelDemand") -> tuple[Range, Range]:
    """A demand's (p50, p99) prompt and output lengths, tokens."""
    t = d.traffic
    return ((float(t.input_tokens.percentile(50)), float(t.input_tokens.percentile(99))),
            (float(t.output_tokens.percentile(50)), float(t.output_tokens.percentile(99))))


def band_for(cat: Catalog, model: str, accelerator: str, quant: str, engine: str, batch: int | None = None,
             isl: Range | None = None, osl: Range | None = None) -> Band:
    """The error band of one configuration at batch cap ``batch`` for prompts in ``isl`` and
    outputs in ``osl`` (token ranges): the calibration's, widened outside what it measured, if
    one matches; else the reference data's for the regime."""
    ref = reference_band(cat, model, accelerator, quant, batch)
    cal = cat.calibration_for(model, accelerator, quant, engine)
    if cal is None:
        return ref
    off = extrapolation_octaves(cal, batch, isl, osl)
    d = sum(off.values())
    w = min(1.0, d / REVERT_OCTAVES)
    sigma = max(cal.error_band, cal.error_band + w * (ref.sigma - cal.error_band))
    source = f"calibration {cal.id} (fit residual sd)"
    if d > 0:
        where = ", ".join(f"{k} {v:.1f}" for k, v in off.items() if v > 0)
        source += (f", {d:.1f} octaves outside what it measured ({where}): {w:.0%} of the way back to "
                   f"the uncalibrated band {ref.sigma:.3f} ({ref.regime})")
    return Band(sigma, source, None, f"calibrated {cal.id}")


def band_for_demand(cat: Catalog, d: "ModelDemand", accelerator: str, quant: str, engine: str,
                    batch: int | None = None) -> Band:
    """:func:`band_for` with the demand's own model and length ranges."""
    isl, osl = lengths_of(d)
    return band_for(cat, d.model, accelerator, quant, engine, batch, isl, osl)


def step_multiplier(band: Band, confidence: float | None) -> float:
    """``exp(z_c x sigma)``; 1 without a confidence (the point estimate)."""
    if confidence is None:
        return 1.0
    check_confidence(confidence)
    return math.exp(NormalDist().inv_cdf(confidence) * band.sigma)


def widen(view: SloView, multiplier: float | np.ndarray) -> SloView:
    """The SLO view with every step-time-derived latency times ``multiplier`` (a scalar, or one
    per batch cap of the view)."""
    if np.ndim(multiplier) == 0 and float(multiplier) == 1.0:
        return view
    return replace(view, service_s=view.service_s * multiplier, ttft0_ms=view.ttft0_ms * multiplier,
                   tpot_ms=view.tpot_ms * multiplier, e2e0_ms=view.e2e0_ms * multiplier,
                   steps=view.steps.scaled(multiplier) if view.steps is not None else None)


def tail_adjust(view: SloView, cat: Catalog, d: "ModelDemand", accelerator: str, quant: str,
                engine: str) -> SloView:
    """The SLO view with a matching calibration's measured TTFT tail applied: the zero-wait TTFT
    at the target's percentile, and a request's own prefill in the step tables, times
    :meth:`~solver.overlay.Calibration.ttft_tail` (unchanged
    without a calibration or without an applied TTFT tail). E2E is left alone: the jitter of the
    first token is a small part of a whole response and its percentile may differ."""
    cal = cat.calibration_for(d.model, accelerator, quant, engine)
    if cal is None:
        return view
    k = cal.ttft_tail(d.slo.percentile("ttft"))
    if k == 1.0:
        return view
    return replace(view, ttft0_ms=view.ttft0_ms * k, steps=view.steps.own_scaled(k) if view.steps is not None else None)


def planning_multiplier(cat: Catalog, model: str, accelerator: str, quant: str, engine: str,
                        confidence: float | None, batch: np.ndarray | None = None,
                        demand: "ModelDemand | None" = None) -> float | np.ndarray:
    """The multiplier a candidate of this configuration is planned with (1 at the point
    estimate): one per entry of ``batch`` (batch caps) when given, each from the band of that
    batch's regime; the demand's lengths decide how far outside a calibration it lies."""
    if confidence is None:
        return 1.0
    isl, osl = lengths_of(demand) if demand is not None else (None, None)
    if batch is None:
        return step_multiplier(band_for(cat, model, accelerator, quant, engine, None, isl, osl), confidence)
    b = np.asarray(batch)
    uniq, inv = np.unique(b, return_inverse=True)
    vals = np.array([step_multiplier(band_for(cat, model, accelerator, quant, engine, int(u), isl, osl),
                                     confidence) for u in uniq])
    return vals[inv].reshape(b.shape)
