"""Driver run by ``benchmarks/peers.py`` under the *aiconfigurator* virtual environment's python.

Not part of fleetplan and never imported by it or by its tests: it imports ``aiconfigurator``
(NVIDIA's AIConfigurator, ``pip install aiconfigurator``), which fleetplan does not depend on.

Usage (peers.py writes the job file)::

    AIC_VENV/bin/python benchmarks/aic_driver.py grid JOBS.json OUT.csv
    AIC_VENV/bin/python benchmarks/aic_driver.py slo  JOBS.json OUT.csv
    AIC_VENV/bin/python benchmarks/aic_driver.py modes JOBS.json OUT.csv

``grid``: one ``cli_estimate(mode="agg")`` per job (TensorRT-LLM backend, aggregated in-flight
batching at a fixed batch size); ``slo``: one ``cli_default`` per job (AIC's own search of
aggregated configurations on N GPUs under a TTFT/TPOT target), keeping the best aggregated row;
``modes``: the same search, keeping AIC's best aggregated *and* best disaggregated row
(``benchmarks/disagg_aic.py``).
Rows already in OUT.csv (same ``key``) are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

GRID_FIELDS = ["key", "aic_version", "backend_version", "ttft_ms", "tpot_ms", "tokens_s", "tokens_s_gpu",
               "num_gpus", "kv_cache_warning", "error"]
SLO_FIELDS = ["key", "aic_version", "backend_version", "tokens_s_gpu", "tokens_s_user", "ttft_ms", "tpot_ms",
              "concurrency", "parallel", "tp", "dp", "moe_tp", "moe_ep", "gemm", "kvcache", "quant", "num_gpus",
              "error"]


def _quant_kwargs(job: dict) -> dict:
    """AIC quantisation modes for fleetplan's ``bf16`` / ``fp8`` weights (KV cache in the same dtype)."""
    if job["quant"] == "bf16":
        return dict(gemm_quant_mode="bfloat16", moe_quant_mode="bfloat16", kvcache_quant_mode="bfloat16",
                    fmha_quant_mode="bfloat16")
    block = job["aic_model"].startswith(("Qwen/", "deepseek-ai/"))  # their FP8 checkpoints are block-scaled
    return dict(gemm_quant_mode="fp8_block" if block else "fp8", moe_quant_mode="fp8_block",
                kvcache_quant_mode="fp8", fmha_quant_mode="bfloat16" if job["mla"] else "fp8")


def _done(out: Path) -> set[str]:
    if not out.exists():
        return set()
    with open(out, newline="") as fh:
        return {r["key"] for r in csv.DictReader(fh)}


def _grid_row(job: dict, aic_version: str) -> dict:
    from aiconfigurator.cli.api import cli_estimate

    kw = dict(model_path=job["aic_model"], system_name=job["aic_system"], mode="agg", backend_name="trtllm",
              isl=job["isl"], osl=job["osl"], batch_size=job["batch"], tp_size=job["tp"],
              attention_dp_size=job["attn_dp"], **_quant_kwargs(job))
    if job["moe"]:
        kw.update(moe_tp_size=job["moe_tp"], moe_ep_size=job["moe_ep"])
    row = {"key": job["key"], "aic_version": aic_version}
    try:
        r = cli_estimate(**kw)
    except Exception as exc:  # AIC refuses the configuration: record why
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__
        return row
    row.update(backend_version=r.backend_version, ttft_ms=f"{float(r.ttft):.4f}", tpot_ms=f"{float(r.tpot):.4f}",
               tokens_s=f"{float(r.raw['tokens/s']):.4f}", tokens_s_gpu=f"{float(r.raw['tokens/s/gpu']):.4f}",
               num_gpus=int(r.raw["num_total_gpus"]), kv_cache_warning=(r.kv_cache_warning or "")[:200])
    return row


