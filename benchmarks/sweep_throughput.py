"""Sweep throughput: scenarios per minute in one process, on a local process pool, and on Ray.

Every runner solves the same grid (default ``benchmarks/sweep-grid.yaml``: 18 variants) of the
same problems; each row prints seconds, scenarios per minute and the ratio of its throughput to
the in-process run measured in this same command (the baseline: these machines are shared and
noisy, so only same-run ratios compare). The Ray row starts a local Ray instance with ``--workers``
CPUs (``--ray ADDRESS`` uses a running cluster instead) and is skipped, saying so, where Ray is
not installed (``pip install 'fleetplan[ray]'``). Every runner's results are checked equal to the
in-process run's. Prints a table; no assertions beyond that equality.

    python benchmarks/sweep_throughput.py [--workers 2] [--ray local|auto|ray://HOST:PORT]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solver.catalog import load_catalog  # noqa: E402
from solver.problem import load_problem  # noqa: E402
from solver.sweep import SweepResult, load_grid, run_sweep, same_results  # noqa: E402

PROBLEMS = ("chat-assistant-70b", "multi-model-fleet")


def _start_ray(address: str, workers: int) -> bool:
    """Start (or connect to) Ray once for all problems; False where Ray is absent."""
    if importlib.util.find_spec("ray") is None:
        return False
    import ray

    if address == "local":
        ray.init(num_cpus=workers, ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False)
    else:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=Path, default=ROOT / "benchmarks" / "sweep-grid.yaml")
    ap.add_argument("--workers", type=int, default=2, help="pool processes and local Ray CPUs")
    ap.add_argument("--ray", default="local", help="local (start one here), auto, or ray://HOST:PORT")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), help="names under problems/")
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers: must be at least 1")

    cat = load_catalog()
    grid = load_grid(args.grid)
    has_ray = _start_ray(args.ray, args.workers)
    print(f"grid {args.grid.name}; workers {args.workers}; Ray: "
          f"{'yes (' + args.ray + ')' if has_ray else 'not installed, row skipped'}")
    print(f"{'problem':22} {'runner':22} {'variants':>8} {'seconds':>8} {'scen/min':>9} "
          f"{'x in-process':>12}")
    for name in args.problems:
        problem = load_problem(ROOT / "problems" / f"{name}.yaml", cat)
        base = run_sweep(problem, grid, cat, workers=1)
        runs: list[SweepResult] = [base, run_sweep(problem, grid, cat, workers=args.workers)]
        if has_ray:
            runs.append(run_sweep(problem, grid, cat, workers=args.workers, ray_address=args.ray))
        for r in runs:
            if not same_results(r.rows, base.rows):
                print(f"{name}: {r.runner} results differ from the in-process run", file=sys.stderr)
                return 1
            print(f"{name:22} {r.runner:22} {len(r.rows):8d} {r.seconds:8.2f} "
                  f"{r.scenarios_per_minute:9.0f} {r.scenarios_per_minute / base.scenarios_per_minute:12.2f}")
    if has_ray:
        import ray

        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
