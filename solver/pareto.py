"""Pareto sets over cost and a latency (or quality) axis, by epsilon-constraint re-solves.

For a latency axis (``ttft``, ``tpot``, ``e2e``) every model's target on that axis is scaled by a
factor f (tighter below 1, looser above 1) on a geometric grid that runs from 25% above the
tightest factor any allowed candidate could meet (``FLOOR_MARGIN``) up to ``LOOSEST_FACTOR``.
A model without a target on the axis gets the value its configuration reaches in the base plan,
so it is swept too. For ``quality``
the bound ``max_quality_loss_points`` takes each distinct loss of the allowed formats. Each point
is a full solve, hinted with the previous point's replicas (hints only guide the search), and a
verified plan. Every point shares one :class:`~solver.candidates.TableCache`: the cost model is
evaluated once per shape, and each point only recomputes capacities at its targets. Dominated points (no cheaper and no better on every axis) are removed.

The axis value of a plan is its worst value over deployments: the largest predicted p99 in ms,
or the largest quality loss in points. Dominance on a latency axis compares each model's own worst
value (models have their own targets), so a plan that serves one model faster is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from typing import TYPE_CHECKING

from solver.errors import InputError
from solver.optimize import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from solver.plan import Plan
from solver.problem import LatencyTarget, Problem

if TYPE_CHECKING:
    from solver.candidates import TableCache
    from solver.catalog import Catalog
    from solver.session import Session

LATENCY_AXES = ("ttft", "tpot", "e2e")
AXES = LATENCY_AXES + ("quality",)
AXIS_KEY = {"ttft": "ttft_p99_ms", "tpot": "tpot_p99_ms", "e2e": "e2e_p99_ms",
            "quality": "quality_loss_points"}
LOOSEST_FACTOR = 2.0
"""The sweep goes up to twice the stated targets: 'what would I save if I relaxed them?'"""
FLOOR_MARGIN = 1.25
"""The tightest setting swept is 25% above the best zero-load latency any candidate reaches."""


@dataclass(frozen=True)
class ParetoPoint:
    plan: Plan
    values: dict[str, float]
    """Axis name -> the plan's worst value on it."""
    setting: dict[str, float]
    """Axis name -> the factor (latency) or bound (quality) this point was solved at."""
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)
    """Latency axis -> model -> that model's worst value: what dominance compares (models have
    their own targets, so the worst raw value across models would track one model only)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cost_usd_per_hour": self.plan.cost_usd_per_hour}
        for axis, v in self.values.items():
            out[AXIS_KEY[axis]] = round(v, 4)
        out["setting"] = dict(self.setting)
        out["status"] = self.plan.status.value
        out["deployments"] = [
            {k: d.to_dict()[k] for k in ("model", "serving_mode", "accelerator", "quant", "kv_dtype", "tp", "pp",
                                         "ep", "max_batch", "replicas", "total_gpus", "ttft_p99_ms", "tpot_p99_ms",
                                         "e2e_p99_ms", "cost_usd_per_hour")}
            | ({"pools": d.to_dict()["pools"]} if d.pools else {})
            for d in self.plan.deployments
        ]
        return out


@dataclass(frozen=True)
class ParetoResult:
    axes: tuple[str, ...]
    points: tuple[ParetoPoint, ...]
    solves: int

    def to_dict(self) -> dict[str, Any]:
        return {"axes": list(self.axes), "solves": self.solves,
                "points": [p.to_dict() for p in self.points]}


def parse_axes(text: str) -> tuple[str, ...]:
    """``"ttft"`` or ``"ttft,quality"`` -> validated tuple (at most two axes)."""
    axes = tuple(a.strip().lower() for a in text.split(",") if a.strip())
    bad = [a for a in axes if a not in AXES]
    if not axes or bad:
        raise InputError(f"--axis: unknown axis {', '.join(bad) or repr(text)}; choose from {', '.join(AXES)}")
    if len(set(axes)) != len(axes) or len(axes) > 2:
        raise InputError("--axis: give one axis, or two different ones separated by a comma")
    return axes


def default_axis(problem: Problem) -> str:
    """The latency axis users of this problem care about: TTFT if any model targets it, else
    TPOT, else end-to-end."""
    for axis in LATENCY_AXES:
        if any(getattr(d.slo, axis) is not None for d in problem.models):
            return axis
    return "ttft"


def plan_value(plan: Plan, axis: str, cat: "Catalog") -> float:
    """The plan's worst value on an axis (ms for latency, points for quality)."""
    if axis == "quality":
        return max((cat.quantization(d.quant).quality_loss.points for d in plan.deployments), default=0.0)
    return max((getattr(d, AXIS_KEY[axis]) for d in plan.deployments), default=0.0)


