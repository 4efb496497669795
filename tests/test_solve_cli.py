"""``fleetplan solve / query / capacity / explain`` end to end: exit codes 0/1/2 and JSON keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.cli import main

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
DEPLOYMENT_KEYS = {"model", "accelerator", "quant", "kv_dtype", "tp", "pp", "ep", "max_batch", "replicas",
                   "total_gpus", "total_capacity_rps", "ttft_p99_ms", "tpot_p99_ms", "cost_usd_per_hour"}
Q = ["--model", "llama-3.1-8b", "--isl", "1000", "--osl", "200", "--ttft-p99-ms", "500", "--tpot-p99-ms", "40"]


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def test_solve_json_keys_and_exit_0():
    r = run(["solve", str(PROBLEMS / "chat-assistant-70b.yaml"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert {"status", "cost_usd_per_hour", "gap", "solve_seconds", "deployments"} <= set(out)
    assert out["status"] == "optimal" and out["gap"] == 0 and out["cost_usd_per_hour"] > 0
    assert out["deployments"] and DEPLOYMENT_KEYS <= set(out["deployments"][0])
    assert "explanation" not in out


def test_solve_table_output():
    r = run(["solve", str(PROBLEMS / "rag-long-context.yaml"), "--time-limit", "5"])
    assert r.exit_code == 0, r.output
    assert "rag-long-context: optimal" in r.output and "ttft_p99_ms" in r.output


def _write(tmp_path: Path, tpot_ms: float) -> Path:
    text = (PROBLEMS / "chat-assistant-70b.yaml").read_text().replace("tpot: {max_ms: 50", f"tpot: {{max_ms: {tpot_ms:g}")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_infeasible_exit_1_with_explanation(tmp_path):
    path = _write(tmp_path, 2)
    r = run(["solve", str(path), "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["status"] == "infeasible" and out["conflict"] == ["tpot[chat]"]
    assert out["explanation"][0].startswith("TPOT p99 <= 2 ms for chat (llama-3.3-70b): the fastest allowed candidate reaches")
    r = run(["solve", str(path)])
    assert r.exit_code == 1 and "No plan meets all of these together" in r.output


def test_bad_input_exit_2(tmp_path):
    assert run(["solve", str(tmp_path / "missing.yaml")]).exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: []\n")
    r = run(["solve", str(bad)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = run(["query", "--model", "llama-3.1-7b", "--rps", "1", "--isl", "10", "--osl", "10", "--tpot-p99-ms", "50"])
    assert r.exit_code == 2 and "closest valid ids" in r.output
    r = run(["query", "--model", "llama-3.1-8b", "--rps", "1", "--isl", "10", "--osl", "10"])
    assert r.exit_code == 2 and "at least one of" in r.output
    r = run(["query", *Q, "--rps", "1", "--gpu", "h100"])
    assert r.exit_code == 2 and "h100-sxm" in r.output
    assert run(["solve", str(PROBLEMS / "chat-assistant-70b.yaml"), "--time-limit", "0"]).exit_code == 2


def test_query_json():
    r = run(["query", *Q, "--rps", "30", "--gpu", "h100-sxm", "--gpu", "l40s", "--quant", "fp8", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["status"] == "optimal"
    for d in out["deployments"]:
        assert d["accelerator"] in ("h100-sxm", "l40s") and d["quant"] == "fp8"
        assert d["ttft_p99_ms"] <= 500 and d["tpot_p99_ms"] <= 40
    assert sum(d["total_capacity_rps"] for d in out["deployments"]) >= 30


def test_capacity_json():
    r = run(["capacity", *Q, "--gpu", "h100-sxm", "--gpus", "8", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["status"] == "optimal" and out["gpus_used"] <= 8
    assert {"requests_per_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "deployments"} <= set(out)
    assert out["output_tokens_per_s"] == pytest.approx(out["requests_per_s"] * 200)
    r = run(["capacity", "--model", "llama-3.1-70b", "--gpu", "l4", "--gpus", "1", "--isl", "1000",
             "--osl", "200", "--tpot-p99-ms", "40"])
    assert r.exit_code == 1


def test_explain_lists_bindings():
    r = run(["explain", str(PROBLEMS / "chat-assistant-70b.yaml")])
    assert r.exit_code == 0, r.output
    assert "BINDS" in r.output and "tpot[chat]" in r.output
    r = run(["explain", str(PROBLEMS / "chat-assistant-70b.yaml"), "--json"])
    out = json.loads(r.output)
    assert any(b["binding"] for b in out["bindings"])


def test_quality_limit_on_the_command_line():
    from solver.catalog import load_catalog

    cat = load_catalog()
    r = run(["capacity", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "13", "--isl", "3000",
             "--osl", "300", "--ttft-p99-ms", "900", "--tpot-p99-ms", "30", "--max-quality-loss", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    for d in json.loads(r.output)["deployments"]:
        assert cat.quantization(d["quant"]).quality_loss.points <= 0.5
