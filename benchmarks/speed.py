"""Speed benchmark: how long fleetplan takes on the questions users ask, as ratios.

Run: ``python benchmarks/speed.py`` (prints a table; no assertions). Machines here are shared
and noisy, so each figure is the median of several runs and is also given as a ratio against a
baseline measured in the same process: the cost of building the candidate tables of one
single-model problem (``tables``), the fixed part every solve pays.

Cases: a single-model ``query``; each bundled problem; a synthetic fleet of 24 models (the
bundled models cycled, with traffic scaled) sharing one inventory; and the same fleet solved
without dominance pruning, to show what pruning buys.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from solver.api import query, single_model_problem, solve
from solver.candidates import build_tables
from solver.catalog import load_catalog
from solver.problem import Fleet, Problem, load_problem

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` runs."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def big_fleet(cat, n_models: int = 24) -> Problem:
    """``n_models`` deployments built from the bundled problems' models, one shared inventory."""
    demands = []
    for path in sorted((ROOT / "problems").glob("*.yaml")):
        p = load_problem(path, cat)
        if solve(p, cat).status.has_plan:
            demands += list(p.models)
    models = []
    for i in range(n_models):
        d = demands[i % len(demands)]
        traffic = d.traffic.model_copy(update={"peak_rps": d.traffic.peak_rps * (1 + i % 3)})
        models.append(d.model_copy(update={"name": f"{d.name}-{i}", "traffic": traffic}))
    fleet = Fleet(inventory={"h100-sxm": 512, "h200-sxm": 256, "l40s": 128, "mi300x": 256},
                  budget_usd_per_hour=5000)
    return Problem(name=f"synthetic-{n_models}", models=models, fleet=fleet)


def main() -> None:
    cat = load_catalog()
    chat = load_problem(ROOT / "problems" / "chat-assistant-70b.yaml", cat)
    base = timed(lambda: build_tables(chat, cat))
    q = single_model_problem(model="llama-3.1-70b", rps=10, isl=2000, osl=300,
                             ttft_p99_ms=1000, tpot_p99_ms=40, cat=cat)
    rows = [("baseline: candidate tables, chat-assistant-70b", base)]
    rows.append(("query llama-3.1-70b 10 rps", timed(lambda: query(q, cat))))
    for path in sorted((ROOT / "problems").glob("*.yaml")):
        p = load_problem(path, cat)
        rows.append((f"solve {path.stem} ({len(p.models)} models)", timed(lambda p=p: solve(p, cat))))
    fleet = big_fleet(cat)
    rows.append((f"solve {fleet.name} (pruned)", timed(lambda: solve(fleet, cat), 1)))
    rows.append((f"solve {fleet.name} (no pruning)", timed(lambda: solve(fleet, cat, prune=False), 1)))
    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)}  {'seconds':>8}  {'x baseline':>10}")
    for name, sec in rows:
        print(f"{name.ljust(width)}  {sec:8.3f}  {sec / base:10.1f}")
    pruned, full = rows[-2][1], rows[-1][1]
    print(f"\npruning speed-up on {fleet.name}: {full / pruned:.2f}x")


if __name__ == "__main__":
    main()
