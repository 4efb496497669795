"""Replay benchmark: the planner's analytic p99 TTFT/TPOT against the replay simulator.

Run: ``python benchmarks/replay.py`` (prints tables; no assertions; a few minutes on one core).

1. Poisson load sweep on one replica of a bundled plan (problems/chat-assistant-70b.yaml):
   at fractions of the replica's planned capacity (the capacity at the SLO the optimiser uses),
   the analytic p99 TTFT (:func:`solver.slo.latency_at_load`, the continuous-batching model) beside the
   simulated p99 TTFT and TPOT, lengths drawn from the problem's percentiles.
2. The whole plan replaying the Azure conversation trace (Azure LLM inference trace 2023, Azure
   Public Dataset, CC-BY 4.0; Patel et al., "Splitwise", ISCA 2024), its arrival times scaled so
   that the trace's mean rate, or its p99 rate over 10 s windows, equals the problem's peak_rps.
   Lengths come from the trace; the targets are the problem's.
3. Burst allowance: llama-3.1-70b on h100-sxm fp8 (p99 TTFT <= 1000 ms, p99 TPOT <= 60 ms,
   headroom 0.2) planned from each Azure trace with ``traffic: {trace: ..., window: W,
   percentile: P}`` (peak = the P-th percentile rate over W-second windows, lengths from the
   trace), then the trace replayed as recorded through the plan.
4. Cross-check against an independent simulator (../shared/findings/p99-under-real-traffic.md):
   its plan (llama-3.1-70b, h100-sxm fp8/fp8, conversation-trace lengths, sized on the hourly
   mean, p99 TTFT <= 1000 ms, TPOT <= 60 ms, headroom 0.2) under Poisson load at the fractions of
   planned capacity it reports, and the trace as recorded; its figures are printed beside ours.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from solver.api import solve
from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms
from solver.problem import load_problem
from solver.simulate import plan_replicas, poisson_workload, simulate, trace_workload
from solver.slo import latency_at_load, slo_view
from solver.traffic import AZURE_CITATION, read_trace, traffic_stats

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT.parent / "shared" / "traces"
CONV = TRACES / "azure-llm-2023-conv.csv"
LOADS = (0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7)
REQUESTS_PER_POINT = 20_000


def sweep(problem_file: Path, seed: int = 0) -> list[dict[str, float]]:
    """Analytic vs simulated p99 TTFT of one replica over Poisson loads (rows of a table)."""
    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    d = problem.models[0]
    plan = solve(problem, cat).to_dict()
    dep = plan["deployments"][0]
    one = {**plan, "deployments": [{**dep, "replicas": 1}]}
    cap = dep["total_capacity_rps"] / dep["replicas"]
    terms = shape_terms(cat, Shape(dep["model_id"], dep["accelerator"], dep["system"], dep["quant"],
                                   dep["kv_dtype"], dep["tp"], dep["pp"], dep["ep"]))
    view = slo_view(terms, np.array([dep["max_batch"]]), d)
    longest = d.traffic.input_tokens.percentile(99) + d.traffic.output_tokens.percentile(99)
    reps = plan_replicas(one, cat, None, longest)
    print(f"plan: {dep['replicas']} x {dep['accelerator']} {dep['quant']} TP{dep['tp']} batch cap "
          f"{dep['max_batch']}; capacity at the SLO {cap:.2f} req/s per replica "
          f"(service time {float(view.service_s[0]):.1f} s, zero-load p99 TTFT {float(view.ttft0_ms[0]):.0f} ms)")
    rows = []
    for f in LOADS:
        lam = f * cap
        lat = latency_at_load(view, 0, d, lam)
        w = poisson_workload(lam, REQUESTS_PER_POINT / lam, d.traffic.input_tokens,
                             d.traffic.output_tokens, seed, d.traffic.prefix_cache_hit_rate)
        r = simulate(reps, w, "round-robin", d.slo)
        rows.append({"load": f, "rps": lam, "analytic_ttft": lat.ttft_ms, "sim_ttft": r.ttft.p99_ms,
                     "ratio": r.ttft.p99_ms / lat.ttft_ms, "analytic_tpot": lat.tpot_ms,
                     "sim_tpot": r.tpot.p99_ms, "batch": r.mean_batch, "busy": r.utilisation,
                     "p_wait": r.p_wait_for_slot})
    return rows


def print_sweep(rows: list[dict[str, float]]) -> None:
    print(f"{'load':>5} {'req/s':>6} {'analytic p99 TTFT':>18} {'simulated':>12} {'sim/analytic':>12} "
          f"{'analytic p99 TPOT':>18} {'simulated':>10} {'mean batch':>10} {'no free slot':>12}")
    for r in rows:
        ratio = f"{r['ratio']:>12.2f}" if np.isfinite(r["analytic_ttft"]) else f"{'-':>12}"
        print(f"{r['load']:>5.2f} {r['rps']:>6.2f} {r['analytic_ttft']:>15,.0f} ms {r['sim_ttft']:>9,.0f} ms "
              f"{ratio} {r['analytic_tpot']:>15.1f} ms {r['sim_tpot']:>7.1f} ms "
              f"{r['batch']:>10.1f} {r['p_wait']:>12.1%}")


def trace_replay(problem_file: Path) -> None:
    """The whole plan replaying the conversation trace at two scalings."""
    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    d = problem.models[0]
    plan = solve(problem, cat).to_dict()
    tr = read_trace(CONV)
    st = traffic_stats(tr, 10.0, 99.0)
    longest = int((tr.input_tokens + tr.output_tokens).max())
    reps = plan_replicas(plan, cat, None, longest)
    print(f"\ntrace: {AZURE_CITATION}")
    print(f"conversation trace: mean {st.mean_rps:.2f} req/s, p99 of 10 s windows {st.peak_rps:.2f} req/s, "
          f"index of dispersion {st.index_of_dispersion:.2f}, inter-arrival CV {st.interarrival_cv:.2f}")
    print(f"plan for {problem.name}: peak_rps {d.traffic.peak_rps:g} x (1 + headroom {d.headroom:g}); "
          f"{len(reps)} replicas")
    for label, scale in (("mean rate = peak_rps", d.traffic.peak_rps / st.mean_rps),
                         ("p99 10 s rate = peak_rps", d.traffic.peak_rps / st.peak_rps)):
        for router in ("round-robin", "weighted", "least-loaded"):
            r = simulate(reps, trace_workload(tr, scale, d.traffic.prefix_cache_hit_rate), router, d.slo)
            checks = "; ".join(f"{t.metric} p{t.percentile:g} {t.simulated_ms:.0f} ms vs {t.max_ms:g} "
                               f"({'met' if t.met else 'MISSED'}, {t.within:.2%} within)" for t in r.targets)
            print(f"  {label:<26} x{scale:.2f} ({r.offered_rps:.1f} req/s), {router:<12}: {checks}")


def burst_allowance(tmp: Path) -> None:
    """Plans sized at the p99 rate of 60 s, 10 s and 1 s windows of each trace, replayed."""
    cat = load_catalog()
    print("\n3. Burst allowance: plan sized on the pct-th percentile rate of W-second windows, trace replayed as recorded")
    print(f"{'trace':<6} {'W':>4} {'pct':>5} {'peak_rps':>8} {'GPUs':>5} {'$/h':>7}  {'plan':<28} {'router':<13} "
          f"{'p99 TTFT ms':>11} {'within':>7} {'p99 TPOT ms':>11} {'within':>7}")
    for name in ("conv", "code"):
        path = TRACES / f"azure-llm-2023-{name}.csv"
        w = trace_workload(read_trace(path))
        for window, pct in (("60s", 99), ("10s", 99), ("1s", 99), ("1s", 99.5), ("1s", 99.9)):
            f = tmp / f"{name}-{window}.yaml"
            f.write_text(
                f"name: {name}-{window}\nmodels:\n  - name: svc\n    model: llama-3.1-70b\n"
                f"    traffic: {{trace: {path}, window: {window}, percentile: {pct}}}\n"
                "    slo: {ttft: {max_ms: 1000}, tpot: {max_ms: 60}}\n"
                "    allowed_accelerators: [h100-sxm]\n    allowed_quantizations: [fp8]\n    headroom: 0.2\n")
            problem = load_problem(f, cat)
            d = problem.models[0]
            plan = solve(problem, cat).to_dict()
            desc = "; ".join(f"{x['replicas']}x TP{x['tp']} B{x['max_batch']}" for x in plan["deployments"])
            reps = plan_replicas(plan, cat, None, int((w.input_tokens + w.output_tokens).max()))
            for router in ("round-robin", "weighted", "least-loaded"):
                r = simulate(reps, w, router, d.slo)
                t = {c.metric: c for c in r.targets}
                print(f"{name:<6} {window:>4} {pct:>5} {d.traffic.peak_rps:>8.2f} {plan['gpus']:>5} "
                      f"{plan['cost_usd_per_hour']:>7.2f}  {desc:<28} {router:<13} "
                      f"{t['ttft'].simulated_ms:>11,.0f} {t['ttft'].within:>7.2%} "
                      f"{t['tpot'].simulated_ms:>11,.1f} {t['tpot'].within:>7.2%}")


FINDINGS = {  # load / planned capacity -> that simulator's p99 TTFT (ms), join-shortest-queue router
    0.5: 502, 0.8: 605, 0.95: 645, 1.0: 675, 1.1: 704, 1.3: 1060,
}
FINDINGS_TRACE = (630, 50.1)  # conversation trace as recorded: p99 TTFT, p99 TPOT (ms)


def cross_check(tmp: Path) -> None:
    """The findings file's plan, replayed here, beside the figures it reports."""
    cat = load_catalog()
    f = tmp / "findings.yaml"
    f.write_text(
        "name: findings\nmodels:\n  - name: svc\n    model: llama-3.1-70b\n"
        f"    traffic: {{trace: {CONV}, window: 3500s, percentile: 100}}\n"
        "    slo: {ttft: {max_ms: 1000}, tpot: {max_ms: 60}}\n    allowed_accelerators: [h100-sxm]\n"
        "    allowed_quantizations: [fp8]\n    allowed_kv_dtypes: [fp8]\n    headroom: 0.2\n")
    problem = load_problem(f, cat)
    d = problem.models[0]
    plan = solve(problem, cat).to_dict()
    tr = read_trace(CONV)
    reps = plan_replicas(plan, cat, None, int((tr.input_tokens + tr.output_tokens).max()))
    cap = sum(x["total_capacity_rps"] for x in plan["deployments"])
    dep = plan["deployments"][0]
    print(f"\n4. Cross-check with the findings' simulator: {dep['replicas']} x TP{dep['tp']} batch cap "
          f"{dep['max_batch']}, planned p99 TTFT {dep['ttft_p99_ms']:.0f} ms, TPOT {dep['tpot_p99_ms']:.1f} ms, "
          f"capacity {cap:.2f} req/s")
    print(f"{'load':>5} {'findings p99 TTFT':>17} {'ours least-loaded':>17} {'ours round-robin':>16} {'ours p99 TPOT (rr)':>18}")
    for load, theirs in FINDINGS.items():
        w = poisson_workload(load * cap, 20_000 / (load * cap), d.traffic.input_tokens,
                             d.traffic.output_tokens, 0, lengths_from=tr)
        ll = simulate(reps, w, "least-loaded")
        rr = simulate(reps, w, "round-robin")
        print(f"{load:>5.2f} {theirs:>14,} ms {ll.ttft.p99_ms:>14,.0f} ms {rr.ttft.p99_ms:>13,.0f} ms "
              f"{rr.tpot.p99_ms:>15.1f} ms")
    for router in ("least-loaded", "round-robin"):
        r = simulate(reps, trace_workload(tr), router)
        print(f"trace as recorded, {router}: p99 TTFT {r.ttft.p99_ms:.0f} ms, TPOT {r.tpot.p99_ms:.1f} ms "
              f"(findings: {FINDINGS_TRACE[0]} ms, {FINDINGS_TRACE[1]} ms)")


def main() -> None:
    problem = ROOT / "problems" / "chat-assistant-70b.yaml"
    print("1. Poisson sweep, one replica (problems/chat-assistant-70b.yaml; lengths from its percentiles)")
    print_sweep(sweep(problem))
    if CONV.exists():
        trace_replay(problem)
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            burst_allowance(Path(tmp))
            cross_check(Path(tmp))
    else:
        print(f"(no {CONV}: trace replay skipped)", file=sys.stderr)


if __name__ == "__main__":
    main()
