"""``fleetplan sweep``: one problem under a grid of what-if variants, solved in parallel."""

from __future__ import annotations

import json
from pathlib import Path

import click

from solver.cli.output import emit_json, progress_bar, table
from solver.errors import InputError
from solver.optimize import DEFAULT_TIME_LIMIT_S

# solver.sweep (pydantic, the optimiser) is imported inside the command: `--help` stays fast.


@click.command("sweep")
@click.argument("problem_file", type=click.Path(path_type=Path))
@click.option("--grid", "grid_file", required=True, type=click.Path(path_type=Path),
              help="YAML grid: traffic_growth, price_factor, slo_scale, model_mix (see README).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes of the local pool [default: CPU count]; 1 runs in this process.")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS|local",
              help="Run on a Ray cluster: 'auto' (the running one), ray://HOST:PORT, or 'local' "
                   "(start one here). Needs pip install 'fleetplan[ray]'.")
@click.option("--time-limit", "time_limit", type=click.FloatRange(min=0.01), default=DEFAULT_TIME_LIMIT_S,
              show_default=True, help="Solver time limit per variant, seconds.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Write OUT.md (table + plot), OUT.json and OUT.svg (cost per variant).")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep (one object per variant) as JSON.")
def sweep(problem_file: Path, grid_file: Path, workers: int | None, ray_address: str | None,
          time_limit: float, out: Path | None, as_json: bool) -> None:
    """Solve PROBLEM_FILE under every variant of a grid: traffic growth, price changes, SLO
    scales and model mixes (their cartesian product), and print one row per variant.

    \b
    Example grid (grid.yaml):
      traffic_growth: [1.0, 1.5, 2.0]
      price_factor: [1.0, {h100-sxm: 0.7}]
      slo_scale: [0.8, 1.0]
      model_mix:
        - {name: all}
        - {name: no-judge, drop: [judge]}

    \b
      fleetplan sweep problems/multi-model-fleet.yaml --grid grid.yaml --out reports/sweep
      fleetplan sweep problems/chat-assistant-70b.yaml --grid grid.yaml --ray auto --json

    Each variant is a full verified solve; the exit code is 0 even when some variants have no
    plan (their status says so), 2 for bad input.
    """
    from solver.catalog import load_catalog
    from solver.problem import load_problem
    from solver.sweep import load_grid, run_sweep, sweep_markdown, sweep_plot

    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    grid = load_grid(grid_file)
    with progress_bar(not as_json, "sweep") as update:
        res = run_sweep(problem, grid, cat, workers, ray_address, time_limit, progress=update)
    if out is not None:
        try:
            plot = sweep_plot(res, out.with_name(out.name + ".svg"))
            out.with_name(out.name + ".md").write_text(sweep_markdown(res, plot.name), encoding="utf-8")
            out.with_name(out.name + ".json").write_text(json.dumps(res.to_dict(), indent=2) + "\n",
                                                         encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
    if as_json:
        emit_json(res.to_dict())
        return
    click.echo(f"{res.problem}: {len(res.rows)} variants in {res.seconds:.1f} s on {res.runner} "
               f"({res.workers} worker(s), {res.scenarios_per_minute:.1f} scenarios/min)")
    click.echo(table([r.to_dict() for r in res.rows],
                     ["index", "traffic_growth", "price_factor", "slo_scale", "mix", "status",
                      "cost_usd_per_hour", "gpus", "plan"]))
    if out is not None:
        click.echo(f"wrote {out}.md, {out}.json, {out}.svg")
