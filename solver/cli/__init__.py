"""The ``fleetplan`` command line. Commands live in ``*_cmd.py`` modules beside this one.

No formulas here: commands parse flags, call the library and print. Exit codes, one meaning
each: 0 success (a plan), 1 infeasible or no plan within the time limit (with an explanation),
2 bad input (one line per problem on stderr, no traceback), 3 internal error (one line and the
path of a file holding the full traceback), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import Any

import click

from solver import __version__
from solver.errors import InputError

EXIT_INFEASIBLE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _write_traceback(exc: BaseException) -> str:
    """Write the full traceback of an internal error to a fresh file; returns its path."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"fleetplan-traceback-{stamp}-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"fleetplan {__version__}, argv: {sys.argv!r}\n")
        fh.write("".join(traceback.format_exception(exc)))
    return path


_NO_ARGS_IS_HELP: type[Exception] = getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (Exception,), {}))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class FleetplanGroup(click.Group):
    """Click group with the exit-code contract: ``InputError`` and flag errors become one line
    per problem on stderr and exit 2; Ctrl-C prints "interrupted" (exit 130); any other
    exception is a bug: one line plus the path of the full traceback (exit 3)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # a bare group ("fleetplan", "fleetplan catalog"): its help
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.exceptions.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            click.echo(f"error: {where}{_one_line(exc.format_message())}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.exceptions.ClickException as exc:
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except InputError as exc:
            for line in exc.lines:
                click.echo(f"error: {line}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 -- the last line of defence: report, do not dump
            path = _write_traceback(exc)
            click.echo(f"internal error: {type(exc).__name__}: {_one_line(str(exc))[:300]} "
                       f"(a bug in fleetplan; full traceback in {path})", err=True)
            sys.exit(EXIT_INTERNAL)
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
        return rv


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
    Exit codes: 0 success, 1 infeasible or no plan in time, 2 bad input, 3 internal error,
    130 interrupted.
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
    from solver.cli import bench_cmd, simulate_cmd, traffic_cmd
    main.add_command(traffic_cmd.traffic)
    main.add_command(simulate_cmd.simulate)
    for c in bench_cmd.COMMANDS:
        main.add_command(c)
    main.add_command(sweep_cmd.sweep)
    from solver.cli import calibrate_cmd
    main.add_command(calibrate_cmd.calibrate)


try:
    _register()
except KeyboardInterrupt:  # Ctrl-C while the commands' libraries load
    click.echo("interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)
