"""Parse every AIPerf and GuideLLM command that ``bench-plan`` writes with the real tools.

Not part of the test suite (the tools pull in torch, gigabytes): run it where they are
installed, e.g. ``python -m venv /tmp/tools && /tmp/tools/bin/pip install aiperf guidellm``,
then ``python benchmarks/client_flags.py > /tmp/argvs.json`` with fleetplan's environment and
``/tmp/tools/bin/python benchmarks/client_flags.py --check /tmp/argvs.json`` with the tools'.

Checked on 2026-12-01 with aiperf 0.13.0 and guidellm 0.8.1 from PyPI: every command parsed
(AIPerf's cyclopts app; GuideLLM's click command, then BenchmarkArgs validation), and an unknown
flag or data key was rejected.
"""

from __future__ import annotations

import json
import sys


def emit() -> None:
    """Commands for the worked problems on every engine (fleetplan's environment)."""
    from pathlib import Path

    from solver import api
    from solver.benchplan import ENGINES, bench_plan
    from solver.catalog import load_catalog
    from solver.problem import load_problem

    cat = load_catalog()
    root = Path(__file__).resolve().parent.parent / "problems"
    out: dict[str, list[list[str]]] = {"aiperf": [], "guidellm": []}
    for name in ("chat-assistant-70b", "rag-long-context", "multi-model-fleet"):
        plan = api.solve(load_problem(root / f"{name}.yaml", cat), cat).to_dict()
        for engine in ENGINES:
            for c in bench_plan(plan, engine, cat, results_root="res dir/it's"):
                for client in out:
                    out[client] += [list(a) for a in c.clients[client]]
    json.dump(out, sys.stdout)


def check(path: str) -> None:
    """Parse the commands with the installed tools (the tools' environment)."""
    from aiperf.cli import app
    from guidellm.benchmark import BenchmarkArgs
    from guidellm.cli.run import run

    argvs = json.load(open(path))
    for argv in argvs["aiperf"]:
        app.parse_args(argv[1:], exit_on_error=False, print_error=True)
    for argv in argvs["guidellm"]:
        ctx = run.make_context("run", list(argv[2:]))
        BenchmarkArgs.model_validate({k: v for k, v in ctx.params.items()
                                      if k in ("backend", "profile", "constraints", "data", "outputs")})
    print(f"aiperf: {len(argvs['aiperf'])} commands parsed; guidellm: {len(argvs['guidellm'])} commands "
          "parsed and validated")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        emit()
