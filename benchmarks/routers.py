"""Router benchmark: does each bundled plan meet its targets in replay under the least-loaded
router and under the plan's own weights (``router_weight``)?

Run: ``python benchmarks/routers.py [problems/x.yaml ...]`` (prints one row per problem, model,
workload and router; no assertions; a few minutes on one core).

For every model of every bundled problem with a plan: the plan's replicas replay (1) Poisson
arrivals at the model's peak (its planned load / (1 + headroom)) and (2) bursty arrivals at the
same mean rate (gamma-distributed gaps, coefficient of variation 3), lengths from the problem's
percentiles; and for the two chat problems whose lengths are the conversation trace's kind, (3)
the Azure conversation trace (Azure LLM inference trace 2023, Azure Public Dataset, CC-BY 4.0;
Patel et al., "Splitwise", ISCA 2024) with its arrival times scaled so that its p99 rate over 10 s
windows equals that peak, lengths from the trace (other models' prompts and answers differ from
the trace's, so replaying it there tests another workload than the one planned). Each under ``least-loaded``,
``weighted`` (the plan's weights) and ``round-robin``; printed: p99 TTFT / TPOT / E2E against the
targets, and the largest over smallest capacity per replica among the model's deployments
("mix": 1 when every replica is alike).
"""

from __future__ import annotations

import sys
from pathlib import Path

from solver.api import solve
from solver.catalog import load_catalog
from solver.errors import InputError
from solver.problem import load_problem
from solver.simulate import ROUTERS, poisson_workload, replay, trace_workload
from solver.traffic import AZURE_CITATION, read_trace, traffic_stats

ROOT = Path(__file__).resolve().parent.parent
CONV = ROOT.parent / "shared" / "traces" / "azure-llm-2023-conv.csv"
TRACE_PROBLEMS = ("chat-assistant-70b", "diurnal-chat")
"""Problems replayed with the conversation trace too (chat lengths)."""
REQUESTS = 6_000
"""Poisson requests per replay (duration = REQUESTS / rate, within 60 s to 1 h)."""


def rows_for(problem_file: Path) -> list[dict[str, object]]:
    """One row per (model, workload, router) of one problem's plan."""
    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    plan = solve(problem, cat).to_dict()
    if plan["status"] not in ("optimal", "feasible"):
        return []
    trace = read_trace(CONV) if CONV.exists() else None
    out: list[dict[str, object]] = []
    for d in problem.models:
        deps = [x for x in plan["deployments"] if x["model"] == d.name]
        if not deps:
            continue
        peak = sum(x["load_rps"] for x in deps) / (1 + d.headroom)
        caps = [x["total_capacity_rps"] / x["replicas"] for x in deps]
        mix = max(caps) / min(caps)
        span = min(3600.0, max(60.0, REQUESTS / peak))
        work = [(label, poisson_workload(peak, span, d.traffic.input_tokens, d.traffic.output_tokens, 0,
                                         d.traffic.prefix_cache_hit_rate, cv=cv))
                for label, cv in (("poisson", 1.0), ("bursty cv 3", 3.0))]
        if trace is not None and problem.name in TRACE_PROBLEMS:
            st = traffic_stats(trace, 10.0, 99.0)
            work.append(("conv p99-10s", trace_workload(trace, peak / st.peak_rps, d.traffic.prefix_cache_hit_rate)))
        for label, w in work:
            for router in ROUTERS:
                try:
                    r = replay(plan, cat, w, d.name, router, d.slo, d)  # type: ignore[arg-type]
                except InputError as exc:
                    out.append({"problem": problem.name, "model": d.name, "note": str(exc)})
                    break
                out.append({"problem": problem.name, "model": d.name, "replicas": r.replicas, "mix": mix,
                            "workload": label, "rps": w.mean_rps, "router": router,
                            "targets": {t.metric: (t.simulated_ms, t.max_ms, t.met) for t in r.targets}})
    return out


def main(files: list[str]) -> None:
    paths = [Path(f) for f in files] or sorted((ROOT / "problems").glob("*.yaml"))
    if CONV.exists():
        print(f"trace: {AZURE_CITATION}")
    print(f"{'problem':<22} {'model':<10} {'reps':>4} {'mix':>5} {'workload':<13} {'req/s':>6} {'router':<13} "
          "p99 vs target (ms)")
    met = {r: [0, 0] for r in ROUTERS}
    mixed = {r: [0, 0] for r in ROUTERS}
    for p in paths:
        for row in rows_for(p):
            if "note" in row:
                print(f"{row['problem']:<22} {row['model']:<10} not replayed: {row['note']}")
                continue
            t = row["targets"]
            ok = all(v[2] for v in t.values())  # type: ignore[union-attr]
            met[row["router"]][0] += ok  # type: ignore[index]
            met[row["router"]][1] += 1  # type: ignore[index]
            if row["mix"] > 1.5:  # type: ignore[operator]
                mixed[row["router"]][0] += ok  # type: ignore[index]
                mixed[row["router"]][1] += 1  # type: ignore[index]
            checks = "; ".join(f"{k} {v[0]:,.0f}/{v[1]:g}{'' if v[2] else ' MISSED'}"
                               for k, v in t.items())  # type: ignore[union-attr]
            print(f"{row['problem']:<22} {row['model']:<10} {row['replicas']:>4} {row['mix']:>5.1f} "
                  f"{row['workload']:<13} {row['rps']:>6.2f} {row['router']:<13} {checks}", flush=True)
    print("replays meeting every target: " + ", ".join(f"{r} {a}/{b}" for r, (a, b) in met.items()))
    print("of them on mixed plans (largest / smallest capacity per replica > 1.5): "
          + ", ".join(f"{r} {a}/{b}" for r, (a, b) in mixed.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
