"""The replay simulator (solver.simulate, `fleetplan simulate`).

First the cases with known answers (a hand-traced schedule, M/D/1 and M/M/c queues with
constant step times), then the cost-model step-time table, then a bundled plan: the simulator
and the analytic model (solver.slo) agree within 15% on p99 TTFT below the knee and find the
same knee where p99 TTFT leaves the target (benchmarks/replay.py prints the whole sweep).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from solver.api import solve
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, decode_step, kv_budget_bytes_gpu, kv_bytes_per_seq_gpu, shape_terms
from solver.costmodel.speculative import verify_step_ms
from solver.errors import InputError
from solver.problem import load_problem
from solver.queueing import erlang_c
from solver.simulate import (
    ConstantStepTimer, CostModelStepTimer, ReplicaSpec, SpeculativeStepTimer, Workload, build_workload, plan_replicas,
    poisson_workload, replay, simulate,
)
from solver.slo import latency_at_load, slo_view

ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT / "problems" / "chat-assistant-70b.yaml"


def _const(ms: float, batch: int, chunk: int = 2048) -> list[ReplicaSpec]:
    return [ReplicaSpec(ConstantStepTimer(ms, chunk), batch)]


def test_hand_traced_schedule_with_chunked_prefill() -> None:
    # A: 3000-token prompt, 3 output tokens; B: 1000-token prompt, 2 output tokens; both at t=0.
    # Step 1 (0-10 ms): A's first 2048 prompt tokens. Step 2 (10-20 ms): A's last 952 and all of
    # B's 1000 (1048 of the 2048 budget left) -> both first tokens at 20 ms. Step 3 decodes both
    # (B done at 30 ms); step 4 decodes A (done at 40 ms).
    w = Workload(np.array([0.0, 0.0]), np.array([3000, 1000]), np.array([3, 2]))
    r = simulate(_const(10.0, 4), w, "round-robin")
    assert r.ttft_s.tolist() == pytest.approx([0.020, 0.020])
    assert r.e2e_s.tolist() == pytest.approx([0.040, 0.030])
    assert r.tpot_s.tolist() == pytest.approx([0.010, 0.010])


def test_batch_cap_makes_the_second_request_wait() -> None:
    w = Workload(np.array([0.0, 0.005]), np.array([10, 10]), np.array([5, 5]))
    r = simulate(_const(10.0, 1), w, "round-robin")
    assert r.wait_s.tolist() == pytest.approx([0.0, 0.045])  # admitted when the first finishes at 50 ms
    assert r.e2e_s.tolist() == pytest.approx([0.050, 0.095])


def test_md1_mean_wait() -> None:
    # One slot, constant 10 ms steps, 10 steps per request: service 0.1 s, deterministic.
    # M/D/1 at rho = 0.8: mean wait rho s / (2 (1 - rho)) = 0.2 s.
    rho, s, n = 0.8, 0.1, 200_000
    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(s / rho, n))
    r = simulate(_const(10.0, 1), Workload(arr, np.full(n, 10), np.full(n, 10)), "round-robin")
    assert r.queue_wait.mean_ms == pytest.approx(200.0, rel=0.05)
    assert r.utilisation == pytest.approx(rho, abs=0.01)


@pytest.mark.parametrize("rho", [0.7, 0.9])
def test_mmc_probability_of_waiting_is_erlang_c(rho: float) -> None:
    # 8 slots, 5 ms steps, geometric output lengths of mean 200 steps: service ~ exponential of
    # mean 1 s, so P(an arrival finds every slot busy) is Erlang C.
    c, n = 8, 60_000
    rng = np.random.default_rng(1)
    arr = np.cumsum(rng.exponential(1.0 / (rho * c), n))
    osl = rng.geometric(1 / 200, n)
    r = simulate(_const(5.0, c), Workload(arr, np.full(n, 10), osl), "round-robin")
    assert r.p_wait_for_slot == pytest.approx(float(erlang_c(c, rho * c)[0]), abs=0.03)


def test_same_seed_same_result_and_routers_differ() -> None:
    cat = load_catalog()
    d = load_problem(CHAT, cat).models[0]
    plan = solve(load_problem(CHAT, cat), cat).to_dict()
    reps = plan_replicas(plan, cat, None, 6000)
    w1 = poisson_workload(10.0, 60.0, d.traffic.input_tokens, d.traffic.output_tokens, seed=5)
    w2 = poisson_workload(10.0, 60.0, d.traffic.input_tokens, d.traffic.output_tokens, seed=5)
    a, b = simulate(reps, w1, "least-loaded", d.slo), simulate(reps, w2, "least-loaded", d.slo)
    assert np.array_equal(a.e2e_s, b.e2e_s) and a.to_dict() == b.to_dict()
    rr = simulate(reps, w1, "round-robin")
    assert rr.requests == a.requests and not np.array_equal(rr.e2e_s, a.e2e_s)


def test_step_time_table_matches_the_cost_model() -> None:
    cat = load_catalog()
    terms = shape_terms(cat, Shape("llama-3.3-70b", "h100-sxm", None, "fp8", "fp8", tp=2))
    timer = CostModelStepTimer(terms, 64, 8000)
    rng = np.random.default_rng(0)
    errs = []
    for _ in range(400):
        b, ctx, p = int(rng.integers(0, 65)), float(rng.uniform(1, 8000)), int(rng.integers(0, 2049))
        pairs = timer.pairs(p, int(rng.integers(0, 4000)))
        exact = float(decode_step(terms, b, ctx, p, pairs).total_ms)
        errs.append(abs(timer.step_ms(b, ctx, p, pairs) - exact) / exact)
    assert max(errs) < 0.05 and float(np.mean(errs)) < 0.005


def test_kv_memory_limits_admission() -> None:
    cat = load_catalog()
    terms = shape_terms(cat, Shape("llama-3.3-70b", "h100-sxm", None, "fp8", "fp8", tp=2))
    spec = ReplicaSpec(CostModelStepTimer(terms, 8, 4000), 8, kv_budget_bytes=1.5 * float(
        ReplicaSpec(ConstantStepTimer(1.0), 1, terms=terms).kv_bytes(np.array([2000]))[0]), terms=terms)
    # Budget for 1.5 requests of 2000 tokens: the second waits although slots are free; a
    # 5000-token request never fits.
    w = Workload(np.array([0.0, 0.0, 0.0]), np.array([1000, 1000, 4000]), np.array([1000, 1000, 1000]))
    r = simulate([spec], w, "round-robin")
    assert r.wait_s[1] == pytest.approx(r.e2e_s[0])
    assert r.unservable == 1 and np.isinf(r.e2e_s[2])


LOADS = (0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4)
"""Poisson loads as fractions of the planned capacity per replica."""


@pytest.fixture(scope="module")
def chat_sweep() -> tuple[float, list[float], list[float]]:
    """One replica of the bundled chat plan at each of LOADS: (TTFT target, analytic p99 TTFT,
    simulated p99 TTFT over 5000 Poisson arrivals, seed 0)."""
    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    d = problem.models[0]
    dep = solve(problem, cat).to_dict()["deployments"][0]
    one = {"deployments": [{**dep, "replicas": 1}]}
    cap = dep["total_capacity_rps"] / dep["replicas"]
    terms = shape_terms(cat, Shape(dep["model_id"], dep["accelerator"], dep["system"], dep["quant"],
                                   dep["kv_dtype"], dep["tp"], dep["pp"], dep["ep"]))
    v = slo_view(terms, np.array([dep["max_batch"]]), d)
    reps = plan_replicas(one, cat, None, 6000)
    ana, sim = [], []
    for f in LOADS:
        lam = f * cap
        ana.append(latency_at_load(v, 0, d, lam).ttft_ms)
        w = poisson_workload(lam, 5000 / lam, d.traffic.input_tokens, d.traffic.output_tokens, 0,
                             d.traffic.prefix_cache_hit_rate)
        sim.append(simulate(reps, w, "round-robin").ttft.p99_ms)
    return d.slo.ttft.max_ms, ana, sim  # type: ignore[union-attr]


def test_analytic_and_simulated_p99_ttft_find_the_same_knee(chat_sweep) -> None:
    """The load at which p99 TTFT first exceeds the 800 ms target is the same grid step (within
    0.1 of capacity) for both, and both rise more than 4x from half load to 1.4x the planned
    capacity."""
    target, ana, sim = chat_sweep
    knee_ana = next(f for f, t in zip(LOADS, ana) if t > target * 1.001)
    knee_sim = next(f for f, t in zip(LOADS, sim) if t > target)
    assert abs(knee_ana - knee_sim) <= 0.1 + 1e-9
    assert ana[-1] > 4 * ana[1] and sim[-1] > 4 * sim[1]


def test_analytic_p99_ttft_within_15_percent_of_the_replay_below_the_knee(chat_sweep) -> None:
    """Every load from 0.3 to 0.9 of the planned capacity (both below the target there): the
    analytic p99 TTFT within 15% of the simulated one."""
    target, ana, sim = chat_sweep
    below = [(f, a, s) for f, a, s in zip(LOADS, ana, sim) if f < 1.0]
    assert len(below) == 5 and all(a < target and s < target for _, a, s in below)
    for f, a, s in below:
        assert abs(s / a - 1) <= 0.15, (f, a, s)


def test_cli_replays_a_plan(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["solve", str(CHAT), "--no-pareto", "--json"])
    plan = tmp_path / "plan.json"
    plan.write_text(res.output)
    out = runner.invoke(main, ["simulate", str(plan), "--poisson", "8", "--duration", "60",
                               "--problem", str(CHAT), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["requests"] > 300 and data["meets_targets"] in (True, False)
    assert {t["metric"] for t in data["targets"]} == {"ttft", "tpot"}
    deps = json.loads(res.output)["deployments"]
    assert len(data["planned"]) == len(deps)
    for row, dep in zip(data["planned"], deps):
        assert row["ttft_p99_ms"] > 0 and row["deployment"].startswith(f"{dep['replicas']}x {dep['accelerator']} ")
    again = runner.invoke(main, ["simulate", str(plan), "--poisson", "8", "--duration", "60",
                                 "--problem", str(CHAT), "--json"])
    assert again.output == out.output
    text = runner.invoke(main, ["simulate", str(plan), "--poisson", "8", "--duration", "30",
                                "--problem", str(CHAT)])
    assert "ttft p99 <= 800 ms" in text.output


@pytest.mark.parametrize("args,needle", [
    (["--poisson", "5"], "--poisson: needs lengths"),
    ([], "give --trace"),
    (["--poisson", "-1", "--problem", str(CHAT)], "--poisson"),
    (["--poisson", "5", "--problem", str(CHAT), "--model", "nope"], "--model"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    plan.write_text(runner.invoke(main, ["solve", str(CHAT), "--no-pareto", "--json"]).output)
    res = runner.invoke(main, ["simulate", str(plan), *args])
    assert res.exit_code == 2 and needle in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_cli_rejects_a_file_that_is_not_a_plan(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    res = CliRunner().invoke(main, ["simulate", str(bad), "--poisson", "1"])
    assert res.exit_code == 2 and "not JSON" in res.output
    bad.write_text('{"deployments": [{"model": "chat"}]}')
    with pytest.raises(InputError, match="missing model_id"):
        plan_replicas(json.loads(bad.read_text()), load_catalog(), None, 100)


TRACES = ROOT.parent / "shared" / "traces"
needs_traces = pytest.mark.skipif(not (TRACES / "azure-llm-2023-code.csv").exists(),
                                  reason="shared traces not present")


@needs_traces
def test_conversation_trace_scaled_onto_the_chat_plan_meets_p99() -> None:
    """The Azure conversation trace (Azure Public Dataset, CC-BY 4.0; Patel et al., Splitwise,
    ISCA 2024), its mean rate scaled to the chat problem's peak_rps (12 req/s, x2.17), through
    the bundled chat plan: both p99 targets hold (simulated ~500 ms TTFT, ~43 ms TPOT)."""
    from solver.simulate import replay, trace_workload
    from solver.traffic import read_trace

    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    d = problem.models[0]
    tr = read_trace(TRACES / "azure-llm-2023-conv.csv")
    w = trace_workload(tr, d.traffic.peak_rps / (tr.requests / tr.span_s), d.traffic.prefix_cache_hit_rate)
    r = replay(solve(problem, cat).to_dict(), cat, w, None, "least-loaded", d.slo)
    assert r.offered_rps == pytest.approx(12.0, rel=0.01)
    assert r.meets and all(t.within >= 0.99 for t in r.targets)


def _trace_problem(tmp_path: Path, window: str, pct: float = 99) -> Path:
    p = tmp_path / f"code-{window}-{pct}.yaml"
    p.write_text(
        f"name: code-{window}\nmodels:\n  - name: code\n    model: llama-3.1-70b\n"
        f"    traffic: {{trace: {TRACES / 'azure-llm-2023-code.csv'}, window: {window}, percentile: {pct}}}\n"
        "    slo: {ttft: {max_ms: 1000}, tpot: {max_ms: 60}}\n"
        "    allowed_accelerators: [h100-sxm]\n    allowed_quantizations: [fp8]\n    headroom: 0.2\n")
    return p


@needs_traces
def test_code_trace_needs_the_peak_at_a_short_window(tmp_path: Path) -> None:
    """The bursty code trace (inter-arrival CV 13) replayed as recorded: a plan sized on its p99
    60 s rate misses p99 TTFT by >2x (~2,400 ms against 1,000); sized on its p99 1 s rate (the
    burst allowance `fleetplan traffic --window 1s` gives), the plan meets p99 TTFT (~610 ms; p99
    TPOT ~83 ms misses 60); on its p99.5 1 s rate, both targets (TTFT ~380 ms, TPOT ~50 ms)."""
    from solver.simulate import replay, trace_workload
    from solver.traffic import read_trace

    cat = load_catalog()
    w = trace_workload(read_trace(TRACES / "azure-llm-2023-code.csv"))
    ttft = {}
    for window in ("60s", "1s"):
        problem = load_problem(_trace_problem(tmp_path, window), cat)
        d = problem.models[0]
        r = replay(solve(problem, cat).to_dict(), cat, w, None, "least-loaded", d.slo)
        ttft[window] = next(t for t in r.targets if t.metric == "ttft")
    assert not ttft["60s"].met and ttft["60s"].simulated_ms > 2000
    assert ttft["1s"].met
    problem = load_problem(_trace_problem(tmp_path, "1s", 99.5), cat)
    r = replay(solve(problem, cat).to_dict(), cat, w, None, "least-loaded", problem.models[0].slo)
    assert r.meets


def test_bursty_stream_has_its_cv_and_rate_and_waits_longer() -> None:
    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    d = problem.models[0]
    bursty = poisson_workload(10.0, 2000.0, d.traffic.input_tokens, d.traffic.output_tokens, 0, cv=3.0)
    gaps = np.diff(bursty.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)
    assert bursty.mean_rps == pytest.approx(10.0, rel=0.1)
    plain = poisson_workload(10.0, 2000.0, d.traffic.input_tokens, d.traffic.output_tokens, 0)
    reps = plan_replicas(solve(problem, cat).to_dict(), cat, None, 6000)
    assert simulate(reps, bursty, slo=d.slo).ttft.p99_ms > 1.25 * simulate(reps, plain, slo=d.slo).ttft.p99_ms
    with pytest.raises(InputError, match="--cv"):
        poisson_workload(10.0, 10.0, d.traffic.input_tokens, d.traffic.output_tokens, 0, cv=0.0)


def test_cli_replays_a_trace_scaled_to_a_rate(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = ["timestamp_s,input_tokens,output_tokens"] + [f"{i * 0.5},{500 + i},{50 + i % 7}" for i in range(200)]
    trace.write_text("\n".join(rows))
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    plan.write_text(runner.invoke(main, ["solve", str(CHAT), "--no-pareto", "--json"]).output)
    res = runner.invoke(main, ["simulate", str(plan), "--trace", str(trace), "--scale-to", "8", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["requests"] == 200 and data["offered_rps"] == pytest.approx(8.0 * 199 / 200, rel=0.01)
    assert data["targets"] == [] and "trace_citation" not in data  # no --problem; not an Azure trace
    both = runner.invoke(main, ["simulate", str(plan), "--trace", str(trace), "--scale", "2", "--scale-to", "8"])
    assert both.exit_code == 2 and "--scale" in both.output


@pytest.mark.parametrize("dep,needle", [
    ("not-an-object", "deployments[0]: expected an object"),
    ({"model": "chat", "model_id": "llama-3.3-70b", "accelerator": "h100-sxm", "system": "h100-sxm-8",
      "quant": "fp8", "kv_dtype": "fp8", "tp": "two", "pp": 1, "ep": 1, "max_batch": 8, "replicas": 1},
     "deployments[0]: invalid literal"),
    ({"model": "chat", "model_id": "no-such-model", "accelerator": "h100-sxm", "system": "h100-sxm-8",
      "quant": "fp8", "kv_dtype": "fp8", "tp": 1, "pp": 1, "ep": 1, "max_batch": 8, "replicas": 1},
     "deployments[0]: "),
    ({"model": "chat", "model_id": "llama-3.3-70b", "accelerator": "h100-sxm", "system": "h100-sxm-8",
      "quant": "fp8", "kv_dtype": "fp8", "tp": 1, "pp": 1, "ep": 1, "max_batch": 0, "replicas": 1},
     "max_batch must be >= 1"),
])
def test_malformed_plan_deployments_are_bad_input(tmp_path: Path, dep: object, needle: str) -> None:
    f = tmp_path / "plan.json"
    f.write_text(json.dumps({"deployments": [dep]}))
    res = CliRunner().invoke(main, ["simulate", str(f), "--poisson", "1", "--problem", str(CHAT)])
    assert res.exit_code == 2, res.output
    assert needle in res.output and len(res.output.strip().splitlines()) == 1


# -- what a plan's deployment carries: speculative decoding, GPU shares, LoRA (issue 11) ------

def _dep(model_id: str, tp: int = 1, batch: int = 8, **extra: object) -> dict[str, object]:
    return {"model": "m", "model_id": model_id, "accelerator": "h100-sxm", "system": "hgx-h100-8",
            "quant": "bf16", "kv_dtype": "bf16", "tp": tp, "pp": 1, "ep": 1, "max_batch": batch,
            "replicas": 1, **extra}


def _alone(isl: int, osl: int) -> Workload:
    """One request on an idle replica: every step after its prompt decodes it alone."""
    return Workload(np.array([0.0]), np.array([isl]), np.array([osl]))


def test_speculative_replica_decodes_expected_tokens_per_cycle() -> None:
    # Acceptance 0.5, 1 drafted token: E = (1 - 0.5^2) / (1 - 0.5) = 1.5 tokens per cycle. After
    # the first token, 6 more tokens take 6 / 1.5 = 4 cycles, each = the target verifying 2
    # tokens of the one sequence + one draft step, at contexts 1001, 1002.5, 1004, 1005.5.
    cat = load_catalog()
    spec = {"draft": "llama-3.1-8b", "acceptance_rate": 0.5, "draft_tokens": 1}
    [rep] = plan_replicas({"deployments": [_dep("llama-3.1-70b", tp=4, speculative=spec)]}, cat, "m", 1007)
    target = shape_terms(cat, Shape("llama-3.1-70b", "h100-sxm", "hgx-h100-8", "bf16", "bf16", 4, 1, 1))
    draft = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", "hgx-h100-8", "bf16", "bf16", 4, 1, 1))
    cycles = [float(verify_step_ms(target, 1, c, 1)) + float(decode_step(draft, 1, c).total_ms)
              for c in (1001, 1002.5, 1004, 1005.5)]
    r = simulate([rep], _alone(1000, 7))
    assert rep.tokens_per_step == pytest.approx(1.5)
    assert r.tpot_s[0] * 1e3 == pytest.approx(sum(cycles) / 6, rel=1e-4)
    plain = simulate(plan_replicas({"deployments": [_dep("llama-3.1-70b", tp=4)]}, cat, "m", 1007), _alone(1000, 7))
    assert r.tpot_s[0] < plain.tpot_s[0]  # a cycle of 1.5 tokens costs less than 1.5 plain steps here
    # the draft's weights and KV come off the target's budget
    assert rep.kv_budget_bytes == pytest.approx(kv_budget_bytes_gpu(target) - draft.weight_bytes_gpu)
    assert rep.kv_bytes(np.array([1007]))[0] == pytest.approx(
        float(kv_bytes_per_seq_gpu(target, 1007) + kv_bytes_per_seq_gpu(draft, 1007)))


def test_shared_half_gpu_replica_steps_twice_the_gpu_side_time() -> None:
    # shared 1/2: the GPU is time-sliced between two replicas, so every GPU-side time of a step
    # doubles and the host time (0.3 ms per CUDA-graph step) does not: step = 2 (t - 0.3) + 0.3.
    cat = load_catalog()
    whole = simulate(plan_replicas({"deployments": [_dep("llama-3.1-8b")]}, cat, "m", 1100), _alone(1000, 101))
    [rep] = plan_replicas({"deployments": [_dep("llama-3.1-8b", partition="shared 1/2")]}, cat, "m", 1100)
    half = simulate([rep], _alone(1000, 101))
    host_ms = rep.terms.host_overhead_graph_s * 1e3
    assert host_ms == pytest.approx(0.3)
    assert half.tpot_s[0] * 1e3 == pytest.approx(2 * (whole.tpot_s[0] * 1e3 - host_ms) + host_ms, rel=1e-6)
    assert "shared 1/2" in rep.label
    # half the memory, the same weights: well under half the KV budget
    full_budget = kv_budget_bytes_gpu(plan_replicas({"deployments": [_dep("llama-3.1-8b")]}, cat, "m", 1100)[0].terms)
    assert rep.kv_budget_bytes < full_budget / 2


def test_mig_replica_and_a_profile_the_accelerator_lacks() -> None:
    cat = load_catalog()
    [rep] = plan_replicas({"deployments": [_dep("llama-3.1-8b", partition="mig 3g.40gb")]}, cat, "m", 1100)
    # 3g.40gb on an H100: 4 of 8 memory slices -> half the HBM and half the bandwidth
    whole = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", "hgx-h100-8", "bf16", "bf16", 1, 1, 1))
    assert rep.terms.hbm_bytes == pytest.approx(whole.hbm_bytes / 2)
    assert rep.terms.bw_bytes_s == pytest.approx(whole.bw_bytes_s / 2)
    with pytest.raises(InputError, match=r"deployments\[0\]: partition: h100-sxm has no MIG profile '9g.1gb'"):
        plan_replicas({"deployments": [_dep("llama-3.1-8b", partition="mig 9g.1gb")]}, cat, "m", 1100)


def test_lora_adapters_from_the_problem_take_memory_and_step_time() -> None:
    # lora-tenants: rank 16 on q, k, v, o of Llama 3.1 8B (hidden 4096, KV 1024, 32 layers):
    # 16 x (4096+4096 + 4096+1024 + 4096+1024 + 4096+4096) x 32 = 13,631,488 parameters,
    # 27,262,976 bytes in bf16; 8 resident = 218,103,808 bytes off the KV budget, read every step.
    cat = load_catalog()
    problem = load_problem(ROOT / "problems" / "lora-tenants.yaml", cat)
    demand = problem.models[0]
    plan = {"deployments": [_dep("llama-3.1-8b")]}
    [plain] = plan_replicas(plan, cat, "m", 1100)
    [lora] = plan_replicas(plan, cat, "m", 1100, demand)
    assert plain.kv_budget_bytes - lora.kv_budget_bytes == pytest.approx(218_103_808)
    assert lora.terms.dense_flop_per_token - plain.terms.dense_flop_per_token == pytest.approx(2 * 13_631_488)
    t_plain = simulate([plain], _alone(1000, 101)).tpot_s[0]
    t_lora = simulate([lora], _alone(1000, 101)).tpot_s[0]
    assert t_lora > t_plain
    with pytest.raises(InputError, match=r"deployments\[0\]: model_id 'qwen3-8b' is not the problem's"):
        plan_replicas({"deployments": [_dep("qwen3-8b")]}, cat, "m", 1100, demand)


def test_bad_speculative_field_is_one_line() -> None:
    cat = load_catalog()
    bad = {"draft": "llama-3.1-8b", "acceptance_rate": 1.5, "draft_tokens": 2}
    with pytest.raises(InputError, match=r"deployments\[0\]: speculative: acceptance_rate must be in \[0, 1\]"):
        plan_replicas({"deployments": [_dep("llama-3.1-70b", tp=4, speculative=bad)]}, cat, "m", 1100)


def test_speculative_cycle_table_matches_the_cost_model() -> None:
    # The tabulated cycle times against direct calls (prompt tokens and pairs included).
    cat = load_catalog()
    spec = {"draft": "llama-3.1-8b", "acceptance_rate": 0.7, "draft_tokens": 3}
    [rep] = plan_replicas({"deployments": [_dep("llama-3.1-70b", tp=4, batch=32, speculative=spec)]}, cat, "m", 6000)
    timer = rep.timer
    assert isinstance(timer, SpeculativeStepTimer)
    rng = np.random.default_rng(1)
    errs = []
    for _ in range(200):
        b, ctx, p = int(rng.integers(0, 33)), float(rng.uniform(1, 6000)), int(rng.integers(0, 2049))
        pairs = timer.pairs(p, int(rng.integers(0, 3000)))
        exact = float(timer._steps_ms(np.array(float(b)), np.array(ctx), np.array(float(p)), pairs))
        errs.append(abs(timer.step_ms(b, ctx, p, pairs) - exact) / exact)
    assert max(errs) < 0.05 and float(np.mean(errs)) < 0.005


def test_cli_replays_lora_with_the_problem_and_refuses_a_bad_share(tmp_path: Path) -> None:
    runner = CliRunner()
    lora = ROOT / "problems" / "lora-tenants.yaml"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"deployments": [{**_dep("llama-3.1-8b", replicas=2), "model": "tenants"}]}))
    args = ["simulate", str(plan), "--poisson", "4", "--duration", "20", "--json"]
    got = json.loads(runner.invoke(main, args + ["--problem", str(lora)]).output)
    cat = load_catalog()
    d = load_problem(lora, cat).models[0]
    w = build_workload(None, 4, 20, 0, None, None, d.traffic.input_tokens, d.traffic.output_tokens,
                       d.traffic.prefix_cache_hit_rate)
    plan_dict = json.loads(plan.read_text())
    assert got["tpot"]["p50_ms"] == pytest.approx(replay(plan_dict, cat, w, demand=d).tpot.p50_ms)
    assert got["tpot"]["p50_ms"] > replay(plan_dict, cat, w).tpot.p50_ms  # the adapters are replayed
    plan.write_text(json.dumps({"deployments": [{**_dep("llama-3.1-8b", partition="shared 1/9"), "model": "tenants"}]}))
    out = runner.invoke(main, args + ["--problem", str(lora)])
    assert out.exit_code == 2
    assert out.output.strip().count("\n") == 0 and "deployments[0]: partition: co-located" in out.output


def test_weighted_router_is_smooth_weighted_round_robin() -> None:
    """Weights 3:1, by hand (smooth WRR: add each weight to its counter, send to the largest
    counter, ties to the lower index, take the weights' total off the chosen one): counters
    (3,1) -> replica 0 -> (-1,1); (2,2) -> 0 -> (-2,2); (1,3) -> 1 -> (1,-1); (4,0) -> 0 -> (0,0),
    so the order 0,0,1,0 repeats and 400 requests split 300/100."""
    spec = [ReplicaSpec(ConstantStepTimer(1.0), 4, weight=3.0), ReplicaSpec(ConstantStepTimer(1.0), 4, weight=1.0)]
    n = 400
    w = Workload(np.arange(n) * 0.01, np.full(n, 10), np.full(n, 2))
    r = simulate(spec, w, "weighted")
    assert r.replica[:8].tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    assert np.bincount(r.replica).tolist() == [300, 100]
    assert simulate(spec, w, "round-robin").replica[:4].tolist() == [0, 1, 0, 1]


def test_weighted_router_weights_are_the_planned_load_per_replica() -> None:
    cat = load_catalog()
    plan = solve(load_problem(CHAT, cat), cat).to_dict()
    reps = plan_replicas(plan, cat, None, 6000)
    deps = plan["deployments"]
    want = [float(d["load_rps"]) / int(d["replicas"]) for d in deps for _ in range(int(d["replicas"]))]
    got = [s.weight for s in reps]  # the plan's router_weight: the same shares, summing to 1
    assert got == pytest.approx([x / sum(want) for x in want]) and sum(got) == pytest.approx(1.0)
    bad = {**plan, "deployments": [{k: v for k, v in d.items() if k not in ("load_rps", "router_weight")}
                                   for d in deps]}
    assert [s.weight for s in plan_replicas(bad, cat, None, 6000)] == [1.0] * len(reps)


@needs_traces
def test_weighted_router_meets_p99_where_round_robin_misses_on_the_chat_plan() -> None:
    """The chat plan's two replicas differ ~7x in capacity (b200 TP2 B128 vs mi300x TP2 B32):
    round-robin gives each half of the scaled conversation trace and the small one falls behind
    (p99 TTFT in minutes); the weighted router splits as the planner does and meets both p99
    targets."""
    from solver.simulate import trace_workload
    from solver.traffic import read_trace

    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    d = problem.models[0]
    tr = read_trace(TRACES / "azure-llm-2023-conv.csv")
    w = trace_workload(tr, d.traffic.peak_rps / (tr.requests / tr.span_s), d.traffic.prefix_cache_hit_rate)
    plan = solve(problem, cat).to_dict()
    rr = replay(plan, cat, w, None, "round-robin", d.slo)
    wr = replay(plan, cat, w, None, "weighted", d.slo)
    assert rr.meets is False
    assert wr.meets and all(t.within >= 0.99 for t in wr.targets)
    assert wr.router == "weighted"


def test_cli_bad_router_is_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    plan.write_text(runner.invoke(main, ["solve", str(CHAT), "--no-pareto", "--json"]).output)
    res = runner.invoke(main, ["simulate", str(plan), "--poisson", "5", "--problem", str(CHAT), "--router", "nope"])
    assert res.exit_code == 2 and "--router" in res.output and "weighted" in res.output
    assert len(res.output.strip().splitlines()) == 1
