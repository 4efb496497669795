"""Speed of the replay simulator: 100k requests through one replica set, in seconds.

Run: ``python benchmarks/simulate_speed.py`` (prints a table; no assertions). Each figure is
the median of a few runs. The baseline, measured in the same run, is the same number of
requests through one slot with a constant step time (the simulator's bare loop: 10 steps per
request, no cost-model table); the other rows are given as seconds, requests/s, engine steps/s
and the ratio to that baseline.

Cases: the bundled chat plan (problems/chat-assistant-70b.yaml, 5 replicas, batch cap 48,
lengths from the problem's percentiles) under Poisson arrivals at its planned load, behind each
router.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from solver.api import solve
from solver.catalog import load_catalog
from solver.problem import load_problem
from solver.simulate import (
    ConstantStepTimer, ReplicaSpec, SimResult, Workload, plan_replicas, poisson_workload, simulate,
)

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 100_000
REPEATS = 3


def timed(fn: Callable[[], SimResult]) -> tuple[float, SimResult]:
    runs, res = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        res = fn()
        runs.append(time.perf_counter() - t0)
    assert res is not None
    return statistics.median(runs), res


def main() -> None:
    rng = np.random.default_rng(0)
    base_w = Workload(np.cumsum(rng.exponential(0.125, REQUESTS)), np.full(REQUESTS, 10), np.full(REQUESTS, 10))
    base_t, base_r = timed(lambda: simulate([ReplicaSpec(ConstantStepTimer(10.0), 1)], base_w, "round-robin"))

    cat = load_catalog()
    problem = load_problem(ROOT / "problems" / "chat-assistant-70b.yaml", cat)
    d = problem.models[0]
    plan = solve(problem, cat).to_dict()
    load = sum(x["load_rps"] for x in plan["deployments"])
    longest = d.traffic.input_tokens.percentile(99) + d.traffic.output_tokens.percentile(99)
    t0 = time.perf_counter()
    reps = plan_replicas(plan, cat, None, longest)
    table_s = time.perf_counter() - t0
    w = poisson_workload(load, REQUESTS / load, d.traffic.input_tokens, d.traffic.output_tokens, 0,
                         d.traffic.prefix_cache_hit_rate)
    rows = [("baseline: 1 slot, constant step", base_t, base_r)]
    for router in ("round-robin", "least-loaded"):
        t, r = timed(lambda: simulate(reps, w, router, d.slo))  # noqa: B023
        rows.append((f"chat plan, {len(reps)} replicas, {router}", t, r))
    print(f"step-time tables of the plan: {table_s:.2f} s (built once per replay)")
    print(f"{'case':<40} {'requests':>9} {'steps':>10} {'seconds':>8} {'req/s':>9} {'steps/s':>10} {'x baseline':>10}")
    for name, t, r in rows:
        print(f"{name:<40} {r.requests:>9,} {r.steps:>10,} {t:>8.2f} {r.requests / t:>9,.0f} "
              f"{r.steps / t:>10,.0f} {t / base_t:>10.2f}")


if __name__ == "__main__":
    main()
