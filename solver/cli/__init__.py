"""The ``fleetplan`` command line. Commands live in ``*_cmd.py`` modules beside this one.

No formulas here: commands parse flags, call the library and print. Exit codes: 0 success,
1 infeasible (with an explanation), 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from solver import __version__
from solver.errors import InputError

EXIT_INFEASIBLE = 1
EXIT_BAD_INPUT = 2


class FleetplanGroup(click.Group):
    """Click group that turns ``InputError`` into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)


@click.group(cls=FleetplanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetplan")
def main() -> None:
    """Plan LLM inference fleets: the cheapest GPUs, quantisation and parallelism that meet
    your p99 latency targets.

    \b
    Typical session:
      fleetplan catalog list models          # what can be planned
      fleetplan check problems/chat-assistant-70b.yaml
      fleetplan estimate --model llama-3.1-70b --gpu h100-sxm --quant fp8 --tp 4 \\
          --isl 2048 --osl 256 --concurrency max
      fleetplan solve problems/chat-assistant-70b.yaml

    Every command takes --json for scripting. Units are in option and field names
    (_ms milliseconds, _rps requests per second, _gib 2**30 bytes, _usd_per_hour).
    Exit codes: 0 success, 1 infeasible, 2 bad input.
    """


def _register() -> None:
    from solver.cli import catalog_cmd, check_cmd
    from solver.cli import estimate_cmd
    from solver.cli import solve_cmd
    from solver.cli import report_cmd
    from solver.cli import sweep_cmd

    main.add_command(catalog_cmd.catalog)
    main.add_command(check_cmd.check)
    main.add_command(estimate_cmd.estimate)
    main.add_command(solve_cmd.solve)
    main.add_command(solve_cmd.query)
    main.add_command(solve_cmd.capacity)
    main.add_command(solve_cmd.explain)
    main.add_command(report_cmd.pareto_cmd)
    main.add_command(report_cmd.report_cmd)
    main.add_command(sweep_cmd.sweep)


_register()
