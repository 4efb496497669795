"""``fleetplan check``: validate a problem file and summarise what it asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from solver.cli.output import emit_json, table

if TYPE_CHECKING:
    from solver.problem import Problem


def summary(problem: Problem) -> dict[str, Any]:
    """The problem as a reader checks it: per model, load, lengths, targets and options."""
    from solver.catalog import load_catalog

    cat = load_catalog()
    rows = []
    for m in problem.models:
        t = m.traffic
        rows.append({
            "name": m.name,
            "model": m.model,
            "peak_rps": t.peak_rps,
            "headroom": m.headroom,
            "input_tokens_p50": t.input_tokens.percentile(50),
            "input_tokens_p99": t.input_tokens.percentile(99),
            "output_tokens_p50": t.output_tokens.percentile(50),
            "output_tokens_p99": t.output_tokens.percentile(99),
            "ttft_ms": m.slo.ttft.max_ms if m.slo.ttft else None,
            "tpot_ms": m.slo.tpot.max_ms if m.slo.tpot else None,
            "e2e_ms": m.slo.e2e.max_ms if m.slo.e2e else None,
            "accelerators": m.allowed_accelerators or sorted(cat.accelerators),
            "quantizations": m.allowed_quantizations or sorted(cat.quantizations),
        })
    return {"ok": True, "name": problem.name, "models": rows,
            "fleet": problem.fleet.model_dump(mode="json")}


@click.command()
@click.argument("problem_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the validated summary as JSON.")
def check(problem_file: Path, as_json: bool) -> None:
    """Validate PROBLEM_FILE (YAML) against the catalogs and summarise it.

    Bad input (malformed YAML, unknown ids, impossible numbers) is reported as one line
    naming the file and field, with exit code 2.
    """
    from solver.problem import load_problem

    out = summary(load_problem(problem_file))
    if as_json:
        emit_json(out)
        return
    click.echo(f"{problem_file}: OK — {out['name']}")
    cols = ["name", "model", "peak_rps", "input_tokens_p50", "input_tokens_p99",
            "output_tokens_p50", "output_tokens_p99", "ttft_ms", "tpot_ms", "e2e_ms"]
    click.echo(table(out["models"], cols))
