"""``fleetplan bench-plan``, ``size`` and ``check-production``: from a plan to a benchmark of one
instance, from the measured curve back to a fleet size, and from week-one metrics to a verdict.

Exit codes: 0 success (check-production: the plan holds), 1 check-production says re-plan,
2 bad input (one line, nothing written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from solver import benchplan, production
from solver.catalog import load_catalog
from solver.cli import EXIT_INFEASIBLE
from solver.cli.output import emit_json, fmt, table
from solver.errors import InputError
from solver.measured import UNDERSTOOD, load_sweep
from solver.operating_point import compare_with_plan, operating_point, size_fleet


def load_plan(path: Path, where: str = "PLAN.json") -> dict[str, Any]:
    """A plan as printed by ``solve --json`` / ``query --json``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", where=f"{where} {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=f"{where} {path}") from None
    except ValueError as exc:
        raise InputError(f"not JSON ({exc})", where=f"{where} {path}") from None
    if not isinstance(doc, dict) or "deployments" not in doc:
        raise InputError("not a plan (no 'deployments'); use the output of `fleetplan solve --json`",
                         where=f"{where} {path}")
    return doc


@click.command("bench-plan")
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option("--engine", type=click.Choice(benchplan.ENGINES), required=True, help="Serving engine to launch.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Write DIR/<config>/run.sh (+ engine files) and DIR/bench-plan.json; default: print.")
@click.option("--json", "as_json", is_flag=True, help="Print the configurations as JSON (argv lists).")
def bench_plan_cmd(plan_file: Path, engine: str, out_dir: Path | None, as_json: bool) -> None:
    """Benchmark commands for every configuration of PLAN_FILE (what `solve --json` or
    `query --json` prints): the engine launch with the plan's TP/PP/EP, quantisation, KV dtype,
    batch cap, batched tokens, chunked prefill, prefix caching, memory share and context limit,
    then a concurrency sweep from 1 to past the predicted knee (the batch cap) with the
    workload's lengths, for the engine's own client (vllm bench serve, sglang.bench_serving)
    and for AIPerf and GuideLLM. Results land under results/<config>/<client>/; feed them to
    `fleetplan size --from-bench`.

    \b
      fleetplan solve problems/chat-assistant-70b.yaml --json --no-pareto > plan.json
      fleetplan bench-plan plan.json --engine vllm --out bench/
      bash bench/<config>/run.sh
    """
    plan = load_plan(plan_file)
    configs = benchplan.bench_plan(plan, engine, load_catalog())
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError("exists and is not a folder", where=f"--out {out_dir}")
        for c in configs:
            d = out_dir / c.name
            d.mkdir(parents=True, exist_ok=True)
            script = d / "run.sh"
            script.write_text(c.script(), encoding="utf-8")
            script.chmod(0o755)
            for name, text in c.files.items():
                (d / name).write_text(text, encoding="utf-8")
        (out_dir / "bench-plan.json").write_text(
            json.dumps([c.to_dict() for c in configs], indent=2) + "\n", encoding="utf-8")
    if as_json:
        emit_json([c.to_dict() for c in configs])
        return
    if out_dir is not None:
        for c in configs:
            click.echo(f"{out_dir / c.name / 'run.sh'}: {c.engine}, concurrency "
                       f"{','.join(str(x) for x in c.concurrencies)} (knee ~{c.predicted_knee}), "
                       f"clients {', '.join(c.clients)}")
        return
    for c in configs:
        click.echo(c.script())
        for name, text in c.files.items():
            click.echo(f"# --- {name} ---")
            click.echo(text)


def _target(plan: dict[str, Any] | None, model: str | None, ttft: float | None) -> tuple[float, str | None]:
    if ttft is not None:
        return ttft, model
    if plan is None:
        raise InputError("give --ttft-p99-ms (or --plan with a TTFT target)")
    gs = [g for g in plan.get("guardrails") or [] if isinstance(g, dict) and (model is None or g.get("model") == model)]
    if len(gs) != 1:
        raise InputError("give --ttft-p99-ms, or --model naming one of the plan's models", where="--plan")
    slo = (gs[0].get("workload") or {}).get("slo") or {}
    if "ttft" not in slo:
        raise InputError(f"model {gs[0].get('model')!r} has no TTFT target: give --ttft-p99-ms", where="--plan")
    return float(slo["ttft"]["max_ms"]), str(gs[0].get("model"))


def _gpus(plan: dict[str, Any] | None, model: str | None, gpus: int | None) -> int:
    if gpus is not None:
        return gpus
    deps = [d for d in (plan or {}).get("deployments", []) if model is None or d.get("model") == model]
    sizes = {int(d["gpus_per_replica"]) for d in deps if "gpus_per_replica" in d}
    if len(sizes) != 1:
        raise InputError("give --gpus-per-instance (the plan does not fix one instance size)")
    return sizes.pop()


