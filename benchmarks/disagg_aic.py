"""Disaggregated vs aggregated serving: fleetplan's best configurations beside AIConfigurator's.

Usage::

    python benchmarks/disagg_aic.py --aic-venv /work/aic-venv   # run AIC (CPU, minutes), compare
    python benchmarks/disagg_aic.py                             # compare with the cached AIC rows

The scenario is issue 11's: Llama-3.1-70B on 8 x H200, ISL 4000 / OSL 1000, TTFT 1 s, TPOT
50 ms. AIC's ``cli default`` search (``benchmarks/aic_driver.py modes``; it runs the model's
released format, bf16 for this checkpoint) gives its best aggregated and best disaggregated
configuration on 8 GPUs in output tokens/s per GPU. fleetplan's figures are read from its own
candidate tables for the same scenario (``solver.candidates.model_table``; both serving modes,
at most 8 GPUs per replica or unit): the best aggregated replica and the best disaggregated unit
by capacity at the targets x OSL / GPUs, in bf16 and in fp8 (the issue's AIC figures, 832
aggregated and 932 disaggregated tokens/s/GPU, were for fp8).

The two tools do not measure the same thing: fleetplan's capacity keeps the p99 TTFT *with
queueing* (an M/G/c wait at the prefill pool, :mod:`solver.disagg`), AIC's TTFT is a static
prefill latency at its chosen batch. So the script also prints fleetplan's terms under AIC's
rule (zero-load TTFT within the target, every pool at utilisation RHO_MAX; a diagnostic, not a
plan), which separates what the queueing tail costs from what the terms say. Printed side by
side, never fitted. AIC's rows are cached
in ``benchmarks/results/aic_modes.csv`` (with AIC's version) so the comparison reprints
without the AIC environment.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.peers import AIC_MODELS, AIC_SYSTEMS, run_aic  # noqa: E402

CACHE = REPO / "benchmarks" / "results" / "aic_modes.csv"
SCENARIO = ("llama-3.1-70b", "h200-sxm", 8, 4000, 1000, 1000.0, 50.0)
"""(model, accelerator, GPUs, ISL, OSL, TTFT ms, TPOT ms): issue 11's example."""


def key(sc: tuple) -> str:
    model, gpu, n, isl, osl, ttft, tpot = sc
    return f"{model}|{gpu}|{n}|{isl}/{osl}|ttft{ttft:g}|tpot{tpot:g}"


def scenario_problem(sc: tuple, name: str, slo: dict, **entry: object) -> Any:
    """A one-model problem of scenario ``sc`` at 1 req/s with fixed lengths (ISL/OSL at every
    percentile), targets ``slo``, one replica minimum and further model-entry fields ``entry``."""
    from solver.problem import Problem

    model, _, _, isl, osl, _, _ = sc
    return Problem.model_validate({"name": name, "models": [{
        "name": "m", "model": model,
        "traffic": {"peak_rps": 1, "input_tokens": {"p50": isl, "p90": isl, "p99": isl},
                    "output_tokens": {"p50": osl, "p90": osl, "p99": osl}},
        "slo": slo, "min_replicas": 1, **entry}]})


def fleetplan_best(sc: tuple, quant: str) -> dict[str, tuple[float, str]]:
    """Best aggregated replica and best disaggregated unit (output tokens/s per GPU, label)
    within the scenario's GPUs, from fleetplan's candidate table (unpruned)."""
    from solver.candidates import model_table
    from solver.catalog import load_catalog

    model, gpu, n, isl, osl, ttft, tpot = sc
    cat = load_catalog()
    p = scenario_problem(sc, "disagg-aic", {"ttft": {"max_ms": ttft}, "tpot": {"max_ms": tpot}},
                         allowed_accelerators=[gpu], allowed_quantizations=[quant], allowed_kv_dtypes=[quant],
                         headroom=0, serving_modes=["aggregated", "disaggregated"])
    table = model_table(cat, p, p.models[0], prune=False)
    out: dict[str, tuple[float, str]] = {}
    for c in table.candidates:
        if c.violations or c.gpus_per_replica > n:
            continue
        mode = "disagg" if c.unit is not None else "agg"
        per_gpu = c.capacity_rps_per_replica * osl / c.gpus_per_replica
        if per_gpu > out.get(mode, (0.0, ""))[0]:
            out[mode] = (per_gpu, f"{c.label()} ({c.gpus_per_replica} GPUs, TTFT p99 {c.ttft_p99_ms:.0f} ms, "
                                  f"TPOT {c.tpot_p99_ms:.1f} ms)")
    return out


