"""Property-based tests (hypothesis) over generated problems, problem files and flag values.

Properties: no unhandled exception (bad input is exit 2, never exit 3 or a traceback); every
returned plan passes the verifier; monotonicity (more traffic never lowers the cost; looser
targets, more inventory, a larger budget, another allowed accelerator, a cheaper price never
raise it); ``capacity`` then ``query`` at the promised rate agree; the same input gives
byte-identical JSON. Example counts are small and derandomized so the suite stays quick and
deterministic; the README's reliability section gives the totals.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solver import api
from solver.catalog import load_catalog
from solver.cli import main
from solver.plan import Plan, SolveStatus
from solver.problem import Problem, query_problem
from solver.verify import verify_plan

CAT = load_catalog()
ROOT = Path(__file__).resolve().parent.parent
PROPS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

MODELS = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b", "llama-3.1-70b"]
GPUS = ["h100-sxm", "l40s", "mi300x", "a100-80gb"]


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """A one- or two-model problem with lengths, targets and fleet limits in plausible ranges."""
    models = []
    for i in range(draw(st.integers(1, 2))):
        isl = sorted(draw(st.lists(st.integers(50, 6000), min_size=3, max_size=3)))
        osl = sorted(draw(st.lists(st.integers(10, 1500), min_size=3, max_size=3)))
        slo: dict = {}
        if draw(st.booleans()):
            slo["ttft"] = {"max_ms": draw(st.floats(200, 10_000)),
                           "percentile": draw(st.sampled_from([50.0, 90.0, 99.0]))}
        if draw(st.booleans()) or not slo:
            slo["tpot"] = {"max_ms": draw(st.floats(15, 200))}
        models.append({
            "name": f"m{i}", "model": draw(st.sampled_from(MODELS)),
            "traffic": {"peak_rps": draw(st.floats(0.01, 300)),
                        "input_tokens": dict(zip(("p50", "p90", "p99"), isl)),
                        "output_tokens": dict(zip(("p50", "p90", "p99"), osl)),
                        "prefix_cache_hit_rate": draw(st.sampled_from([0.0, 0.5]))},
            "slo": slo,
            "allowed_accelerators": draw(st.lists(st.sampled_from(GPUS), min_size=1, max_size=2, unique=True)),
            "headroom": draw(st.sampled_from([0.0, 0.2])),
        })
    fleet: dict = {"whole_nodes": draw(st.booleans())}
    if draw(st.booleans()):
        fleet["inventory"] = {g: draw(st.integers(1, 64)) for g in GPUS}
    if draw(st.booleans()):
        fleet["budget_usd_per_hour"] = draw(st.floats(5, 500))
    return Problem.model_validate({"name": "generated", "models": models, "fleet": fleet})


def _solve(problem: Problem, cat=CAT) -> Plan:  # type: ignore[no-untyped-def]
    plan = api.solve(problem, cat, time_limit_s=10)
    if plan.status.has_plan:
        verify_plan(plan, problem, cat)
    return plan


def _cost(plan: Plan) -> float | None:
    """Cost of a proven-optimal plan, +inf if proven infeasible, None if unproven."""
    if plan.status is SolveStatus.OPTIMAL:
        return plan.cost_usd_per_hour
    if plan.status is SolveStatus.INFEASIBLE:
        return float("inf")
    return None


def _no_worse(looser: Plan, tighter: Plan) -> None:
    """The relaxed problem's optimum costs no more than the original's (cent rounding aside)."""
    a, b = _cost(looser), _cost(tighter)
    if a is None or b is None:
        return
    assert a <= b + 0.01 * max(1, len(tighter.deployments)), (a, b)


def _update_models(problem: Problem, **changes) -> Problem:  # type: ignore[no-untyped-def]
    return problem.model_copy(update={"models": [m.model_copy(update=changes) for m in problem.models]})


@PROPS
@given(problems())
def test_every_plan_verifies_and_reruns_identically(problem: Problem) -> None:
    plan = _solve(problem)
    again = _solve(problem)
    a, b = plan.to_dict(), again.to_dict()
    a.pop("solve_seconds"), b.pop("solve_seconds")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@PROPS
@given(problems(), st.floats(1.1, 4.0))
def test_more_traffic_never_lowers_cost(problem: Problem, factor: float) -> None:
    more = problem.model_copy(update={"models": [m.model_copy(update={
        "traffic": m.traffic.model_copy(update={"peak_rps": m.traffic.peak_rps * factor})}) for m in problem.models]})
    _no_worse(_solve(problem), _solve(more))


@PROPS
@given(problems(), st.floats(1.1, 3.0))
def test_looser_targets_never_raise_cost(problem: Problem, factor: float) -> None:
    def loosen(m):  # type: ignore[no-untyped-def]
        slo = m.slo.model_copy(update={k: getattr(m.slo, k).model_copy(update={"max_ms": getattr(m.slo, k).max_ms * factor})
                                       for k in ("ttft", "tpot", "e2e") if getattr(m.slo, k) is not None})
        return m.model_copy(update={"slo": slo})
    looser = problem.model_copy(update={"models": [loosen(m) for m in problem.models]})
    _no_worse(_solve(looser), _solve(problem))


@PROPS
@given(problems(), st.integers(1, 64), st.floats(1.5, 10.0))
def test_more_inventory_or_budget_never_raises_cost(problem: Problem, extra: int, budget_factor: float) -> None:
    base = _solve(problem)
    fleet = problem.fleet
    inv = {g: n + extra for g, n in (fleet.inventory or {}).items()} or None
    bud = fleet.budget_usd_per_hour * budget_factor if fleet.budget_usd_per_hour else None
    roomier = problem.model_copy(update={"fleet": fleet.model_copy(update={"inventory": inv, "budget_usd_per_hour": bud})})
    _no_worse(_solve(roomier), base)


@PROPS
@given(problems(), st.sampled_from(GPUS))
def test_another_accelerator_never_raises_cost(problem: Problem, gpu: str) -> None:
    wider = problem.model_copy(update={"models": [m.model_copy(update={
        "allowed_accelerators": sorted(set(m.allowed_accelerators or []) | {gpu})}) for m in problem.models]})
    _no_worse(_solve(wider), _solve(problem))


@pytest.fixture(scope="module")
def cheaper_catalog(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The catalog with every price 30% lower."""
    folder = tmp_path_factory.mktemp("cheap") / "catalogs"
    shutil.copytree(ROOT / "catalogs", folder)
    data = yaml.safe_load((folder / "prices.yaml").read_text())
    for p in data["prices"]:
        p["usd_per_gpu_hour"] = round(p["usd_per_gpu_hour"] * 0.7, 4)
    (folder / "prices.yaml").write_text(yaml.safe_dump(data))
    return load_catalog(folder)


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(problem=problems())
def test_cheaper_price_never_raises_cost(problem: Problem, cheaper_catalog) -> None:  # type: ignore[no-untyped-def]
    _no_worse(_solve(problem, cheaper_catalog), _solve(problem))


