"""Calibration overlays: efficiency factors fitted on one measured sweep, and where they apply.

``fleetplan calibrate`` writes one (:mod:`solver.calibration`); ``--calibration FILE`` or a
problem's ``calibration:`` key loads it onto the catalog (:meth:`solver.catalog.Catalog.
with_calibrations`), and :meth:`~solver.catalog.Catalog.efficiency_for` is the one place it takes
effect: for a shape of the same model, accelerator, format and engine the fitted factors replace
the catalog's; every other shape keeps the catalog's factors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from solver.errors import InputError
from solver.loading import read_yaml, validate

if TYPE_CHECKING:
    from solver.catalog import Catalog
    from solver.problem import Problem

FACTORS = ("eta_bw", "mfu_prefill", "mfu_decode", "host_overhead_factor", "collective_factor")
"""Factors a calibration may fit (:class:`solver.schemas.Efficiency` fields)."""

Pos = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    """What the sweep was measured on. A calibration applies to shapes of the same model,
    accelerator, format and engine (any parallelism, any KV dtype: the factors are the kernels'
    and the engine's, not the layout's)."""

    model: str
    accelerator: str
    family: str
    quant: str
    kv_dtype: str
    engine: str
    tp: int = Field(ge=1)
    pp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    isl: int = Field(ge=1)
    osl: int = Field(ge=1)
    concurrency_min: float | None = Field(default=None, gt=0, description="lowest concurrency measured")
    concurrency_max: float | None = Field(default=None, gt=0, description="highest concurrency measured")


class FitQuality(_Strict):
    points: int = Field(ge=3)
    residual_sd_log: float = Field(ge=0, description="sd of log(predicted / measured) over all fitted metrics")
    mape_pct: dict[str, float] = Field(description="mean |predicted - measured| / measured per metric, %")


class TailFit(_Strict):
    """The p99 of one latency (``ttft`` or ``itl``) against its median in a calibration sweep.

    ``factor``: geometric mean over the sweep's points of measured p99 / measured median, with its
    ``interval`` (Student t on the log ratios); ``slope_per_octave``: the change of that log ratio
    per doubling of concurrency, with its interval. ``identifiable`` is false (and ``note`` says
    why) when the data cannot pin a constant factor: no separate p99 reported, an open-loop rate
    sweep (its p99 holds queueing the planner models itself), a ratio that trends with
    concurrency, or an interval wider than 2x. ``applied``: whether planning uses it."""

    metric: str
    points: int = Field(ge=0)
    identifiable: bool
    applied: bool = False
    factor: float | None = Field(default=None, gt=0)
    interval: tuple[float, float] | None = None
    slope_per_octave: float | None = None
    slope_interval: tuple[float, float] | None = None
    note: str


class Calibration(_Strict):
    """One calibration overlay (the YAML ``calibrate`` writes, under a ``calibration:`` key)."""

    id: str
    applies_to: Scope
    factors: dict[str, Pos]
    fitted: list[str] = Field(description="factors fitted; the others are the catalog's, held fixed")
    held: dict[str, str] = Field(default_factory=dict, description="factor -> why it was not fitted")
    interval_level: float = Field(default=0.9, gt=0, lt=1, description="confidence level of ``interval``")
    interval: dict[str, tuple[float, float]] = Field(description="confidence interval per fitted factor")
    fit: FitQuality
    error_band: float = Field(ge=0, description="1-sigma relative error of step times (log sd), for --confidence")
    tails: dict[str, TailFit] = Field(default_factory=dict, description="p99 / median per latency (ttft, itl)")
    sources: list[str]
    date: str

    @field_validator("factors")
    @classmethod
    def _known_factors(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(FACTORS))
        if unknown:
            raise ValueError(f"unknown factor(s) {', '.join(unknown)}; known: {', '.join(FACTORS)}")
        over = sorted(k for k in ("eta_bw", "mfu_prefill", "mfu_decode") if v.get(k, 0.0) > 1.0)
        if over:
            raise ValueError(f"{', '.join(over)} must be fractions in (0, 1]")
        return v

    def ttft_tail(self, percentile: float) -> float:
        """Multiplier of the model's zero-wait TTFT at ``percentile`` (%): the fitted p99 tail
        factor ``k`` scaled as a lognormal jitter, ``k ** (z_q / z_0.99)`` (1 at the median and
        below; 1 without an applied TTFT tail)."""
        tail = self.tails.get("ttft")
        if tail is None or not tail.applied or tail.factor is None or percentile <= 50.0:
            return 1.0
        from statistics import NormalDist
        z = NormalDist().inv_cdf
        return float(tail.factor ** (z(min(percentile, 99.99) / 100.0) / z(0.99)))

    def matches(self, model: str, accelerator: str, quant: str, engine: str) -> bool:
        s = self.applies_to
        return (s.model, s.accelerator, s.quant, s.engine) == (model, accelerator, quant, engine)

    def describe(self) -> str:
        s = self.applies_to
        return f"{s.model} on {s.accelerator} ({s.quant}, {s.engine})"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def load_calibration(path: Path | str) -> Calibration:
    """Read an overlay file; ``InputError`` (one line, the file named) if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError("calibration file not found", where=str(path))
    data = read_yaml(path)
    if not isinstance(data, dict) or "calibration" not in data:
        raise InputError("not a calibration overlay (no top-level 'calibration:' key)", where=str(path))
    return validate(Calibration, data["calibration"], where=str(path))