def fleetplan_static(sc: tuple, quant: str) -> dict[str, tuple[float, str]]:
    """The same search under AIC's TTFT rule (a diagnostic, not a plan): TTFT is the zero-load
    prefill latency (+ KV transfer) within the target and every pool runs at utilisation
    ``RHO_MAX``; aggregated replicas at ``RHO_MAX x B / service`` where zero-load TTFT and TPOT
    fit. Separates what the queueing tail costs from what the terms say."""
    import numpy as np

    from solver.catalog import load_catalog
    from solver.costmodel import Shape, shape_terms
    from solver.disagg import RATIOS, make_unit, role_terms
    from solver.queueing import RHO_MAX
    from solver.slo import capacity_at_slo, memory_limit, slo_view

    model, gpu, n, isl, osl, ttft, tpot = sc
    cat = load_catalog()
    p = scenario_problem(sc, "static", {"tpot": {"max_ms": tpot}})
    d = p.models[0]
    system = cat.systems_for(gpu)[0]
    shapes = [Shape(model, gpu, system.id, quant, quant, tp, 1, 1) for tp in (1, 2, 4, 8) if tp <= n]
    out: dict[str, tuple[float, str]] = {}
    roles = []
    for sh in shapes:
        t = shape_terms(cat, sh)
        limit = memory_limit(t, d)
        if limit >= 1:
            b = np.array([x for x in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if x <= limit])
            v = slo_view(t, b, d)
            ok = (v.ttft0_ms <= ttft) & (v.tpot_ms <= tpot)
            cap = capacity_at_slo(v, d).capacity_rps
            for i in np.flatnonzero(ok):
                per_gpu = float(cap[i]) * osl / sh.gpus
                if per_gpu > out.get("agg", (0.0, ""))[0]:
                    out["agg"] = (per_gpu, f"TP{sh.tp} batch {int(b[i])}")
        roles.append(role_terms(t, d))
    for r in roles:
        pt = r.prefill
        for dt in (x for rr in roles for x in rr.decode if x.tpot_ms <= tpot):
            for n_p, n_d in RATIOS:
                if n_p * pt.shape.gpus + n_d * dt.shape.gpus > n or not pt.fits:
                    continue
                u = make_unit(pt, dt, n_p, n_d, r.kv_bytes_per_token, system, d)
                if u.ttft_min_ms > ttft:
                    continue
                cap = min(n_p * RHO_MAX * pt.servers / pt.service_s, n_d * u.decode_cap_rps)
                per_gpu = cap * osl / u.gpus
                if per_gpu > out.get("disagg", (0.0, ""))[0]:
                    out["disagg"] = (per_gpu, f"{n_p} x prefill TP{pt.shape.tp} + {n_d} x decode TP{dt.shape.tp} "
                                              f"batch {dt.batch} ({u.gpus} GPUs, static TTFT {u.ttft_min_ms:.0f} ms)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aic-venv", type=Path, help="run AIC from this virtual environment and refresh the cache")
    args = ap.parse_args(argv)
    sc = SCENARIO
    if args.aic_venv:
        model, gpu, n, isl, osl, ttft, tpot = sc
        CACHE.unlink(missing_ok=True)
        run_aic(args.aic_venv, "modes", [dict(key=key(sc), aic_model=AIC_MODELS[model], aic_system=AIC_SYSTEMS[gpu],
                                              gpus=n, isl=isl, osl=osl, ttft_ms=ttft, tpot_ms=tpot)], CACHE)
    aic: dict[str, dict[str, str]] = {}
    if CACHE.exists():
        with open(CACHE, newline="") as fh:
            aic = {r["mode"]: r for r in csv.DictReader(fh) if r["key"] == key(sc)}
    print(f"scenario: {key(sc)} (output tokens/s per GPU)")
    for mode in ("agg", "disagg"):
        a = aic.get(mode)
        if a and not a.get("error"):
            print(f"  AIC {a['aic_version']} {mode:6s} {float(a['tokens_s_gpu']):7.1f}  {a['config']} "
                  f"(TTFT {float(a['ttft_ms']):.0f} ms, TPOT {float(a['tpot_ms']):.1f} ms, {a['num_gpus']} GPUs)")
        else:
            print(f"  AIC {mode:6s} {'-':>7s}  {(a or {}).get('error', 'not run (pass --aic-venv)')}")
    for quant in ("bf16", "fp8"):
        best = fleetplan_best(sc, quant)
        for mode in ("agg", "disagg"):
            v, label = best.get(mode, (0.0, "none within the targets"))
            print(f"  fleetplan {quant:4s} {mode:6s} {v:7.1f}  {label}")
        if "agg" in best and "disagg" in best:
            print(f"  fleetplan {quant}: disaggregated / aggregated = {best['disagg'][0] / best['agg'][0]:.2f}")
        static = fleetplan_static(sc, quant)
        for mode in ("agg", "disagg"):
            v, label = static.get(mode, (0.0, "none"))
            print(f"  fleetplan {quant:4s} {mode:6s} {v:7.1f}  under AIC's TTFT rule (no queueing): {label}")
        if "agg" in static and "disagg" in static:
            print(f"  fleetplan {quant} under AIC's TTFT rule: disaggregated / aggregated = "
                  f"{static['disagg'][0] / static['agg'][0]:.2f}")
    if {"agg", "disagg"} <= set(aic) and not any(aic[m].get("error") for m in aic):
        print(f"  AIC: disaggregated / aggregated = "
              f"{float(aic['disagg']['tokens_s_gpu']) / float(aic['agg']['tokens_s_gpu']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