@PROPS
@given(st.sampled_from(MODELS[:3]), st.sampled_from(GPUS), st.integers(1, 16), st.integers(50, 4000),
       st.integers(10, 800), st.floats(200, 5000))
def test_capacity_then_query_agree(model: str, gpu: str, n: int, isl: int, osl: int, ttft: float) -> None:
    """The rate capacity promises for N GPUs is servable by query with at most N GPUs."""
    problem = query_problem(model, 1.0, (isl,) * 3, (osl,) * 3, ttft, None, None, gpus=[gpu], cat=CAT)
    ans = api.capacity(problem, CAT, n, time_limit_s=10)
    if not ans.status.has_plan:
        return
    again = query_problem(model, ans.requests_per_s, (isl,) * 3, (osl,) * 3, ttft, None, None, gpus=[gpu], cat=CAT)
    plan = api.query(again, CAT, time_limit_s=10)
    assert plan.status.has_plan and plan.gpus <= ans.gpus_used


FLAG_VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e30", "1e-300", "", "abc", "1,5", "0x10", "true",
                     "99999999999999999999", "1e308", "-0"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["--rps", "--isl", "--osl", "--tpot-p99-ms", "--ttft-p99-ms", "--headroom",
                        "--time-limit", "--prefix-hit-rate", "--max-quality-loss", "--isl-p99"]), FLAG_VALUES)