@click.command("size")
@click.option("--from-bench", "results", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Results file or folder (repeatable): " + UNDERSTOOD + ".")
@click.option("--peak-rps", type=click.FloatRange(min=0, min_open=True), required=True, help="Peak requests/s to serve.")
@click.option("--safety", type=click.FloatRange(min=1.0), default=1.3, show_default=True,
              help="Safety factor on the GPU count (1.3 = 30% spare).")
@click.option("--ttft-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="p99 TTFT target (default: the plan's).")
@click.option("--itl-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also require p99 ITL at or below this.")
@click.option("--gpus-per-instance", type=click.IntRange(min=1), default=None,
              help="GPUs of the benchmarked instance (default: the plan's replica size).")
@click.option("--plan", "plan_file", type=click.Path(path_type=Path), default=None,
              help="Plan JSON to compare with (from `solve --json` / `query --json`).")
@click.option("--model", default=None, help="Model of the plan the benchmark is for (plans with several).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def size_cmd(results: tuple[Path, ...], peak_rps: float, safety: float, ttft_p99_ms: float | None,
             itl_p99_ms: float | None, gpus_per_instance: int | None, plan_file: Path | None,
             model: str | None, as_json: bool) -> None:
    """Fleet size from a measured sweep of one instance: knee, C_max (largest concurrency whose
    p99 TTFT meets the target), usable requests/s at C_max, Little's-law check of the sweep,
    then instances = ceil(peak / usable) x GPUs per instance x safety, beside fleetplan's plan.

    \b
      fleetplan size --from-bench results/ --peak-rps 120 --safety 1.3 \\
          --ttft-p99-ms 2000 --gpus-per-instance 4
      fleetplan size --from-bench sweep.csv --peak-rps 120 --plan plan.json

    Plain CSV columns: concurrency (or request_rate_rps), ttft_p50_ms, ttft_p99_ms, itl_p50_ms,
    itl_p99_ms, output_tokens_per_s, requests_per_s[, e2e_mean_ms]; one row per sweep point.
    """
    plan = load_plan(plan_file, "--plan") if plan_file is not None else None
    target, model = _target(plan, model, ttft_p99_ms)
    g = _gpus(plan, model, gpus_per_instance)
    sweep = load_sweep(list(results))
    op = operating_point(sweep, target, itl_p99_ms)
    size = size_fleet(peak_rps, op.usable_requests_per_s, g, safety)
    cmp = compare_with_plan(size, op, plan, model) if plan is not None else None
    if as_json:
        emit_json({"sweep": sweep.to_dict(), "operating_point": op.to_dict(), "size": size.to_dict(),
                   "plan": cmp})
        return
    click.echo(f"sweep: {len(sweep.points)} points ({', '.join(sweep.formats)})")
    click.echo(f"knee ~{fmt(op.knee_concurrency)} concurrent ({fmt(op.knee_requests_per_s)} req/s); "
               f"peak {fmt(op.peak_requests_per_s)} req/s at {fmt(op.peak_concurrency)} (not usable if it misses the target)")
    click.echo(f"C_max {fmt(op.c_max)} (p99 TTFT {fmt(op.ttft_p99_at_c_max_ms)} ms <= {fmt(target)} ms): "
               f"usable {fmt(op.usable_requests_per_s)} req/s per instance")
    click.echo(f"Little's law: {'consistent' if op.little_ok else 'INCONSISTENT'}")
    for w in op.warnings:
        click.echo(f"  warning: {w}")
    click.echo(f"fleet: ceil({fmt(peak_rps)} / {fmt(op.usable_requests_per_s)}) = {size.instances} instances x "
               f"{g} GPUs x {fmt(safety)} = {fmt(size.gpus_rule)} GPUs -> deploy {size.instances_deployed} "
               f"instances = {size.gpus} GPUs")
    if cmp is not None:
        click.echo(f"plan: {cmp['plan_gpus']} GPUs ({'; '.join(cmp['configurations'])}), "
                   f"{fmt(cmp['plan_capacity_rps_per_replica'])} req/s per replica predicted vs "
                   f"{fmt(cmp['measured_usable_rps_per_instance'])} measured "
                   f"(x{cmp['measured_over_predicted_capacity']:.2f}); benchmark sizing / plan = "
                   f"x{cmp['bench_over_plan_gpus']:.2f}")


@click.command("check-production")
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.argument("metrics_file", type=click.Path(path_type=Path))
@click.option("--latency-over", type=click.FloatRange(min=0), default=production.LATENCY_OVER, show_default=True,
              help="Re-plan when p99 TTFT or ITL is more than this share above the plan (0.3 = 30%).")
@click.option("--util-points", type=click.FloatRange(min=0), default=production.UTIL_POINTS, show_default=True,
              help="Re-plan when GPU or KV utilisation is more than this many points below the plan's expectation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_production_cmd(plan_file: Path, metrics_file: Path, latency_over: float, util_points: float,
                         as_json: bool) -> None:
    """Week-one check: compare production metrics with PLAN_FILE and say whether to re-plan.

    Re-plan (exit 1) when, in any window of METRICS_FILE: traffic exceeds the plan's load; p99
    TTFT or p99 ITL is more than 30% above the plan's p99; GPU or KV utilisation is more than 20
    points below what the plan expects at the observed request rate (over-provisioned).

    METRICS_FILE columns: request_rate_rps, and any of ttft_p99_ms, itl_p99_ms,
    gpu_utilisation_pct (DCGM GPU_UTIL), kv_cache_utilisation_pct; optional model (plans
    with several models). One row per window.

    \b
      fleetplan check-production plan.json week1.csv
    """
    plan = load_plan(plan_file)
    rows = production.read_metrics(metrics_file)
    res = production.check(plan, rows, latency_over, util_points)
    if as_json:
        emit_json(res.to_dict())
    else:
        click.echo(f"{'RE-PLAN' if res.replan else 'plan holds'} ({len(rows)} windows)")
        click.echo(table([{**f.to_dict(), "status": "BREACH" if f.breach else "ok"} for f in res.findings],
                         ["window", "model", "metric", "observed", "expected", "limit", "status"]))
        if res.not_checked:
            click.echo(f"not checked (no column): {', '.join(res.not_checked)}")
    if res.replan:
        sys.exit(EXIT_INFEASIBLE)


COMMANDS = (bench_plan_cmd, size_cmd, check_production_cmd)
