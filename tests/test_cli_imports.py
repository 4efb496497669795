"""The CLI imports only what a command uses: `--help` loads no solver, plotting or graph library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("ortools", "matplotlib", "networkx", "pandas")

PROBE = """
import json, sys
from click.testing import CliRunner
import solver.cli
args = json.loads(sys.argv[1])
result = CliRunner().invoke(solver.cli.main, args)
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "modules": sorted({m.split('.')[0] for m in sys.modules})}))
"""


def _probe(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"], ["pareto", "--help"],
                                  ["report", "--help"], ["query", "--help"], ["catalog", "--help"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    res = _probe(args)
    assert res["exit"] == 0
    assert "Usage:" in res["output"]
    loaded = [m for m in HEAVY if m in res["modules"]]
    assert loaded == [], f"`fleetplan {' '.join(args)}` imported {loaded}"


def test_catalog_list_does_not_import_the_optimiser() -> None:
    res = _probe(["catalog", "list", "gpus", "--json"])
    assert res["exit"] == 0
    assert json.loads(res["output"])  # a real listing came back
    assert "ortools" not in res["modules"] and "matplotlib" not in res["modules"]


def test_solving_command_does_import_the_optimiser() -> None:
    """The probe can see a heavy import when one happens (so the tests above can fail): a
    fleet with owned GPUs (a second cost tier, outside solver.optimize.decompose) is solved by
    CP-SAT."""
    res = _probe(["solve", str(Path(__file__).resolve().parent.parent / "problems" / "owned-h100-fleet.yaml"), "--json"])
    assert res["exit"] == 0, res["output"]
    assert "ortools" in res["modules"]


def test_query_imports_no_optimiser_library() -> None:
    """A one-model query is solved exactly without CP-SAT (solver.optimize.single): neither
    OR-Tools nor the pandas it brings is loaded."""
    res = _probe(["query", "--model", "llama-3.1-8b", "--rps", "1", "--isl", "100", "--osl", "10",
                  "--tpot-p99-ms", "100", "--gpu", "l40s", "--json"])
    assert res["exit"] == 0, res["output"]
    assert json.loads(res["output"])["termination"] == "optimal"
    assert [m for m in HEAVY if m in res["modules"]] == []


def test_help_axes_match_the_library() -> None:
    from solver.cli.report_cmd import AXES as CLI_AXES
    from solver.pareto import AXES

    assert CLI_AXES == AXES


def test_single_gpu_estimate_imports_no_graph_or_solver_library() -> None:
    res = _probe(["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--quant", "fp8",
                  "--isl", "1000", "--osl", "100", "--json"])
    assert res["exit"] == 0, res["output"]
    assert json.loads(res["output"])["fits"] is True
    assert [m for m in HEAVY if m in res["modules"]] == []


def test_top_level_help_loads_no_library_at_all() -> None:
    """`fleetplan --help` lists the commands from solver.cli.COMMANDS without importing any
    command module (so none of pydantic, numpy or the catalogs)."""
    res = _probe(["--help"])
    loaded = [m for m in ("pydantic", "numpy", "yaml", "scipy") if m in res["modules"]]
    assert loaded == [], f"`fleetplan --help` imported {loaded}"
    assert "calibrate" in res["output"] and "traffic" in res["output"]


def test_command_table_matches_the_commands() -> None:
    """Each COMMANDS entry names a real command whose help starts with the stored sentence, and
    the lazily rendered command list equals what click prints from the loaded commands."""
    import click

    from solver.cli import COMMANDS, main

    eager = click.Group("fleetplan", help=main.help)
    for name, (module, attr, sentence) in COMMANDS.items():
        cmd = main.get_command(click.Context(main), name)
        assert cmd is not None and cmd.name == name, name
        assert cmd.get_short_help_str(10**6) == sentence, name
        eager.add_command(cmd, name)
    lazy_help = main.get_help(click.Context(main, info_name="fleetplan", terminal_width=100))
    eager_help = eager.get_help(click.Context(eager, info_name="fleetplan", terminal_width=100))
    assert lazy_help.split("Commands:")[1] == eager_help.split("Commands:")[1]
