"""Wrong answers, crashes and exit codes found by hostile testing (issue 13), one test each.

Each test reproduces a reported defect: a plan that ignored the context window, a tiny rate
planned for free, capacity promising more than query delivers, percentiles above p99 planned
with p99 lengths, non-finite or out-of-range numbers crashing the solver, and the exit-code
contract (0 plan, 1 infeasible, 2 bad input, 3 internal error, 130 interrupted).
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver import api
from solver.catalog import load_catalog
from solver.cli import main
from solver.errors import InputError
from solver.plan import Plan, SolveStatus
from solver.problem import MAX_GPUS, MAX_RPS, Problem, query_problem
from solver.scaling import capacity_mrps, demand_mrps
from solver.verify import PlanViolation, _pack_nodes, pack_nodes, verify_plan

CAT = load_catalog()


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def base(**traffic: object) -> dict:
    t = {"peak_rps": 5, "input_tokens": {"p50": 500, "p90": 1000, "p99": 2000},
         "output_tokens": {"p50": 100, "p90": 200, "p99": 400}}
    t.update(traffic)
    return {"name": "t", "models": [{
        "name": "chat", "model": "llama-3.1-8b", "traffic": t,
        "slo": {"ttft": {"max_ms": 2000}, "tpot": {"max_ms": 60}},
        "allowed_accelerators": ["h100-sxm"]}]}


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


# -- wrong answers ---------------------------------------------------------------------------

def test_context_window_problem_file(tmp_path: Path) -> None:
    """llama-2-70b (4,096 tokens) with p99 prompt + output of 11,500 tokens was planned."""
    data = base(input_tokens={"p50": 2000, "p90": 6000, "p99": 11000})
    data["models"][0]["model"] = "llama-2-70b"
    res = run(["solve", str(write(tmp_path, data)), "--no-pareto"])
    assert res.exit_code == 2, res.output
    assert "11,000 + 400 = 11,400 tokens exceeds the context window of llama-2-70b (4,096 tokens)" in res.output


def test_context_window_query_and_estimate() -> None:
    res = run(["query", "--model", "qwen3-8b", "--isl", "100000", "--osl", "4000", "--rps", "1",
               "--tpot-p99-ms", "100"])
    assert res.exit_code == 2 and "context window of qwen3-8b (40,960 tokens)" in res.output
    res = run(["estimate", "--model", "llama-2-70b", "--gpu", "h100-sxm", "--isl", "60000", "--osl", "10"])
    assert res.exit_code == 2 and "fits          yes" not in res.output
    assert "context window of llama-2-70b (4,096 tokens)" in res.output


def test_context_window_edge_is_allowed() -> None:
    """Exactly the context window is fine; one token more is not."""
    kw = dict(ttft_ms=None, tpot_ms=100.0, e2e_ms=None, cat=CAT)
    query_problem("llama-2-70b", 1.0, (4000, 4000, 4000), (96, 96, 96), **kw)
    with pytest.raises(InputError, match="4,097 tokens exceeds"):
        query_problem("llama-2-70b", 1.0, (4000, 4000, 4000), (97, 97, 97), **kw)


@pytest.mark.parametrize("rps", ["1e-13", "5e-13", "0.0004"])
def test_tiny_rate_is_not_free(rps: str) -> None:
    """query --rps 1e-13 answered "optimal — $0.00/h, 0 GPUs"."""
    res = run(["query", "--model", "llama-3.1-8b", "--isl", "100", "--osl", "10", "--rps", rps,
               "--tpot-p99-ms", "50", "--gpu", "h100-sxm", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    assert sum(d["total_gpus"] for d in plan["deployments"]) >= 1 and plan["cost_usd_per_hour"] > 0


def test_scaling_demand_rounds_up_to_one_milli_request() -> None:
    assert demand_mrps(5e-13) == 1 and demand_mrps(0.0) == 0 and demand_mrps(0.0015) == 2
    assert demand_mrps(MAX_RPS) == 10**10 and capacity_mrps(MAX_RPS) == 10**10


def test_verifier_rejects_an_empty_plan_for_a_tiny_load() -> None:
    problem = Problem.model_validate(base(peak_rps=5e-13))
    empty = Plan(problem="t", status=SolveStatus.OPTIMAL, cost_usd_per_hour=0.0, bound_usd_per_hour=None,
                 gap=None, solve_seconds=0.0)
    with pytest.raises(PlanViolation, match="capacity 0 req/s < load 6e-13"):
        verify_plan(empty, problem, CAT)


def _capacity_then_query(rng: random.Random) -> tuple[str, str]:
    model = rng.choice(["llama-3.1-8b", "qwen2.5-7b", "mistral-7b"])
    gpu = rng.choice(["h100-sxm", "mi300x", "l40s", "a100-80gb"])
    isl, osl = rng.choice([300, 1000, 3000]), rng.choice([50, 200, 500])
    ttft = rng.choice([300.0, 800.0, 3000.0])
    n = rng.choice([1, 2, 3, 8])
    problem = query_problem(model, 1.0, (isl,) * 3, (osl,) * 3, ttft, None, None, gpus=[gpu], cat=CAT)
    ans = api.capacity(problem, CAT, n, time_limit_s=10)
    if not ans.status.has_plan:
        return "none", ""
    again = query_problem(model, ans.requests_per_s, (isl,) * 3, (osl,) * 3, ttft, None, None, gpus=[gpu], cat=CAT)
    plan = api.query(again, CAT, time_limit_s=10)
    case = f"{model} {gpu} x{n} isl {isl} osl {osl} ttft {ttft}: capacity {ans.requests_per_s} req/s"
    assert plan.status.has_plan, case
    assert plan.gpus <= ans.gpus_used, f"{case}; query needs {plan.gpus} GPUs"
    return "agree", case


def test_capacity_then_query_agree_on_random_cases() -> None:
    """capacity promised 17.858 req/s on 1 MI300X; query at that rate needed 2 GPUs (39/39)."""
    rng = random.Random(13)
    outcomes = [_capacity_then_query(rng)[0] for _ in range(12)]
    assert outcomes.count("agree") >= 8


def test_capacity_reported_case_agrees() -> None:
    problem = query_problem("llama-3.1-8b", 1.0, (3000,) * 3, (200,) * 3, 300.0, None, None,
                            gpus=["mi300x"], cat=CAT)
    ans = api.capacity(problem, CAT, 1)
    again = query_problem("llama-3.1-8b", ans.requests_per_s, (3000,) * 3, (200,) * 3, 300.0, None, None,
                          gpus=["mi300x"], cat=CAT)
    assert api.query(again, CAT).gpus == 1


def test_percentile_above_99_needs_a_histogram(tmp_path: Path) -> None:
    data = base()
    data["models"][0]["slo"]["tpot"]["percentile"] = 99.999
    res = run(["check", str(write(tmp_path, data))])
    assert res.exit_code == 2
    assert "slo.tpot.percentile 99.999 is above p99" in res.output


def test_percentile_above_99_reads_the_histogram_tail() -> None:
    """With a histogram, a p99.9 target plans with the p99.9 lengths (longer than p99's)."""
    hist = {"histogram": [{"tokens": 500, "weight": 989}, {"tokens": 2000, "weight": 10}, {"tokens": 8000, "weight": 1}]}
    data = base(input_tokens=hist, output_tokens={"histogram": [{"tokens": 100, "weight": 1}]})
    d99 = Problem.model_validate(data).models[0]
    data["models"][0]["slo"]["tpot"]["percentile"] = 99.95
    d999 = Problem.model_validate(data).models[0]
    assert d99.traffic.input_tokens.percentile(d99.length_percentile()) == 2000
    assert d999.traffic.input_tokens.percentile(d999.length_percentile()) == 8000


# -- ranges of the integer scaling, both ends -------------------------------------------------

def test_largest_supported_rate_solves_and_verifies() -> None:
    problem = query_problem("llama-3.1-8b", MAX_RPS, (200,) * 3, (50,) * 3, None, 100.0, None,
                            gpus=["h100-sxm"], cat=CAT)
    problem = problem.model_copy(update={"fleet": problem.fleet.model_copy(update={"whole_nodes": True})})
    plan = api.solve(problem, CAT, time_limit_s=20)
    assert plan.status.has_plan and plan.gpus > 10_000
    verify_plan(plan, problem, CAT)


def test_smallest_rate_solves_and_verifies() -> None:
    problem = query_problem("llama-3.1-8b", 1e-12, (200,) * 3, (50,) * 3, None, 100.0, None,
                            gpus=["h100-sxm"], cat=CAT)
    plan = api.solve(problem, CAT)
    assert plan.gpus == 1


@pytest.mark.parametrize("field,value,ok", [
    ("budget_usd_per_hour", 1e9, True), ("budget_usd_per_hour", 1.0000001e9, False),
    ("power_kw", 1e9, True), ("power_kw", 2e9, False),
])
def test_fleet_limits_both_ends(field: str, value: float, ok: bool) -> None:
    data = base()
    data["fleet"] = {field: value, "inventory": {"h100-sxm": MAX_GPUS}}
    if not ok:
        with pytest.raises(ValueError, match="less than or equal to"):
            Problem.model_validate(data)
        return
    problem = Problem.model_validate(data)
    plan = api.solve(problem, CAT)
    assert plan.status.has_plan
    verify_plan(plan, problem, CAT)


# -- verifier independent of the replica count ------------------------------------------------

def test_pack_nodes_equals_first_fit_decreasing() -> None:
    def ffd(sizes: list[int], per_node: int) -> int:
        nodes, free = 0, []
        for g in sorted(sizes, reverse=True):
            if g >= per_node:
                nodes += -(-g // per_node)
                continue
            for i, f in enumerate(free):
                if f >= g:
                    free[i] -= g
                    break
            else:
                free.append(per_node - g)
                nodes += 1
        return nodes

    rng = random.Random(1)
    for _ in range(400):
        per_node = rng.choice([1, 2, 4, 6, 8, 9, 16, 72])
        sizes = [rng.choice([1, 2, 3, 4, 5, 8, 16, 24]) for _ in range(rng.randint(0, 25))]
        assert _pack_nodes(sizes, per_node) == ffd(sizes, per_node), (sizes, per_node)


def test_pack_nodes_counts_not_lists() -> None:
    """10**12 replicas are counted, never listed (this ran out of memory)."""
    assert pack_nodes({8: 10**12, 4: 3, 1: 10**12 + 1}, 8) == 10**12 + 2 + 125_000_000_000


def test_verifier_handles_a_trillion_replicas() -> None:
    problem = query_problem("llama-3.1-8b", 10.0, (200,) * 3, (50,) * 3, None, 100.0, None,
                            gpus=["h100-sxm"], cat=CAT)
    plan = api.solve(problem, CAT)
    n = 10**12
    deps = tuple(dataclasses.replace(d, replicas=n, total_gpus=n * d.gpus_per_replica, load_rps=d.load_rps)
                 for d in plan.deployments)
    with pytest.raises(PlanViolation) as err:
        verify_plan(dataclasses.replace(plan, deployments=deps), problem, CAT)
    assert {v.family for v in err.value.violations} >= {"accounting"}


def test_violation_records_name_family_and_scope() -> None:
    problem = query_problem("llama-3.1-8b", 10.0, (200,) * 3, (50,) * 3, None, 100.0, None,
                            gpus=["h100-sxm"], cat=CAT)
    plan = api.solve(problem, CAT)
    tight = problem.model_copy(update={"fleet": problem.fleet.model_copy(update={"budget_usd_per_hour": 0.01})})
    with pytest.raises(PlanViolation) as err:
        verify_plan(plan, tight, CAT)
    assert [(v.family, v.scope) for v in err.value.violations] == [("budget", "")]


# -- exit codes ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,expect", [
    (["query", "--rps", "inf"], "'--rps': 'inf' is not a finite number"),
    (["query", "--rps", "nan"], "'--rps': 'nan' is not a finite number"),
    (["query", "--rps", "1", "--time-limit", "nan"], "'--time-limit': 'nan' is not a finite number"),
    (["query", "--rps", "1", "--time-limit", "-1"], "'--time-limit': '-1' is out of range"),
    (["query", "--rps", "1e30"], "'--rps': '1e30' is out of range"),
    (["query", "--rps", "1", "--headroom", "nan"], "'--headroom': 'nan' is not a finite number"),
    (["query", "--rps", "1", "--tpot-p99-ms", "500", "--e2e-p99-ms", "100"], "tpot.max_ms (500) exceeds e2e.max_ms (100)"),
    (["capacity", "--gpu", "h100-sxm", "--gpus", "1e30"], "'--gpus': '1e30' is not a valid integer"),
    (["capacity", "--gpu", "h100-sxm", "--gpus", "100000000000"], "'--gpus': 100000000000 is not in the range"),
])
def test_bad_flags_one_line_exit_2(args: list[str], expect: str) -> None:
    common = ["--model", "llama-3.1-8b", "--isl", "100", "--osl", "10"]
    if "--tpot-p99-ms" not in args:
        common += ["--tpot-p99-ms", "50"]
    res = run(args[:1] + common + args[1:])
    assert res.exit_code == 2, res.output
    (line,) = lines(res.output)
    assert expect in line and "https://" not in line, line