def calibration_yaml(cal: Calibration) -> str:
    """The overlay file's text (stable key order: the fields' order)."""
    head = ("# fleetplan calibration overlay (written by `fleetplan calibrate`); use with\n"
            "# --calibration FILE or a problem file's `calibration: FILE` key\n")
    return head + yaml.safe_dump({"calibration": cal.to_dict()}, sort_keys=False)


class Applied(BaseModel):
    """Which calibration a plan or estimate used, and on what (the plan's ``calibration`` field)."""

    model_config = ConfigDict(frozen=True)

    id: str
    file: str
    applies_to: str
    applied_to: list[str]
    """Problem models (names) whose configurations on the calibrated hardware use it."""
    not_applied_to: list[str]
    """Problem models that keep the catalog's factors (another model, accelerator or engine)."""
    error_band: float
    date: str

    def line(self) -> str:
        """The one-line note a text plan prints."""
        rest = f"; models {', '.join(self.not_applied_to)}: catalog factors" if self.not_applied_to else ""
        return (f"calibration {self.id} ({self.file}, {self.date}): fitted factors used for the "
                f"configurations of {', '.join(self.applied_to)} on {self.applies_to}; every other "
                f"configuration uses the catalog's{rest}")


def calibrated_catalog(cat: "Catalog", problem: "Problem", path: str | Path | None
                       ) -> tuple["Catalog", Applied | None]:
    """The catalog with the overlay at ``path`` (default: the problem's ``calibration:`` key) in
    effect, and what it applies to. Refused (``InputError``, one line) when it matches no model
    of the problem on an accelerator, format and engine the problem allows."""
    path = path if path is not None else problem.calibration
    if path is None:
        return cat, None
    cal = load_calibration(path)
    s = cal.applies_to
    hit, miss = [], []
    for d in problem.models:
        engine = d.engine or cat.default_engine
        ok = (d.model == s.model and engine == s.engine
              and (d.allowed_accelerators is None or s.accelerator in d.allowed_accelerators)
              and (d.allowed_quantizations is None or s.quant in d.allowed_quantizations))
        (hit if ok else miss).append(d.name)
    if not hit:
        uses = "; ".join(sorted({f"{d.model} ({d.engine or cat.default_engine})" for d in problem.models}))
        raise InputError(f"calibration: {cal.id} was measured on {cal.describe()}, which matches nothing "
                         f"in the plan (it plans {uses}, on the accelerators and formats it allows)",
                         where=str(path))
    applied = Applied(id=cal.id, file=str(path), applies_to=cal.describe(), applied_to=hit,
                      not_applied_to=miss, error_band=cal.error_band, date=cal.date)
    return cat.with_calibrations((cal,)), applied


def calibrated_for_shape(cat: "Catalog", path: str | Path | None, model: str, accelerator: str,
                         quant: str, engine: str) -> tuple["Catalog", Applied | None]:
    """The catalog with the overlay in effect for one shape (``estimate``); refused (one line)
    when the overlay was fitted on another model, accelerator, format or engine."""
    if path is None:
        return cat, None
    cal = load_calibration(path)
    if not cal.matches(model, accelerator, quant, engine):
        raise InputError(f"--calibration: {cal.id} was measured on {cal.describe()}, not on "
                         f"{model} on {accelerator} ({quant}, {engine})", where=str(path))
    applied = Applied(id=cal.id, file=str(path), applies_to=cal.describe(), applied_to=[model],
                      not_applied_to=[], error_band=cal.error_band, date=cal.date)
    return cat.with_calibrations((cal,)), applied
