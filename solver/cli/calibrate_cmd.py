"""``fleetplan calibrate``: fit efficiency factors to a measured sweep; the shared
``--calibration`` / ``--confidence`` options of the planning commands."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

import click

from solver.catalog import Catalog, load_catalog
from solver.cli.output import emit_json, fmt, table
from solver.errors import InputError
from solver.overlay import Applied, calibrated_catalog, calibration_yaml
from solver.problem import MAX_TOKENS, Problem
from solver.uncertainty import check_confidence


def calibration_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--calibration FILE`` and ``--confidence C`` (added to solve, query, capacity ...)."""
    f = click.option("--confidence", type=float, default=None,
                     help="Plan against the upper latency / lower capacity bound at this confidence, in "
                          "(0, 1), e.g. 0.9: step times x exp(z x sigma), sigma the error band of each "
                          "configuration and batch cap (calibration fit, widened outside what it measured; "
                          "else catalogs/error_bands.yaml by family, format and batch).")(f)
    return click.option("--calibration", "calibration", type=click.Path(path_type=Path), default=None,
                        help="Calibration overlay from `fleetplan calibrate` (default: the problem's "
                             "`calibration:` key); applied where model, accelerator, format and engine match.")(f)


def planning_inputs(cat: Catalog, problem: Problem, calibration: Path | None, confidence: float | None
                    ) -> tuple[Catalog, Problem, Applied | None]:
    """The catalog with the calibration in effect and the problem with ``--confidence`` set."""
    check_confidence(confidence)
    cat, applied = calibrated_catalog(cat, problem, calibration)
    if confidence is not None:
        problem = problem.model_copy(update={"confidence": confidence})
    return cat, problem, applied