@pytest.mark.parametrize("args", [
    ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "100", "--osl", "10", "--concurrency", "1e30"],
    ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "100", "--osl", "10", "--concurrency", str(10**30)],
    ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "100", "--osl", "10", "--prefix-hit-rate", "nan"],
    ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "100", "--osl", "10", "--tp", "99999999999"],
    ["solve", "problems/chat-assistant-70b.yaml", "--time-limit", "inf"],
    ["solve", "problems/chat-assistant-70b.yaml", "--points", "1"],
    ["solve", "problems/chat-assistant-70b.yaml", "--points", "1000000000"],
    ["pareto", "problems/chat-assistant-70b.yaml", "--time-limit", "nan"],
    ["pareto", "problems/chat-assistant-70b.yaml", "--points", "1000000000"],
    ["report", "problems/chat-assistant-70b.yaml", "--out", "/tmp/x", "--time-limit", "-1"],
    ["nonsense-command"],
    ["query", "--model", "llama-3.1-8b"],
])
def test_flag_errors_are_one_line(args: list[str]) -> None:
    res = run(args)
    assert res.exit_code == 2, res.output
    assert len(lines(res.output)) == 1 and "Usage:" not in res.output, res.output


def test_every_validation_error_reported(tmp_path: Path) -> None:
    data = base(peak_rps=True, prefix_cache_hit_rate=3)
    data["models"][0]["slo"]["tpot"]["max_ms"] = float("inf")
    data["models"][0]["allowed_kv_dtypes"] = []
    res = run(["check", str(write(tmp_path, data))])
    assert res.exit_code == 2
    out = lines(res.output)
    assert len(out) == 3 and "more error" not in res.output, res.output
    assert any("peak_rps: Input should be a valid number (got True)" in ln for ln in out)
    assert any("prefix_cache_hit_rate: Input should be less than 1" in ln for ln in out)
    assert any("tpot.max_ms: Input should be a finite number" in ln for ln in out)


