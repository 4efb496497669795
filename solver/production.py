"""Week-one check: production metrics against the plan, and whether to re-plan.

METRICS.csv, one row per window (e.g. 5 minutes at the daily peak), columns:

- ``request_rate_rps`` (required): observed requests/s of the model in the window;
- ``ttft_p99_ms``, ``itl_p99_ms``: observed p99s in the window;
- ``gpu_utilisation_pct``: share of time a kernel ran (DCGM ``GPU_UTIL``), mean over the GPUs;
- ``kv_cache_utilisation_pct``: KV cache in use, mean over instances (vLLM
  ``kv_cache_usage_perc`` x 100, SGLang token usage x 100);
- ``model`` (optional): the plan's model name, for plans with several models;
- any other column (a timestamp) is carried along and ignored.

At least one of the four metric columns is needed; missing ones are reported as not checked.

Rules (per window; re-plan when any window breaks one):

- traffic above the plan's load (peak x (1 + headroom)) -> re-plan;
- p99 TTFT or p99 ITL more than ``LATENCY_OVER`` (30%) above the plan's p99 at its planned
  load (the plan's p99 at a lower rate is lower, so this is lenient below the planned load);
- GPU or KV utilisation more than ``UTIL_POINTS`` (20) points below what the plan expects at
  the observed rate: the cost model over-estimates the work and the fleet is over-provisioned.
  Expected values come from the plan's ``guardrails[].expected`` at planned load, scaled to the
  observed rate by Little's law (requests in flight grow with the rate at a fixed stay).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from solver.errors import InputError

LATENCY_OVER = 0.30
UTIL_POINTS = 20.0
METRIC_COLUMNS = ("ttft_p99_ms", "itl_p99_ms", "gpu_utilisation_pct", "kv_cache_utilisation_pct")


@dataclass(frozen=True)
class Finding:
    window: int
    """1-based data row of METRICS.csv."""
    model: str
    metric: str
    observed: float
    expected: float
    limit: float
    breach: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProductionCheck:
    replan: bool
    findings: tuple[Finding, ...]
    not_checked: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"replan": self.replan, "verdict": "re-plan" if self.replan else "plan holds",
                "findings": [f.to_dict() for f in self.findings], "not_checked": list(self.not_checked)}


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of METRICS.csv; ``InputError`` for a missing file, column or an empty table."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=str(path)) from None
    reader = csv.DictReader(io.StringIO(text))
    cols = set(reader.fieldnames or [])
    if "request_rate_rps" not in cols:
        raise InputError("needs a request_rate_rps column", where=str(path))
    if not cols & set(METRIC_COLUMNS):
        raise InputError(f"needs at least one of {', '.join(METRIC_COLUMNS)}", where=str(path))
    rows = list(reader)
    if not rows:
        raise InputError("has no data rows", where=str(path))
    return rows


def _f(row: dict[str, str], col: str, where: str) -> float | None:
    v = (row.get(col) or "").strip()
    if not v:
        return None
    try:
        x = float(v)
    except ValueError:
        raise InputError(f"{col} is not a number: {v!r}", where=where) from None
    if math.isnan(x) or x < 0:
        raise InputError(f"{col} must be a number >= 0, got {v!r}", where=where)
    return x


def _plan_model(plan: dict[str, Any], model: str | None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    deps = plan.get("deployments") or []
    names = sorted({str(d.get("model")) for d in deps})
    if not names:
        raise InputError("has no deployments", where="PLAN.json")
    if model is None:
        if len(names) > 1:
            raise InputError(f"the plan has several models ({', '.join(names)}): add a model column", where="METRICS.csv")
        model = names[0]
    if model not in names:
        raise InputError(f"model {model!r} is not in the plan ({', '.join(names)})", where="METRICS.csv")
    g = next((x for x in plan.get("guardrails") or [] if isinstance(x, dict) and x.get("model") == model), None)
    if g is None or not isinstance(g.get("expected"), dict):
        raise InputError(f"no guardrails.expected for {model!r}: make PLAN.json with this version's "
                         "`fleetplan solve --json`", where="PLAN.json")
    return model, [d for d in deps if d.get("model") == model], g


def check(plan: dict[str, Any], rows: list[dict[str, str]], latency_over: float = LATENCY_OVER,
          util_points: float = UTIL_POINTS) -> ProductionCheck:
    """Compare every window of METRICS.csv with the plan."""
    findings: list[Finding] = []
    seen: set[str] = set()
    for i, row in enumerate(rows, start=1):
        where = f"METRICS.csv: row {i}"
        model, deps, g = _plan_model(plan, (row.get("model") or "").strip() or None)
        try:
            load = sum(float(d["load_rps"]) for d in deps)
            ttft_plan = max(float(d["ttft_p99_ms"]) for d in deps)
            itl_plan = max(float(d["tpot_p99_ms"]) for d in deps)
            exp = g["expected"]
            in_flight = float(exp["in_flight_per_replica"])
            kv_exp = float(exp["kv_utilisation_pct"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"plan lacks a numeric field ({exc})", where="PLAN.json") from None
        rate = _f(row, "request_rate_rps", where)
        if rate is None:
            raise InputError("request_rate_rps is empty", where=where)
        scale = rate / load if load > 0 else 0.0

        def add(metric: str, observed: float, expected: float, limit: float, breach: bool, msg: str) -> None:
            seen.add(metric)
            findings.append(Finding(i, model, metric, observed, expected, limit, breach, msg))

        add("request_rate_rps", rate, load, load, rate > load,
            f"{rate:g} req/s vs the plan's load {load:.3g} req/s"
            + (" -- traffic above the plan" if rate > load else ""))
        for col, planned, label in (("ttft_p99_ms", ttft_plan, "p99 TTFT"), ("itl_p99_ms", itl_plan, "p99 ITL")):
            v = _f(row, col, where)
            if v is not None:
                lim = planned * (1 + latency_over)
                add(col, v, planned, lim, v > lim,
                    f"{label} {v:g} ms vs plan {planned:.4g} ms (limit +{latency_over:.0%} = {lim:.4g} ms)")
        gpu = _f(row, "gpu_utilisation_pct", where)
        if gpu is not None:
            expected = 100.0 * (1.0 - math.exp(-in_flight * scale))
            lim = expected - util_points
            add("gpu_utilisation_pct", gpu, expected, lim, gpu < lim,
                f"GPU utilisation {gpu:g}% vs {expected:.3g}% expected at {rate:g} req/s "
                f"(limit {util_points:g} points below)")
        kv = _f(row, "kv_cache_utilisation_pct", where)
        if kv is not None:
            expected = min(100.0, kv_exp * scale)
            lim = expected - util_points
            add("kv_cache_utilisation_pct", kv, expected, lim, kv < lim,
                f"KV utilisation {kv:g}% vs {expected:.3g}% expected at {rate:g} req/s "
                f"(limit {util_points:g} points below)")
    not_checked = tuple(c for c in METRIC_COLUMNS if c not in seen)
    return ProductionCheck(any(f.breach for f in findings), tuple(findings), not_checked)
