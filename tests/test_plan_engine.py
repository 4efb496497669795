"""The plan records the engine of each deployment; replay and the verifier read it (issue 11
replay leftovers)."""

from __future__ import annotations

import json
from dataclasses import replace

from click.testing import CliRunner

from solver.catalog import load_catalog
from solver.cli import main
from solver.problem import Problem
from solver.session import Session
from solver.simulate import plan_replicas
from solver.verify import violations

CAT = load_catalog()


def _problem(engine: str | None) -> Problem:
    m = {
        "name": "m", "model": "llama-3.1-8b",
        "traffic": {"peak_rps": 2, "input_tokens": {"p50": 1000, "p90": 1000, "p99": 1000},
                    "output_tokens": {"p50": 200, "p90": 200, "p99": 200}},
        "slo": {"ttft": {"max_ms": 2000}, "tpot": {"max_ms": 50}},
        "allowed_accelerators": ["h100-sxm"], "allowed_quantizations": ["bf16"], "min_replicas": 1,
    }
    if engine is not None:
        m["engine"] = engine
    return Problem.model_validate({"name": "eng", "models": [m], "fleet": {"pricing": "on-demand"}})


def _plan(engine: str | None):
    p = _problem(engine)
    plan, _ = Session.prepare(p, CAT).run(time_limit_s=20)
    assert plan.status.has_plan
    return p, plan


def test_plan_json_records_the_engine_and_replay_uses_it():
    """SGLang's chunk is 8,192 tokens, vLLM's (the catalog default) 2,048: the replay's step
    timer takes the chunk of the engine the plan names, and the default for a plan without one."""
    assert CAT.default_engine == "vllm"
    assert CAT.engine("sglang").chunk_tokens == 8192 and CAT.engine("vllm").chunk_tokens == 2048
    _, plan = _plan("sglang")
    data = json.loads(json.dumps(plan.to_dict()))
    assert {d["engine"] for d in data["deployments"]} == {"sglang"}
    assert plan_replicas(data, CAT, None, 4096)[0].timer.chunk_tokens == 8192
    _, plan = _plan(None)
    data = plan.to_dict()
    assert {d["engine"] for d in data["deployments"]} == {"vllm"}
    old = {**data, "deployments": [{k: v for k, v in d.items() if k != "engine"} for d in data["deployments"]]}
    assert plan_replicas(old, CAT, None, 4096)[0].timer.chunk_tokens == 2048
    sg = {**data, "deployments": [dict(d, engine="sglang") for d in data["deployments"]]}
    assert plan_replicas(sg, CAT, None, 4096)[0].timer.chunk_tokens == 8192


def test_verifier_catches_a_plan_recording_another_engine():
    p, plan = _plan("sglang")
    assert violations(plan, p, CAT) == []
    bad = replace(plan, deployments=tuple(replace(d, engine="vllm") for d in plan.deployments))
    assert "accounting" in {v.family for v in violations(bad, p, CAT)}


def test_unknown_engine_in_a_plan_is_one_line_exit_2(tmp_path):
    p, plan = _plan(None)
    data = plan.to_dict()
    data["deployments"][0]["engine"] = "nonesuch"
    pf = tmp_path / "plan.json"
    pf.write_text(json.dumps(data))
    f = tmp_path / "p.json"
    f.write_text(json.dumps(p.model_dump(mode="json", by_alias=True, exclude_defaults=True)))
    r = CliRunner().invoke(main, ["simulate", str(pf), "--poisson", "1", "--problem", str(f)])
    lines = [x for x in r.output.strip().splitlines() if x]
    assert r.exit_code == 2 and len(lines) == 1 and "deployments[0]" in lines[0] and "nonesuch" in lines[0], r.output