def test_empty_kv_dtypes_rejected_like_empty_accelerators(tmp_path: Path) -> None:
    data = base()
    data["models"][0]["allowed_kv_dtypes"] = []
    res = run(["check", str(write(tmp_path, data))])
    assert res.exit_code == 2 and "allowed_kv_dtypes: must not be empty" in res.output


def test_internal_error_exit_3_with_traceback_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(api, "solve", boom)
    res = run(["solve", "problems/chat-assistant-70b.yaml", "--no-pareto"])
    assert res.exit_code == 3, res.output
    (line,) = lines(res.output)
    assert line.startswith("internal error: ZeroDivisionError: simulated bug") and "Traceback" not in line
    path = Path(line.rsplit("full traceback in ", 1)[1].rstrip(")"))
    try:
        assert "Traceback" in path.read_text() and "simulated bug" in path.read_text()
    finally:
        path.unlink()


def test_interrupt_exits_130_and_writes_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import solver.report.render as render

    def interrupted(*_a: object, **_k: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "to_json_text", interrupted)
    monkeypatch.setattr("solver.report.to_json_text", interrupted)
    out = tmp_path / "r"
    res = run(["report", "problems/chat-assistant-70b.yaml", "--out", str(out), "--points", "2"])
    assert res.exit_code == 130, res.output
    assert lines(res.output)[-1] == "interrupted"
    assert list(tmp_path.iterdir()) == []