def test_query_flags_never_crash(flag: str, value: str) -> None:
    args = {"--model": "llama-3.1-8b", "--isl": "200", "--osl": "50", "--rps": "1", "--tpot-p99-ms": "80",
            "--gpu": "h100-sxm", "--time-limit": "5"}
    args[flag] = value
    res = CliRunner().invoke(main, ["query", *[x for kv in args.items() for x in kv], "--json"])
    assert res.exit_code in (0, 1, 2), (flag, value, res.output)
    if res.exit_code == 2:
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in res.output, res.output


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from([".inf", "-.inf", ".nan", "h100-sxm", "fp8"]))
YAML_VALUES = st.recursive(YAML_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                                 st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                           max_leaves=8)
PATHS = [("name",), ("models",), ("models", 0, "model"), ("models", 0, "traffic", "peak_rps"),
         ("models", 0, "traffic", "input_tokens"), ("models", 0, "traffic", "input_tokens", "p99"),
         ("models", 0, "slo"), ("models", 0, "slo", "tpot", "max_ms"), ("models", 0, "slo", "tpot", "percentile"),
         ("models", 0, "allowed_accelerators"), ("models", 0, "headroom"), ("fleet",), ("fleet", "inventory"),
         ("fleet", "budget_usd_per_hour"), ("fleet", "whole_nodes"), ("fleet", "max_configs_per_model")]
GOOD = {"name": "fuzz", "models": [{
    "name": "chat", "model": "llama-3.1-8b",
    "traffic": {"peak_rps": 2, "input_tokens": {"p50": 200, "p90": 400, "p99": 800},
                "output_tokens": {"p50": 50, "p90": 100, "p99": 200}},
    "slo": {"tpot": {"max_ms": 80, "percentile": 99}}, "allowed_accelerators": ["h100-sxm"]}],
    "fleet": {"inventory": {"h100-sxm": 16}}}


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PATHS), YAML_VALUES)
def test_mutated_problem_files_never_crash(tmp_path: Path, path: tuple, value: object) -> None:
    """A good problem with one value replaced by anything YAML can hold: check passes (exit 0)
    or refuses it (exit 2, one line per problem, no traceback); never exit 3."""
    data = json.loads(json.dumps(GOOD))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    file = tmp_path / "fuzz.yaml"
    file.write_text(yaml.safe_dump(data, allow_unicode=False))
    res = CliRunner().invoke(main, ["check", str(file), "--json"])
    assert res.exit_code in (0, 2), res.output
    if res.exit_code == 2:
        assert "Traceback" not in res.output and all(ln.startswith("error: ") for ln in res.output.splitlines() if ln)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["--isl", "--osl", "--tp", "--pp", "--ep", "--concurrency", "--prefix-hit-rate",
                        "--quant", "--kv-dtype", "--gpu", "--model", "--system"]),
       st.one_of(FLAG_VALUES, st.text(max_size=20)))
def test_estimate_flags_never_crash(flag: str, value: str) -> None:
    args = {"--model": "llama-3.1-8b", "--gpu": "h100-sxm", "--isl": "500", "--osl": "100"}
    args[flag] = value
    res = CliRunner().invoke(main, ["estimate", *[x for kv in args.items() for x in kv], "--json"])
    assert res.exit_code in (0, 1, 2), (flag, value, res.output)
    if res.exit_code == 2:
        assert "Traceback" not in res.output and len([ln for ln in res.output.splitlines() if ln]) == 1, res.output


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["--gpus", "--isl", "--osl-p99", "--ttft-p99-ms", "--max-configs", "--gpu", "--kv-dtype",
                        "--time-limit"]), FLAG_VALUES)
def test_capacity_flags_never_crash(flag: str, value: str) -> None:
    args = {"--model": "llama-3.1-8b", "--gpu": "h100-sxm", "--gpus": "4", "--isl": "500", "--osl": "100",
            "--ttft-p99-ms": "800", "--time-limit": "5"}
    args[flag] = value
    res = CliRunner().invoke(main, ["capacity", *[x for kv in args.items() for x in kv], "--json"])
    assert res.exit_code in (0, 1, 2), (flag, value, res.output)
    if res.exit_code == 2:
        assert "Traceback" not in res.output and len([ln for ln in res.output.splitlines() if ln]) == 1, res.output
