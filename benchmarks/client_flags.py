"""Parse every vLLM, SGLang, AIPerf and GuideLLM command that ``bench-plan`` writes with the
real tools.

Not part of the test suite (the tools pull in torch, gigabytes): run it where they are
installed, e.g. ``python -m venv /tmp/tools && /tmp/tools/bin/pip install aiperf guidellm vllm``,
then ``python benchmarks/client_flags.py > /tmp/argvs.json`` with fleetplan's environment and
``/tmp/tools/bin/python benchmarks/client_flags.py --check /tmp/argvs.json`` with the tools'
(SGLang in an environment of its own: its torch differs from vLLM's); a tool that is not
installed is reported as not checked.

Checked on 2026-12-01 with vllm 0.33.0, sglang 0.5.23, aiperf 0.13.0 and guidellm 0.8.1 from
PyPI: every command parsed with the intended values (vLLM's ``make_arg_parser`` for ``vllm
serve`` and ``vllm.benchmarks.serve.add_cli_args`` for ``vllm bench serve``; SGLang's
``ServerArgs.add_cli_args`` and ``sglang.benchmark.serving.cli_main`` with the run stubbed out;
AIPerf's cyclopts app; GuideLLM's click command, then BenchmarkArgs validation), and an unknown
flag or data key was rejected. sglang 0.5.23 marks ``python -m sglang.bench_serving`` deprecated
in favour of ``python -m sglang.benchmark.serving`` (same options; the old path still runs). vLLM's serve parser needs a device type: on a machine without GPU the script sets the
platform's to "cpu" (parsing only).
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
    out: dict[str, list[list[str]]] = {"aiperf": [], "guidellm": [], "vllm-bench": [], "vllm-serve": [],
                                       "sglang-bench": [], "sglang-serve": []}
    for name in ("chat-assistant-70b", "rag-long-context", "multi-model-fleet"):
        plan = api.solve(load_problem(root / f"{name}.yaml", cat), cat).to_dict()
        for engine in ENGINES:
            for c in bench_plan(plan, engine, cat, results_root="res dir/it's"):
                for client in ("aiperf", "guidellm"):
                    out[client] += [list(a) for a in c.clients[client]]
                if engine in ("vllm", "sglang"):
                    out[f"{engine}-bench"] += [list(a) for a in c.clients[f"{engine}-bench"]]
                    out[f"{engine}-serve"].append(list(c.launch))
    json.dump(out, sys.stdout)


def check_aiperf(argvs: dict[str, list[list[str]]]) -> str:
    from aiperf.cli import app

    for argv in argvs["aiperf"]:
        app.parse_args(argv[1:], exit_on_error=False, print_error=True)
    return f"aiperf: {len(argvs['aiperf'])} parsed"


def check_guidellm(argvs: dict[str, list[list[str]]]) -> str:
    from guidellm.benchmark import BenchmarkArgs
    from guidellm.cli.run import run

    for argv in argvs["guidellm"]:
        ctx = run.make_context("run", list(argv[2:]))
        BenchmarkArgs.model_validate({k: v for k, v in ctx.params.items()
                                      if k in ("backend", "profile", "constraints", "data", "outputs")})
    return f"guidellm: {len(argvs['guidellm'])} parsed and validated"


def check_vllm(argvs: dict[str, list[list[str]]]) -> str:
    import vllm.platforms
    from vllm.benchmarks.serve import add_cli_args
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    if not vllm.platforms.current_platform.device_type:
        vllm.platforms.current_platform.device_type = "cpu"  # parsing only
    bench = FlexibleArgumentParser()
    add_cli_args(bench)
    for argv in argvs["vllm-bench"]:
        ns = bench.parse_args(argv[3:])
        assert ns.max_concurrency == int(argv[argv.index("--max-concurrency") + 1])
    serve = make_arg_parser(FlexibleArgumentParser())
    for argv in argvs["vllm-serve"]:
        ns = serve.parse_args(argv[2:])
        assert ns.max_num_seqs == int(argv[argv.index("--max-num-seqs") + 1])
    return f"vllm: {len(argvs['vllm-bench'])} bench serve + {len(argvs['vllm-serve'])} serve parsed"


def check_sglang(argvs: dict[str, list[list[str]]]) -> str:
    import argparse

    import sglang.benchmark.serving as serving
    from sglang.srt.server_args import ServerArgs

    server = argparse.ArgumentParser()
    ServerArgs.add_cli_args(server)
    for argv in argvs["sglang-serve"]:
        ns = server.parse_args(argv[3:])
        assert ns.max_running_requests == int(argv[argv.index("--max-running-requests") + 1])
    seen: list[argparse.Namespace] = []
    serving.run_benchmark = seen.append  # parse only
    saved = sys.argv
    try:
        for argv in argvs["sglang-bench"]:
            sys.argv = ["bench_serving", *argv[3:]]
            serving.cli_main()
            assert seen[-1].max_concurrency == int(argv[argv.index("--max-concurrency") + 1])
    finally:
        sys.argv = saved
    return f"sglang: {len(argvs['sglang-bench'])} bench_serving + {len(argvs['sglang-serve'])} launch_server parsed"


def check(path: str) -> None:
    """Parse the commands with whichever tools are installed (the tools' environment)."""
    argvs = json.load(open(path))
    for tool in (check_aiperf, check_guidellm, check_vllm, check_sglang):
        try:
            print(tool(argvs))
        except ImportError as exc:
            print(f"{tool.__name__[6:]}: not installed here, not checked ({exc.name})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        emit()