def _slo_row(job: dict, aic_version: str) -> dict:
    from aiconfigurator.cli.api import cli_default

    row = {"key": job["key"], "aic_version": aic_version}
    res = cli_default(model_path=job["aic_model"], total_gpus=job["gpus"], system=job["aic_system"],
                      backend="trtllm", isl=job["isl"], osl=job["osl"], ttft=job["ttft_ms"], tpot=job["tpot_ms"],
                      top_n=1)
    df = res.best_configs.get("agg")
    if df is None or len(df) == 0:
        row["error"] = "no aggregated configuration meets the targets"
        return row
    best = df.iloc[0]

    def get(*names: str) -> object:
        for n in names:
            if n in best.index:
                return best[n]
        return ""

    row.update(backend_version=str(get("version", "backend_version")), tokens_s_gpu=f"{float(get('tokens/s/gpu')):.4f}",
               tokens_s_user=f"{float(get('tokens/s/user')):.4f}", ttft_ms=f"{float(get('ttft')):.4f}",
               tpot_ms=f"{float(get('tpot')):.4f}", concurrency=str(get("concurrency", "bs")),
               parallel=str(get("parallel")), quant=f"gemm {get('gemm')}, moe {get('moe')}, kv {get('kvcache')}",
               num_gpus=str(get("num_total_gpus")), tp=str(get("tp")), dp=str(get("dp")),
               moe_tp=str(get("moe_tp")), moe_ep=str(get("moe_ep")), gemm=str(get("gemm")),
               kvcache=str(get("kvcache")))
    return row


MODES_FIELDS = ["key", "aic_version", "mode", "tokens_s_gpu", "ttft_ms", "tpot_ms", "num_gpus", "config", "error"]


def _modes_rows(job: dict, aic_version: str) -> list[dict]:
    """AIC's best aggregated and best disaggregated configuration for one scenario."""
    from aiconfigurator.cli.api import cli_default

    res = cli_default(model_path=job["aic_model"], total_gpus=job["gpus"], system=job["aic_system"],
                      backend="trtllm", isl=job["isl"], osl=job["osl"], ttft=job["ttft_ms"], tpot=job["tpot_ms"],
                      top_n=1)
    rows = []
    for mode in ("agg", "disagg"):
        row = {"key": job["key"], "aic_version": aic_version, "mode": mode}
        df = res.best_configs.get(mode)
        if df is None or len(df) == 0:
            row["error"] = f"no {mode} configuration meets the targets"
            rows.append(row)
            continue
        best = df.iloc[0]

        def get(name: str) -> str:
            return str(best[name]) if name in best.index else ""

        if mode == "agg":
            config = f"{get('parallel')} batch {get('concurrency')}, gemm {get('gemm')}, kv {get('kvcache')}"
        else:
            config = (f"{get('(p)workers')} x prefill {get('(p)parallel')} + {get('(d)workers')} x decode "
                      f"{get('(d)parallel')} batch {get('(d)bs')}, gemm {get('(p)gemm')}, kv {get('(p)kvcache')}")
        row.update(tokens_s_gpu=f"{float(best['tokens/s/gpu']):.4f}", ttft_ms=f"{float(best['ttft']):.4f}",
                   tpot_ms=f"{float(best['tpot']):.4f}", num_gpus=get("num_total_gpus"), config=config)
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    mode, jobs_path, out_path = argv
    warnings.filterwarnings("ignore")
    os.environ.setdefault("AICONFIGURATOR_LOG_LEVEL", "ERROR")
    jobs = json.loads(Path(jobs_path).read_text())
    out = Path(out_path)
    fields = {"grid": GRID_FIELDS, "slo": SLO_FIELDS, "modes": MODES_FIELDS}[mode]
    done = _done(out)
    aic_version = version("aiconfigurator")
    new = not out.exists()
    with open(out, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if new:
            w.writeheader()
        for i, job in enumerate(jobs):
            if job["key"] in done:
                continue
            if mode == "modes":
                for row in _modes_rows(job, aic_version):
                    w.writerow(row)
                fh.flush()
                print(f"[{i + 1}/{len(jobs)}] {job['key']} done", file=sys.stderr, flush=True)
                continue
            row = _grid_row(job, aic_version) if mode == "grid" else _slo_row(job, aic_version)
            w.writerow(row)
            fh.flush()
            print(f"[{i + 1}/{len(jobs)}] {job['key']} {row.get('tokens_s_gpu') or row.get('error')}",
                  file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