# -- actionable answers without a plan --------------------------------------------------------

def test_no_configuration_names_the_catalog_cause() -> None:
    """capacity --gpu b300 and --quant nvfp4 --gpu h100-sxm blamed the targets."""
    common = ["--model", "llama-3.1-8b", "--isl", "100", "--osl", "10", "--tpot-p99-ms", "50"]
    res = run(["capacity", *common, "--gpus", "4", "--gpu", "b300"])
    assert res.exit_code == 1 and "b300 has no on-demand price in the catalog" in res.output
    res = run(["query", *common, "--rps", "3", "--gpu", "h100-sxm", "--quant", "nvfp4", "--json"])
    assert res.exit_code == 1
    assert json.loads(res.output)["causes"] == ["llama-3.1-8b: nvfp4 is not supported on h100-sxm (hopper)"]


def test_infeasible_answer_says_what_fleet_would_do(tmp_path: Path) -> None:
    """'inventory 2' and a $5/h budget: the answer names the GPUs and budget a plan needs."""
    data = base(peak_rps=30)
    data["models"][0]["model"] = "llama-3.1-70b"
    data["fleet"] = {"inventory": {"h100-sxm": 2}, "budget_usd_per_hour": 5}
    res = run(["solve", str(write(tmp_path, data)), "--no-pareto", "--json"])
    assert res.exit_code == 1, res.output
    (remedy,) = json.loads(res.output)["remedies"]
    assert remedy["lifted"] == ["inventory", "budget"] and remedy["gpus"]["h100-sxm"] > 2
    assert remedy["cost_usd_per_hour"] > 5
    text = run(["solve", str(write(tmp_path, data)), "--no-pareto"]).output
    assert "inventory 2" in text and "(budget $5/h)" in text