def _scaled(problem: Problem, axis: str, factor: float, base: dict[str, float]) -> Problem:
    """The problem with every model's ``axis`` target scaled by ``factor``."""
    models = []
    for d in problem.models:
        target: LatencyTarget | None = getattr(d.slo, axis)
        ms = (target.max_ms if target else base[d.name]) * factor
        pct = d.slo.percentile(axis)
        slo = d.slo.model_copy(update={axis: LatencyTarget(max_ms=ms, percentile=pct)})
        models.append(d.model_copy(update={"slo": slo}))
    return problem.model_copy(update={"models": models})


def _with_quality(problem: Problem, bound: float) -> Problem:
    models = [d.model_copy(update={"max_quality_loss_points": bound}) for d in problem.models]
    return problem.model_copy(update={"models": models})


def _solve_hinted(session: "Session", hint: Plan | None, time_limit_s: float,
                  workers: int) -> Plan | None:
    """Solve a prepared problem, hinting replica counts from ``hint``; None when no plan."""
    t0 = time.perf_counter()
    sol = session.solve(time_limit_s, workers, hint=hint)
    if not sol.status.has_plan:
        return None
    return session.plan(sol, time.perf_counter() - t0)


def per_model_values(plan: Plan, axes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Latency axis -> model -> the model's worst value on it in ``plan``."""
    out: dict[str, dict[str, float]] = {}
    for axis in axes:
        if axis in LATENCY_AXES:
            by: dict[str, float] = {}
            for d in plan.deployments:
                by[d.model] = max(by.get(d.model, 0.0), getattr(d, AXIS_KEY[axis]))
            out[axis] = by
    return out


def _latency_settings(prep: "Session", problem: Problem, axis: str, base: dict[str, float],
                      points: int) -> list[float]:
    """Geometric grid of factors from the tightest any candidate could meet to LOOSEST_FACTOR."""
    floor_key = {"ttft": "ttft_min_ms", "tpot": "tpot_p99_ms", "e2e": "e2e_min_ms"}[axis]
    tightest = 0.0
    for t in prep.tables:
        best = t.best.get(axis)
        target = getattr(t.demand.slo, axis)
        ref = target.max_ms if target else base.get(t.name)
        if best is not None and ref:
            tightest = max(tightest, getattr(best, floor_key) / ref)
    # Right at the zero-load floor a target is met only as utilisation goes to zero (replica
    # counts explode); start the sweep FLOOR_MARGIN above it.
    lo = min(max(tightest * FLOOR_MARGIN, 0.05), 1.0)
    if points == 1:
        return [1.0]
    ratio = (LOOSEST_FACTOR / lo) ** (1 / (points - 1))
    return sorted({round(lo * ratio**k, 6) for k in range(points)})


def _quality_settings(cat: "Catalog", problem: Problem) -> list[float]:
    losses = set()
    for d in problem.models:
        for q in d.allowed_quantizations or sorted(cat.quantizations):
            losses.add(cat.quantization(q).quality_loss.points)
    cap = min((d.max_quality_loss_points for d in problem.models if d.max_quality_loss_points is not None),
              default=math.inf)
    return sorted(v for v in losses if v <= cap) or [0.0]


def non_dominated(points: Sequence[ParetoPoint], axes: Sequence[str]) -> list[ParetoPoint]:
    """Points no other point beats on cost and every axis (ties keep the first), cost order. On a
    latency axis each model counts on its own (``per_model``, where the point has it)."""
    def vec(p: ParetoPoint) -> tuple[float, ...]:
        out = [round(p.plan.cost_usd_per_hour or 0.0, 6)]
        for a in axes:
            by = p.per_model.get(a)
            out += [round(by[m], 6) for m in sorted(by)] if by else [round(p.values[a], 6)]
        return tuple(out)

    keep: list[ParetoPoint] = []
    seen: set[tuple[float, ...]] = set()
    for p in points:
        v = vec(p)
        if v in seen:
            continue
        if any(all(a <= b for a, b in zip(vec(q), v)) and vec(q) != v for q in points):
            continue
        seen.add(v)
        keep.append(p)
    return sorted(keep, key=vec)


def pareto(
    problem: Problem, cat: "Catalog", axes: Sequence[str] = ("ttft",), points: int = 6,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S, workers: int = DEFAULT_WORKERS,
    progress: Callable[[int, int], None] | None = None, base_plan: Plan | None = None,
    cache: "TableCache | None" = None,
) -> ParetoResult:
    """Non-dominated plans over cost and ``axes`` (one or two); see the module docstring.
    ``cache``: shape evaluations to reuse (one is made for the sweep without it)."""
    from solver.candidates import TableCache
    from solver.session import Session

    if points < 2:
        raise InputError(f"--points must be >= 2 (got {points})")
    axes = tuple(axes)
    cache = cache if cache is not None else TableCache()
    base_prep = Session.prepare(problem, cat, cache=cache)
    base = base_plan or _solve_hinted(base_prep, None, time_limit_s, workers)
    # Models without a target on a latency axis are swept from what the base plan reaches.
    reach: dict[str, dict[str, float]] = {}
    for axis in axes:
        if axis in LATENCY_AXES:
            reach[axis] = {
                d.model: max(getattr(x, AXIS_KEY[axis]) for x in (base.deployments if base else ()) if x.model == d.model)
                for d in (base.deployments if base else ())
            }
            missing = [m.name for m in problem.models if getattr(m.slo, axis) is None and m.name not in reach[axis]]
            if missing:
                return ParetoResult(axes, (), 1)
    grids: list[list[tuple[str, float]]] = []
    for axis in axes:
        if axis == "quality":
            grids.append([(axis, v) for v in _quality_settings(cat, problem)])
        else:
            grids.append([(axis, f) for f in _latency_settings(base_prep, problem, axis, reach[axis], points)])
    combos: list[tuple[tuple[str, float], ...]] = [(g,) for g in grids[0]]
    if len(grids) == 2:
        combos = [(a, b) for a in grids[0] for b in grids[1]]
    found: list[ParetoPoint] = []
    hint = base
    # Loosest settings first: each tighter solve starts from the previous plan.
    for n, combo in enumerate(reversed(combos), 1):
        variant = problem
        for axis, setting in combo:
            variant = (_with_quality(variant, setting) if axis == "quality"
                       else _scaled(variant, axis, setting, reach[axis]))
        plan = _solve_hinted(Session.prepare(variant, cat, cache=cache), hint, time_limit_s, workers)
        if progress:
            progress(n, len(combos))
        if plan is None:
            continue
        hint = plan
        found.append(ParetoPoint(plan, {a: plan_value(plan, a, cat) for a in axes}, dict(combo),
                                 per_model_values(plan, axes)))
    if base is not None:
        base_setting = {a: 1.0 if a in LATENCY_AXES else max(_quality_settings(cat, problem)) for a in axes}
        found.append(ParetoPoint(base, {a: plan_value(base, a, cat) for a in axes}, base_setting,
                                 per_model_values(base, axes)))
    return ParetoResult(axes, tuple(non_dominated(found, axes)), len(combos) + 1)