@click.command("calibrate")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, help="model id the sweep ran")
@click.option("--gpu", required=True, help="accelerator id it ran on")
@click.option("--quant", required=True, help="weight format id")
@click.option("--kv-dtype", required=True, help="KV-cache dtype id")
@click.option("--tp", type=click.IntRange(1, 1024), required=True, help="tensor-parallel GPUs")
@click.option("--pp", type=click.IntRange(1, 1024), default=1, show_default=True, help="pipeline stages")
@click.option("--ep", type=click.IntRange(1, 1024), default=1, show_default=True, help="expert-parallel GPUs")
@click.option("--engine", required=True, help="serving engine id (catalogs/engines.yaml)")
@click.option("--isl", type=click.IntRange(1, MAX_TOKENS), required=True, help="prompt tokens per request of the sweep")
@click.option("--osl", type=click.IntRange(1, MAX_TOKENS), required=True, help="output tokens per request of the sweep")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="overlay YAML to write")
@click.option("--date", default=None, help="date recorded in the overlay (default: today, UTC; YYYY-MM-DD)")
@click.option("--json", "as_json", is_flag=True, help="print the overlay as JSON too")
def calibrate(results: tuple[Path, ...], model: str, gpu: str, quant: str, kv_dtype: str, tp: int, pp: int,
              ep: int, engine: str, isl: int, osl: int, out: Path, date: str | None, as_json: bool) -> None:
    """Fit the efficiency factors of one accelerator / engine / format to a measured
    concurrency sweep and write a calibration overlay.

    RESULTS: what the benchmark clients write (vLLM bench JSON, SGLang bench_serving JSONL,
    AIPerf/GenAI-Perf JSON or CSV, GuideLLM JSON; a folder is searched) or the plain CSV
    (header concurrency or request_rate_rps, ttft_p50_ms, ttft_p99_ms, itl_p50_ms, itl_p99_ms,
    output_tokens_per_s, requests_per_s; one row per load level), at least three points in all. The configuration the sweep ran on is given by the flags (the CSV holds
    only measurements). Fitted by least squares on log(predicted / measured) of median TTFT,
    median ITL and output tokens/s: eta_bw (achievable HBM bandwidth), mfu_prefill,
    mfu_decode, host_overhead_factor (x the engine's host time per step) and, with TP/EP/PP > 1,
    collective_factor (x the links' efficiency). A factor the sweep does not constrain is
    held at the catalog's value and said so. Prints each factor with its 90% confidence
    interval and the fit error (MAPE per metric).

    Tails: p99 / median of TTFT and ITL per point gives a tail factor (geometric mean, 90%
    interval) and its trend per doubling of concurrency. The TTFT factor is applied when
    planning with the overlay (the model's zero-wait TTFT at the target's percentile x the
    factor, scaled as lognormal jitter below p99); the ITL factor is reported only. When the
    data cannot pin a constant factor -- no separate p99, an open-loop rate sweep, a ratio that
    drifts more than 1.25x across the sweep, or an interval wider than 2x -- it says
    "not identifiable" and why, and nothing is applied.

    Range: the overlay records the ISL, OSL and concurrencies measured; outside them the
    calibrated error band widens back toward the uncalibrated one (fully at 3 octaves, i.e.
    8x, summed over ISL, OSL and batch; see README "Calibration and confidence").

    \b
    Example:
      fleetplan calibrate sweep.csv --model llama-3.1-70b --gpu h100-sxm --quant fp8 \\
          --kv-dtype fp8 --tp 4 --engine vllm --isl 1000 --osl 200 --out h100-vllm.yaml
      fleetplan query ... --calibration h100-vllm.yaml --confidence 0.9

    Exit codes: 0 written, 2 bad input (nothing written).
    """
    from solver.calibration import SweepConfig, fit_calibration
    from solver.measured import load_sweep

    cat = load_catalog()
    if engine not in cat.engines:
        from solver.errors import unknown_id
        raise InputError("--engine: " + unknown_id("engine", engine, cat.engines))
    when = date or dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        dt.date.fromisoformat(when)
    except ValueError:
        raise InputError(f"--date: expected YYYY-MM-DD, got {when!r}") from None
    points = list(load_sweep(list(results)).points)  # any client format `fleetplan size` reads
    config = SweepConfig(model=model, accelerator=gpu, quant=quant, kv_dtype=kv_dtype, tp=tp, pp=pp, ep=ep,
                         engine=engine, isl=isl, osl=osl)
    cal = fit_calibration(cat, config, points, [str(f) for f in results], when)
    text = calibration_yaml(cal)
    try:
        out.write_text(text)
    except OSError as exc:
        raise InputError(f"--out: cannot write: {exc.strerror}", where=str(out)) from None
    if as_json:
        emit_json(cal.to_dict())
        return
    click.echo(f"calibration {cal.id}: {cal.fit.points} points, residual sd {cal.fit.residual_sd_log:.3f} (log), "
               f"MAPE " + ", ".join(f"{k} {v:.1f}%" for k, v in cal.fit.mape_pct.items()))
    rows = [{"factor": k, "value": fmt(v),
             f"interval_{cal.interval_level:.0%}": (f"{fmt(cal.interval[k][0])} - {fmt(cal.interval[k][1])}"
                                                   if k in cal.interval else "-"),
             "fitted": "yes" if k in cal.fitted else f"held: {cal.held.get(k, '')}"}
            for k, v in cal.factors.items()]
    click.echo(table(rows, list(rows[0])))
    for name, tail in cal.tails.items():
        click.echo(f"p99 {name}: {tail.note}" if tail.identifiable else f"p99 {name}: not identifiable: {tail.note}")
    click.echo(f"wrote {out}")


def plan_uncertainty(problem: Problem, cat: Catalog, plan: Any, applied: Applied | None,
                     time_limit: float, workers: int, cache: Any = None) -> dict[str, Any]:
    """JSON fields (``calibration``, ``confidence``) and text lines a plan adds for its
    calibration and error bands (``cache``: the plan's ``TableCache``, reused)."""
    from solver.confidence import confidence_summary, summary_lines

    js: dict[str, Any] = {"calibration": applied.model_dump() if applied else None}
    lines = [applied.line()] if applied else []
    if plan.status.has_plan:
        js["confidence"] = confidence_summary(problem, cat, plan, time_limit, workers, cache)
        lines += summary_lines(js["confidence"])
    return {"json": js, "lines": lines}


def capacity_uncertainty(problem: Problem, cat: Catalog, gpus: int, answer: Any, applied: Applied | None,
                         time_limit: float, workers: int) -> dict[str, Any]:
    """The same for a capacity answer (the lower capacity bound at the confidence)."""
    from solver.confidence import capacity_summary

    js: dict[str, Any] = {"calibration": applied.model_dump() if applied else None}
    lines = [applied.line()] if applied else []
    if problem.confidence is not None and answer.status.has_plan:
        c = js["confidence"] = capacity_summary(problem, cat, gpus, answer, time_limit, workers)
        lines.append(f"confidence {c['level']:g}: {fmt(c['requests_per_s'])} req/s vs "
                     f"{fmt(c['requests_per_s_at_point_estimate'])} at the point estimate")
    return {"json": js, "lines": lines}