def test_real_sigint_exits_130_without_partial_files(tmp_path: Path) -> None:
    """Ctrl-C (a real SIGINT) during a long report: "interrupted", exit 130, no files, and no
    traceback (CP-SAT no longer swallows the signal and carries on with a cut-short search)."""
    import signal
    import subprocess
    import sys
    import time

    code = ("from solver.cli import main; import sys; sys.argv = ['fleetplan', 'report', "
            f"'problems/multi-model-fleet.yaml', '--out', {str(tmp_path / 'r')!r}, '--points', '50']; main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parent.parent,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)  # the whole report takes over a minute
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err[-2000:])
    assert lines(err)[-1] == "interrupted" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_bare_command_prints_help() -> None:
    for args in ([], ["catalog"]):
        res = run(args)
        assert res.exit_code == 0 and res.output.startswith("Usage: ") and "Commands:" in res.output, res.output


def test_flag_problems_name_the_flag() -> None:
    res = run(["query", "--model", "llama-3.1-8b", "--isl", "100", "--isl-p90", "50", "--osl", "10", "--rps", "1",
               "--tpot-p99-ms", "50", "--gpu", "h100", "--kv-dtype", "fp3"])
    assert res.exit_code == 2
    assert lines(res.output) == ["error: --isl/--isl-p90/--isl-p99: percentiles must satisfy p50 <= p90 <= p99"]
    res = run(["query", "--model", "llama-3.1-8b", "--isl", "100", "--osl", "10", "--rps", "1",
               "--tpot-p99-ms", "50", "--gpu", "h100", "--kv-dtype", "fp3"])
    assert lines(res.output) == [
        "error: --gpu: unknown accelerator 'h100'; closest valid ids: h100-sxm, h100-nvl, h100-pcie",
        "error: --kv-dtype: unknown KV dtype 'fp3'; closest valid ids: fp8, fp16",
    ]


def test_exponent_numbers_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 5e-13 and 1.5e3 as strings; users mean numbers (and strict validation
    would otherwise refuse them)."""
    text = yaml.safe_dump(base()).replace("peak_rps: 5", "peak_rps: 5e-13")
    (tmp_path / "p.yaml").write_text(text)
    res = run(["solve", str(tmp_path / "p.yaml"), "--no-pareto", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["gpus"] >= 1
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(base()).replace("peak_rps: 5", 'peak_rps: "5"'))
    res = run(["check", str(tmp_path / "q.yaml")])
    assert res.exit_code == 2 and "peak_rps: Input should be a valid number (got '5')" in res.output


def test_mapping_key_errors_name_the_key(tmp_path: Path) -> None:
    data = base()
    data["fleet"] = {"inventory": {1: 4}}
    data["models"].append(3)
    res = run(["check", str(write(tmp_path, data))])
    assert lines(res.output) == [
        f"error: {tmp_path / 'p.yaml'}: models[1]: Input should be a valid dictionary",
        f"error: {tmp_path / 'p.yaml'}: fleet.inventory.1 (key): Input should be a valid string (got 1)",
    ]
