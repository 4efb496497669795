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
    exception is a bug: one line plus the path of the full traceback (exit 3). Commands are
    loaded on demand from :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            import importlib

            module, attr, _ = COMMANDS[name]
            self.add_command(getattr(importlib.import_module(f"solver.cli.{module}"), attr), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMANDS` (as click formats it, without importing)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, click.Command(n, help=COMMANDS[n][2]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench-plan": ("bench_cmd", "bench_plan_cmd", "Benchmark commands for every configuration of PLAN_FILE (what `solve --json` or `query --json` prints): the engine launch with the plan's TP/PP/EP, quantisation, KV dtype, batch cap, batched tokens, chunked prefill, prefix caching, memory share and context limit, then a concurrency sweep from 1 to past the predicted knee (the batch cap) with the workload's lengths, for the engine's own client (vllm bench serve, sglang.bench_serving) and for AIPerf and GuideLLM."),
    "calibrate": ("calibrate_cmd", "calibrate", 'Fit the efficiency factors of one accelerator / engine / format to a measured concurrency sweep and write a calibration overlay.'),
    "capacity": ("solve_cmd", "capacity", 'Most traffic --gpus GPUs of --gpu serve within the p99 targets, with the best configuration(s) and replica split.'),
    "catalog": ("catalog_cmd", "catalog", 'Browse and check the hardware, model, format and price catalogs.'),
    "check": ("check_cmd", "check", 'Validate PROBLEM_FILE (YAML) against the catalogs and summarise it.'),
    "check-production": ("bench_cmd", "check_production_cmd", 'Week-one check: compare production metrics with PLAN_FILE and say whether to re-plan.'),
    "estimate": ("estimate_cmd", "estimate", 'Memory budget, TTFT, TPOT and throughput of one replica (analytical cost model).'),
    "explain": ("solve_cmd", "explain", 'Solve PROBLEM_FILE and say which constraint families bind the plan.'),
    "pareto": ("report_cmd", "pareto_cmd", 'Plans that trade cost against p99 latency (or quality): the non-dominated set.'),
    "purchase": ("purchase_cmd", "purchase", "What to buy in every hour of PROBLEM_FILE's demand: a reserved/committed base held all day, on-demand and (with --spot-allowance) spot replicas per hour, at the least cost for the period."),
    "query": ("solve_cmd", "query", 'Cheapest configuration that serves --rps within the p99 targets (no problem file).'),
    "report": ("report_cmd", "report_cmd", 'Solve and write a report: the plan, memory budget, binding constraints, Pareto set, assumptions and plots (Markdown, self-contained HTML, JSON).'),
    "simulate": ("simulate_cmd", "simulate", "Replay requests through the replicas of PLAN_FILE (the output of `fleetplan solve --json`) with continuous batching, chunked prefill, each replica's batch cap and KV memory, and step times from the cost model; print p50/p90/p99 TTFT, TPOT and end-to-end latency and, with --problem, whether each target is met and the share of requests within it."),
    "size": ("bench_cmd", "size_cmd", "Fleet size from a measured sweep of one instance: knee, C_max (largest concurrency whose p99 TTFT meets the target), usable requests/s at C_max, Little's-law check of the sweep, then instances = ceil(peak / usable) x GPUs per instance x safety, beside fleetplan's plan."),
    "solve": ("solve_cmd", "solve", 'Cheapest fleet for PROBLEM_FILE that meets every target and limit, and beside it the Pareto set of plans trading cost against p99 latency.'),
    "sweep": ("sweep_cmd", "sweep", 'Solve PROBLEM_FILE under every variant of a grid: traffic growth, price changes, SLO scales and model mixes (their cartesian product), and print one row per variant.'),
    "traffic": ("traffic_cmd", "traffic", 'Read a request trace and print the traffic block of a problem file: the peak rate at a percentile of fixed windows, length percentiles (p50/p90/p99), and, as comments, the mean rate, burstiness (index of dispersion of counts per window, inter-arrival CV; both 1 for Poisson arrivals) and an hourly profile when the trace spans two hours or more.'),
}
"""Command name -> (module in solver.cli, attribute, first sentence of its help). A command's
module is imported only when the command runs (or its own --help is asked for), so `fleetplan
--help` loads none of the library; a test keeps these sentences equal to the commands' own."""

