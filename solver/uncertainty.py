"""Error bands of the cost model and the step-time multiplier of ``--confidence``.

Every estimate carries a band: the relative error (1 sigma, in log space) of its step times --
from the calibration fit where a calibration overlay matches the shape (its residual sd), else
from the error measured against public reference data in that regime (catalogs/error_bands.yaml:
MAPE by accelerator family and dense/MoE, from ``benchmarks/accuracy.py``; MAPE is converted with
sigma = MAPE x sqrt(pi / 2), the mean absolute value of a normal error being sigma x sqrt(2 / pi)).

Planning at confidence ``c`` multiplies every step time (TTFT, TPOT, E2E, service time) by
``exp(z_c x sigma)``, ``z_c`` the one-sided normal quantile of ``c``: the latency's upper bound
and (service time longer) the capacity's lower bound at that confidence. :func:`widen` is applied
where candidates are evaluated (:mod:`solver.candidates`) and re-checked (:mod:`solver.verify`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

from solver.catalog import Catalog
from solver.errors import InputError
from solver.loading import read_yaml
from solver.slo import SloView

BANDS_FILE = "error_bands.yaml"


@dataclass(frozen=True)
class Band:
    """Relative 1-sigma error of step times (log space) and where it comes from."""

    sigma: float
    source: str

    def to_dict(self) -> dict[str, float | str]:
        return {"sigma": round(self.sigma, 6), "source": self.source}


def check_confidence(confidence: float | None, name: str = "--confidence") -> None:
    """One ``InputError`` line for a confidence outside (0, 1)."""
    if confidence is not None and not (0.0 < float(confidence) < 1.0 and math.isfinite(confidence)):
        raise InputError(f"{name}: must be in (0, 1), e.g. 0.9; got {confidence}")


@functools.lru_cache(maxsize=4)
def _bands(folder: Path) -> dict[tuple[str, str], float]:
    path = folder / BANDS_FILE
    if not path.is_file():
        return {}
    data = read_yaml(path)
    return {(b["family"], b["kind"]): float(b["mape_pct"]) for b in data.get("bands", [])}


def band_for(cat: Catalog, model: str, accelerator: str, quant: str, engine: str) -> Band:
    """The error band of one configuration: the calibration's if one matches, else the table's
    (family, dense/MoE) row, else its ``any`` row."""
    cal = cat.calibration_for(model, accelerator, quant, engine)
    if cal is not None:
        return Band(cal.error_band, f"calibration {cal.id} (fit residual sd)")
    fam = cat.accelerator(accelerator).family
    kind = "moe" if cat.model(model).moe is not None else "dense"
    table = _bands(cat.folder)
    for key in ((fam, kind), ("any", kind)):
        if key in table:
            return Band(table[key] / 100.0 * math.sqrt(math.pi / 2.0),
                        f"{BANDS_FILE} {key[0]}/{key[1]}: MAPE {table[key]:g}% vs public reference data")
    return Band(0.0, f"no error band for {fam}/{kind} in {BANDS_FILE}")


def step_multiplier(band: Band, confidence: float | None) -> float:
    """``exp(z_c x sigma)``; 1 without a confidence (the point estimate)."""
    if confidence is None:
        return 1.0
    check_confidence(confidence)
    return math.exp(NormalDist().inv_cdf(confidence) * band.sigma)


def widen(view: SloView, multiplier: float) -> SloView:
    """The SLO view with every step-time-derived latency times ``multiplier``."""
    if multiplier == 1.0:
        return view
    return replace(view, service_s=view.service_s * multiplier, ttft0_ms=view.ttft0_ms * multiplier,
                   tpot_ms=view.tpot_ms * multiplier, e2e0_ms=view.e2e0_ms * multiplier)


def planning_multiplier(cat: Catalog, model: str, accelerator: str, quant: str, engine: str,
                        confidence: float | None) -> float:
    """The multiplier a candidate of this configuration is planned with (1 at the point estimate)."""
    if confidence is None:
        return 1.0
    return step_multiplier(band_for(cat, model, accelerator, quant, engine), confidence)
