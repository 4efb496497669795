"""Bad flags of `fleetplan purchase` and `fleetplan simulate` (issue 12, "Bad input"): one line
naming the flag, exit 2, never a traceback or a silently ignored value."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT / "problems" / "chat-assistant-70b.yaml"
DAY = ROOT / "problems" / "diurnal-chat.yaml"
TRACE = "timestamp,input_tokens,output_tokens\n0,100,10\n0.5,200,20\n1.5,300,5\n"


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("plan") / "plan.json"
    f.write_text(CliRunner().invoke(main, ["solve", str(CHAT), "--no-pareto", "--json"]).output)
    return f


@pytest.mark.parametrize("args,needle", [
    (["--poisson", "inf"], "--poisson"),
    (["--poisson", "5", "--duration", "inf"], "--duration"),
    (["--poisson", "1e9", "--duration", "100"], "--poisson x --duration"),
    (["--trace", "{trace}", "--scale", "0"], "--scale: must be > 0"),
    (["--trace", "{trace}", "--scale", "inf"], "--scale: must be > 0"),
    (["--trace", "{trace}", "--scale-to", "inf"], "--scale-to: must be > 0"),
])
def test_simulate_bad_rates_are_one_line_exit_2(plan: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE)
    args = [a.format(trace=trace) for a in args]
    res = CliRunner().invoke(main, ["simulate", str(plan), "--problem", str(CHAT), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["--load-gb-s", "nan"], "--load-gb-s"),
    (["--load-gb-s", "inf"], "--load-gb-s"),
    (["--time-limit", "nan"], "--time-limit"),
])
def test_purchase_bad_numbers_are_one_line_exit_2(args: list[str], needle: str) -> None:
    res = CliRunner().invoke(main, ["purchase", str(DAY), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and len(res.output.strip().splitlines()) == 1
