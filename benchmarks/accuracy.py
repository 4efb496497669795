"""Accuracy of the analytical cost model against public measurements (``../shared/refdata``).

Usage::

    python benchmarks/accuracy.py            # evaluate the catalog's efficiency factors
    python benchmarks/accuracy.py --fit      # also refit the factors on the fit half
    python benchmarks/accuracy.py --csv PATH # another measured.csv

Vendor rows: ``benchmarks/data/vendor_measured.csv`` (AMD/Intel measurements, same columns), when
it exists, is read too; its rows print as their own group ("vendor", row numbers prefixed ``v``)
and take no part in the shared fit (their families have their own catalog entries).

Every row of ``measured.csv`` is either mapped to an ``estimate`` call (model, GPU, quantisation,
KV dtype, TP/PP/EP, ISL/OSL, a concurrency derived from the row's scenario) or listed as skipped
with the reason. Concurrency per scenario, from the engines' documented behaviour, never fitted:

* offline max-throughput (trtllm-bench): the largest concurrency memory allows, capped at
  4096 / pp (trtllm-bench's ``finetune_setting`` caps the batch at 4096 requests);
  the TensorRT-LLM PyTorch-backend perf overview (``developer-guide/perf-overview.md``) also
  states how many requests each run had (3000 for 1024/1024, 1500 for 8192/1024 and 1024/8192,
  1000 for 32768/1024 and 1024/32768): no more than those can be in flight
  (:data:`PERF_OVERVIEW_REQUESTS`);
* ``static batch=N`` / ``concurrency=N``: ``min(N, memory max)``;
* ``batch=1``: one request (TTFT = prefill alone);
* memory: TensorRT-LLM gives the KV cache ``free_gpu_memory_fraction`` = 0.9 of the memory
  *left free after the weights load* (KvCacheConfig default,
  https://nvidia.github.io/TensorRT-LLM/examples/kvcacheconfig.html), not 0.9 of the whole HBM
  as vLLM's ``gpu_memory_utilization`` does; every row runs under its engine's profile in
  ``catalogs/engines.yaml`` (:func:`engine_id`: memory rule, chunk size, host overheads);
* Poisson ``QPS=q``: Little's law, ``B = q x (TTFT + (OSL - 1) x TPOT(B))`` solved by
  fixed-point iteration; ``QPS=inf`` with 500 requests: all 500 in flight (memory permitting),
  prefilled together before decoding, so their ITL is a decode step without prefill work.

Weights: a precision marked "(as labelled)" is a table's column label, not a checkpoint; the
row runs the model's released checkpoint (catalog ``native_quantization``). The gpt-oss rows of
the perf overview are such: the doc lists the NVIDIA ModelOpt FP4/FP8 checkpoints it used and
none is a gpt-oss one, so H100/H200 ran openai/gpt-oss-120b itself -- MXFP4 experts with the
Triton MoE backend its llm_options name for Hopper -- under the column label "FP8". The same
llm_options set the KV cache to ``fp8  # Hopper: use auto``, so every gpt-oss row of that doc on
H100/H200 keeps a bf16 KV cache (the refdata notes say so for some of them, not all).

Fit/holdout split: rows with an even row number (0-based, header excluded) are the fit half,
odd rows the holdout half. ``--fit`` fits ``eta_bw``, ``stream_kernel_us``, ``mfu_prefill``,
``mfu_decode``, ``moe_layer_fixed_us``, ``mixed_input_gemm_efficiency``,
``block_scaled_gemm_efficiency`` (catalogs/efficiency.yaml) and TensorRT-LLM's
``host_overhead_graph_ms`` / ``host_overhead_eager_ms`` (catalogs/engines.yaml) -- one set shared
by every family, each a fraction of that chip's own peak or an absolute time -- by coordinate
descent on the mean |log(predicted / measured)| of the refdata fit rows, and reports the error of
the fitted factors on the holdout rows. No per-row factors exist.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from solver.catalog import Catalog, load_catalog
from solver.costmodel import (
    Shape,
    ShapeTerms,
    decode_step_ms,
    estimate_terms,
    shape_terms,
    with_efficiency,
)
from solver.errors import InputError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CSV = REPO.parent / "shared" / "refdata" / "measured.csv"
VENDOR_CSV = REPO / "benchmarks" / "data" / "vendor_measured.csv"
TRTLLM_BENCH_MAX_BATCH = 4096
MOE_MODELS = {"mixtral-8x7b", "deepseek-r1", "gpt-oss-120b"}
THROUGHPUT = {"output_tokens_per_s_total", "output_tokens_per_s_per_gpu"}
LATENCY = {"ttft_ms", "ttft_ms_mean", "itl_ms_mean"}

MODELS = {
    "llama-3.1-70b": "llama-3.1-70b", "llama-3.1-8b": "llama-3.1-8b",
    "llama-3.1-405b": "llama-3.1-405b", "llama-3.3-70b": "llama-3.3-70b",
    "llama-2-70b": "llama-2-70b", "mixtral-8x7b": "mixtral-8x7b",
    "deepseek-r1": "deepseek-r1", "deepseek-r1-0528": "deepseek-r1",
    "gpt-oss-120b": "gpt-oss-120b", "meta-llama-3.1-8b-fp8": "llama-3.1-8b",
    "meta-llama-3.1-70b-instruct-fp8": "llama-3.1-70b", "hermes-3-llama-3.1-405b-fp8": "llama-3.1-405b",
    "mixtral-8x7b-instruct-v0.1": "mixtral-8x7b",
}
GPUS = [
    (r"^gb200", "gb200"), (r"^b200", "b200"), (r"^h200", "h200-sxm"), (r"^h100 (sxm )?80gb", "h100-sxm"),
    (r"^a100 sxm4? 80gb", "a100-80gb"), (r"^l40s", "l40s"),
    (r"^(amd )?(instinct )?mi300x", "mi300x"), (r"^(amd )?(instinct )?mi325x", "mi325x"),
    (r"^(amd )?(instinct )?mi355x", "mi355x"), (r"^(intel )?gaudi ?3", "gaudi3"),
]


@dataclass(frozen=True)
class Case:
    """One measured row mapped onto the cost model."""

    row: int
    label: str
    shape: Shape
    isl: int
    osl: int
    concurrency: str  # "max", "max:<requests>", "n:<N>", "qps:<q>", "burst:<N>"
    metric: str
    measured: float
    engine: str = "vllm"
    group: str = "refdata"
    """``refdata`` (../shared/refdata) or ``vendor`` (benchmarks/data/vendor_measured.csv)."""

    @property
    def tag(self) -> str:
        return f"v{self.row}" if self.group == "vendor" else str(self.row)

    @property
    def split(self) -> str:
        return "fit" if self.row % 2 == 0 else "holdout"


def _num(s: str) -> int | None:
    s = (s or "").strip()
    return int(float(s)) if re.fullmatch(r"\d+(\.\d+)?", s) else None


@functools.cache
def _native_format(model: str) -> str:
    """Format of a catalog model's released weights (``native_quantization``)."""
    return load_catalog().model(model).native_quantization


def _formats(precision: str, family_hint: str) -> tuple[str, str] | None:
    p = precision.lower()
    if "not stated" in p:
        return None
    if "nvfp4" in p:
        w = "nvfp4"
    elif "fp4" in p:
        w = "mxfp4"
    elif "fp8" in p:
        w = "fp8"
    elif "fp16" in p:
        w = "fp16"
    elif "bf16" in p:
        w = "bf16"
    else:
        return None
    if "fp8 kv" in p or "fp8 w/a" in p:
        kv = "fp8"
    elif "fp16 kv" in p:
        kv = "fp16"
    elif w in ("fp16", "bf16"):
        kv = w
    elif "auto" in p or "weights" in p:
        kv = "bf16"  # engine default: the model's activation dtype
    else:
        kv = "fp8"  # ModelOpt FP8/NVFP4 checkpoints (trtllm-bench v0.19+ rows) quantise the KV cache to FP8
    return w, kv


def map_row(i: int, r: dict[str, str]) -> Case | str:
    """A Case for a row the catalogs cover, else the reason it is skipped."""
    metric = r["metric"]
    if metric.startswith("constraint_"):
        return "benchmark rule, not a measurement"
    scen = r["scenario"].lower()
    if "disagg" in scen or "prefill-only" in scen or "decode-only" in scen:
        return "prefill/decode disaggregation: not modelled (colocated continuous batching only)"
    if "mtp" in scen:
        return "speculative decoding (MTP): not modelled"
    if metric not in THROUGHPUT | LATENCY:
        return f"metric {metric} not produced by estimate"
    model = MODELS.get(r["model"].lower())
    if model is None:
        return f"model {r['model']} not in the catalog"
    gpu = next((g for pat, g in GPUS if re.search(pat, r["gpu"].lower())), None)
    if gpu is None:
        return f"GPU {r['gpu']!r} not stated or not in the catalog"
    isl, osl = _num(r["isl"]), _num(r["osl"])
    if not isl or not osl:
        return "ISL/OSL not stated"
    fmt = _formats(r["precision"], gpu)
    if fmt is None:
        return f"precision {r['precision']!r} not stated"
    if "as labelled" in r["precision"].lower():
        fmt = (_native_format(model), fmt[1])  # the released checkpoint's format
    if (model.startswith("gpt-oss") and "perf-overview.md" in r["source"]
            and gpu in ("h100-sxm", "h200-sxm")):
        fmt = (fmt[0], "bf16")  # the overview's GPT-OSS llm_options: KV "fp8  # Hopper: use auto"
    n = _num(r["num_gpus"]) or 1
    tp, pp, ep = _num(r["tp"]), _num(r["pp"]) or 1, _num(r["ep"]) or 1
    text = (scen + " " + r["notes"]).lower()
    if "attention dp" in text or re.search(r"\bdep\d", text):
        tp, ep = 1, n  # attention data-parallel + expert parallel over all GPUs
    tp = tp or n
    if "qps=inf" in scen:
        if metric.startswith("ttft"):
            return "TTFT of a 500-request burst is queueing, not modelled by estimate (no queueing)"
        conc = "burst:500"
    elif (m := re.search(r"qps=([\d.]+)", scen)):
        if metric.startswith("output_tokens"):
            return "throughput at a fixed offered load equals the load; says nothing about the model"
        conc = f"qps:{m.group(1)}"
    elif (m := re.search(r"(?:batch|concurrency)=(\d+)\b", scen)):
        conc = f"n:{m.group(1)}"
    elif "offline" in scen:
        conc = "max"
        req = PERF_OVERVIEW_REQUESTS.get((isl, osl))
        if "perf-overview.md" in r["source"] and "pytorch backend" in r["notes"].lower() and req:
            conc = f"max:{req}"
    else:
        return f"scenario {r['scenario']!r} not mapped"
    shape = Shape(model, gpu, None, fmt[0], fmt[1], tp=tp, pp=pp, ep=ep)
    label = (
        f"{r['engine'].split(' (')[0][:12]} {model} {n}x{gpu} tp{tp}" + (f" ep{ep}" if ep > 1 else "")
        + f" {fmt[0]}/{fmt[1]} {isl}/{osl} {scen[:22]}"
    )
    return Case(i, label, shape, isl, osl, conc, metric, float(r["value"]), r["engine"])


def load_cases(path: Path, group: str = "refdata") -> tuple[list[Case], list[tuple[str, str, str]]]:
    cases: list[Case] = []
    skipped: list[tuple[str, str, str]] = []
    prefix = "v" if group == "vendor" else ""
    with open(path, newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            got = map_row(i, r)
            if isinstance(got, Case):
                cases.append(replace(got, group=group))
            else:
                skipped.append((f"{prefix}{i}", f"{r['model']} {r['gpu']} {r['metric']}", got))
    return cases, skipped


PERF_OVERVIEW_REQUESTS = {(1024, 1024): 3000, (8192, 1024): 1500, (1024, 8192): 1500,
                          (32768, 1024): 1000, (1024, 32768): 1000}
"""``--num-requests`` per ISL/OSL in the perf overview's "Preparing a Dataset" table."""


def engine_id(engine: str) -> str:
    """The ``catalogs/engines.yaml`` profile of a row's engine column (vLLM, SGLang, TensorRT-LLM)."""
    e = engine.lower()
    if e.startswith("tensorrt-llm") or e.startswith("trt"):
        return "tensorrt-llm"
    if e.startswith("sglang"):
        return "sglang"
    return "vllm"


def predict(terms: ShapeTerms, c: Case) -> float:
    """The model's value of ``c.metric`` for one case."""
    kind, _, arg = c.concurrency.partition(":")
    cap = estimate_terms(terms, c.isl, c.osl, "max").max_concurrency
    if cap < 1:
        raise InputError("does not fit in memory")
    b = case_batch(terms, c)
    e = estimate_terms(terms, c.isl, c.osl, b)
    if kind == "burst" and c.metric == "itl_ms_mean":
        # all prompts arrive together and are prefilled before decoding: ITL is a pure decode step
        return float(decode_step_ms(terms, b, c.isl + c.osl / 2))
    return {
        "output_tokens_per_s_total": e.output_tokens_per_s,
        "output_tokens_per_s_per_gpu": e.output_tokens_per_s_per_gpu,
        "ttft_ms": e.ttft_ms,
        "ttft_ms_mean": e.ttft_ms,
        "itl_ms_mean": e.tpot_ms,
    }[c.metric]


FACTORS = ("eta_bw", "stream_kernel_us", "mfu_prefill", "mfu_decode", "moe_layer_fixed_us",
           "mixed_input_gemm_efficiency", "block_scaled_gemm_efficiency", "host_overhead_graph_ms", "host_overhead_eager_ms", "request_overhead_ms")
ENGINE_FACTORS = ("host_overhead_graph_ms", "host_overhead_eager_ms", "request_overhead_ms")
# Search ranges: physically plausible values only. HBM copy kernels reach 85-92 % of the
# datasheet bandwidth on A100/H100 (so eta_bw <= 0.90); a kernel's launch, fill and drain cost
# a few us (<= 10 us); dense GEMM MFU stays below ~0.8; a MoE layer's 5-6 kernels (routing, permute,
# two grouped GEMMs, un-permute) cost at most ~5 us each beyond their roofline under CUDA graphs
# (<= 30 us together: DeepSeek-V3's 58 MoE layers would otherwise exceed the 6-8 ms whole decode
# step issue 8 traced at batch 1); a step's host time is at most a few ms, a graph replay less.
GRID = {
    "eta_bw": np.round(np.arange(0.60, 0.901, 0.025), 3),
    "stream_kernel_us": np.round(np.arange(0.0, 10.01, 0.5), 2),
    "mfu_prefill": np.round(np.arange(0.20, 0.801, 0.025), 3),
    "mfu_decode": np.round(np.arange(0.10, 0.801, 0.025), 3),
    "moe_layer_fixed_us": np.round(np.arange(0.0, 30.01, 1.0), 1),
    # a mixed-input GEMM (weights dequantised in the main loop) reaches at most the native rate
    "mixed_input_gemm_efficiency": np.round(np.arange(0.30, 1.001, 0.05), 2),
    # a block-scaled FP8 GEMM applies its scales in the main loop: at most the per-tensor rate
    "block_scaled_gemm_efficiency": np.round(np.arange(0.30, 1.001, 0.05), 2),
    "host_overhead_graph_ms": np.round(np.arange(0.0, 2.01, 0.1), 2),
    "host_overhead_eager_ms": np.round(np.arange(0.0, 6.01, 0.25), 2),
    # a request's admission, tokenisation and first-token return: a few ms at most
    "request_overhead_ms": np.round(np.arange(0.0, 20.01, 1.0), 1),
}


def _log_err(terms_list: list[ShapeTerms], cases: list[Case], f: dict[str, float]) -> float:
    errs = [abs(math.log(predict(with_efficiency(t, **f), c) / c.measured)) for t, c in zip(terms_list, cases)]
    return float(np.mean(errs))


def fit(terms_list: list[ShapeTerms], cases: list[Case], start: dict[str, float]) -> dict[str, float]:
    """Coordinate descent over GRID on the mean |log error| of the given cases."""
    f = dict(start)
    best = _log_err(terms_list, cases, f)
    for _ in range(4):
        improved = False
        for name in FACTORS:
            for v in GRID[name]:
                trial = f | {name: float(v)}
                err = _log_err(terms_list, cases, trial)
                if err < best - 1e-9:
                    best, f, improved = err, trial, True
        if not improved:
            break
    return f


def mape(rows: list[tuple[Case, float]]) -> float:
    return 100.0 * float(np.mean([abs(p - c.measured) / c.measured for c, p in rows])) if rows else float("nan")


def report(title: str, results: list[tuple[Case, float]]) -> None:
    print(f"\n{title}")
    print(f"{'row':>4} {'split':7} {'reference':76} {'metric':28} {'predicted':>10} {'measured':>10} {'error':>7}")
    for c, p in results:
        err = 100 * (p - c.measured) / c.measured
        flag = "  <-- off by >2x" if max(p / c.measured, c.measured / p) > 2 else ""
        print(f"{c.tag:>4} {c.split:7} {c.label:76} {c.metric:28} {p:>10.1f} {c.measured:>10.1f} {err:>+6.0f}%{flag}")
    print("\nMAPE (mean absolute percentage error)")
    print(f"  {'group':12} {'fit':>14} {'holdout':>14} {'all':>14}")
    ref = lambda c: c.group == "refdata"  # noqa: E731
    groups = {
        "throughput": lambda c: ref(c) and c.metric in THROUGHPUT,
        "  dense": lambda c: ref(c) and c.metric in THROUGHPUT and c.shape.model not in MOE_MODELS,
        "  MoE": lambda c: ref(c) and c.metric in THROUGHPUT and c.shape.model in MOE_MODELS,
        "ttft": lambda c: ref(c) and c.metric.startswith("ttft"),
        "itl/tpot": lambda c: ref(c) and c.metric == "itl_ms_mean",
        "overall": ref,
        "vendor": lambda c: c.group == "vendor",
    }
    for name, sel in groups.items():
        if not any(sel(c) for c, _ in results):
            continue
        cells = []
        for split in ("fit", "holdout", None):
            rows = [(c, p) for c, p in results if sel(c) and (split is None or c.split == split)]
            cells.append(f"{mape(rows):6.1f}% (n={len(rows):>2})" if rows else f"{'-':>14}")
        print(f"  {name:12} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}")
    worst_dense = [cp for cp in results if cp[0].shape.model not in MOE_MODELS]
    far = [cp for cp in results if max(cp[1] / cp[0].measured, cp[0].measured / cp[1]) > 2]
    print(f"  points off by more than 2x: {len(far)} (rows {', '.join(c.tag for c, _ in far) or '-'})")

    def off(cp: tuple[Case, float]) -> float:
        return max(cp[1] / cp[0].measured, cp[0].measured / cp[1])

    w = max(worst_dense, key=off)
    print(f"  largest ratio, dense models: {off(w):.2f}x (row {w[0].tag})")
    for name, rows in (("refdata", [cp for cp in results if ref(cp[0])]),
                       ("refdata holdout", [cp for cp in results if ref(cp[0]) and cp[0].split == "holdout"]),
                       ("vendor", [cp for cp in results if cp[0].group == "vendor"])):
        if rows:
            worst = max(rows, key=off)
            print(f"  largest ratio, {name}: {off(worst):.2f}x (row {worst[0].tag}, {worst[0].metric})")


def error_bands(results: list[tuple[Case, float]], cat: Catalog) -> dict[tuple[str, str], tuple[float, int]]:
    """MAPE (%) and row count by regime (accelerator family or ``any``, ``dense``/``moe``) over
    every compared row (refdata and vendor, all metrics): the uncalibrated error bands of
    catalogs/error_bands.yaml."""
    groups: dict[tuple[str, str], list[tuple[Case, float]]] = {}
    for c, p in results:
        kind = "moe" if cat.model(c.shape.model).moe is not None else "dense"
        fam = cat.accelerator(c.shape.accelerator).family
        for key in ((fam, kind), ("any", kind)):
            groups.setdefault(key, []).append((c, p))
    return {k: (round(mape(v), 1), len(v)) for k, v in sorted(groups.items())}


SMALL_BATCH_MAX = 16
"""Largest batch of the ``small`` batch regime: up to ~16 sequences a decode step is weight-read
bound on every catalog accelerator (the step time barely moves with batch), above it the KV reads
and the GEMMs grow with batch -- two regimes whose errors differ."""
REGIME_MIN_ROWS = 5
"""Fewest compared rows a regime's band may rest on; a thinner regime takes its parent's band
(:data:`REGIME_PARENTS` order) -- a MAPE over 1-4 rows says little about the next row."""


def format_regime(cat: Catalog, quant: str) -> str:
    """Weight-format regime of a format id: ``16-bit`` (bf16/fp16), ``8-bit`` (fp8/int8) or
    ``4-bit`` (nvfp4/mxfp4/w4a16), by the catalog's ``weight_bits``."""
    return f"{cat.quantization(quant).weight_bits}-bit"


def batch_regime(batch: int) -> str:
    """``small`` (<= SMALL_BATCH_MAX sequences in a step) or ``large``."""
    return "small" if batch <= SMALL_BATCH_MAX else "large"


def case_batch(terms: ShapeTerms, c: Case) -> int:
    """The batch :func:`predict` evaluates ``c`` at: the stated batch or concurrency within what
    memory holds, or a Poisson load's Little's-law fixed point."""
    kind, _, arg = c.concurrency.partition(":")
    cap = estimate_terms(terms, c.isl, c.osl, "max").max_concurrency
    if kind == "max":
        return int(min(cap, TRTLLM_BENCH_MAX_BATCH // terms.pp, int(arg) if arg else cap))
    if kind in ("n", "burst"):
        return int(min(int(arg), cap))
    qps, b = float(arg), 1
    for _ in range(20):
        e = estimate_terms(terms, c.isl, c.osl, b)
        nb = max(1, min(cap, round(qps * (e.ttft_ms + (c.osl - 1) * e.tpot_ms) / 1e3)))
        if nb == b:
            break
        b = nb
    return int(b)


REGIME_PARENTS = (
    ("family", "kind", "format", "batch"), ("family", "kind", "format", None),
    ("family", "kind", None, "batch"), ("family", "kind", None, None),
    (None, "kind", "format", "batch"), (None, "kind", "format", None),
    (None, "kind", None, "batch"), (None, "kind", None, None),
)
"""Lookup order of a regime's band, narrowest first; ``None`` pools that axis (``any``). The
first regime with at least REGIME_MIN_ROWS rows gives the band (solver/uncertainty.py)."""


def regime_bands(results: list[tuple[Case, float]], terms_list: list[ShapeTerms], cat: Catalog
                 ) -> dict[tuple[str, str, str, str], tuple[float, int]]:
    """MAPE (%) and row count by (accelerator family, dense/moe, weight-format regime, batch
    regime), every axis also pooled as ``any``, over every compared row (refdata and vendor, all
    metrics): catalogs/error_bands.yaml's ``regimes`` table. ``terms_list[i]`` is the terms of
    ``results[i]``'s case (for its batch)."""
    groups: dict[tuple[str, str, str, str], list[tuple[Case, float]]] = {}
    for (c, p), t in zip(results, terms_list):
        axes = {"family": cat.accelerator(c.shape.accelerator).family,
                "kind": "moe" if cat.model(c.shape.model).moe is not None else "dense",
                "format": format_regime(cat, c.shape.quant), "batch": batch_regime(case_batch(t, c))}
        for keys in REGIME_PARENTS:
            key = tuple(axes[a] if a in keys else "any" for a in ("family", "kind", "format", "batch"))
            groups.setdefault(key, []).append((c, p))  # type: ignore[arg-type]
    return {k: (round(mape(v), 1), len(v)) for k, v in sorted(groups.items())}


def compared(cat: Catalog, csv_path: Path = DEFAULT_CSV, vendor_csv: Path = VENDOR_CSV
             ) -> tuple[list[ShapeTerms], list[Case], list[tuple[str, str, str]]]:
    """The rows the cost model can predict (their terms, the cases) and the skipped ones."""
    cases, skipped = load_cases(csv_path)
    if vendor_csv.exists():
        v_cases, v_skipped = load_cases(vendor_csv, "vendor")
        cases, skipped = cases + v_cases, skipped + v_skipped
    terms_list: list[ShapeTerms] = []
    usable: list[Case] = []
    for c in cases:
        try:
            t = shape_terms(cat, c.shape, engine_id(c.engine))
            predict(t, c)
        except InputError as exc:
            skipped.append((c.tag, c.label, f"estimate refuses it: {exc}"))
            continue
        terms_list.append(t)
        usable.append(c)
    return terms_list, usable, skipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--fit", action="store_true", help="refit the shared efficiency factors on the fit half")
    ap.add_argument("--vendor-csv", type=Path, default=VENDOR_CSV,
                    help="AMD/Intel measurements, read when the file exists (own group, not fitted)")
    args = ap.parse_args(argv)
    cat: Catalog = load_catalog()
    terms_list, usable, skipped = compared(cat, args.csv, args.vendor_csv)
    print(f"measured rows: {len(usable) + len(skipped)}; "
          f"compared: {len(usable)}; skipped: {len(skipped)}")
    print("split: fit = even row numbers (0-based), holdout = odd row numbers")
    results = [(c, predict(t, c)) for t, c in zip(terms_list, usable)]
    report("With the catalog's efficiency factors (catalogs/efficiency.yaml)", results)
    print("\nError bands by regime (MAPE of every compared row; catalogs/error_bands.yaml copies these)")
    for (fam, kind), (err, n) in error_bands(results, cat).items():
        print(f"  {fam:16} {kind:6} {err:6.1f}% (n={n:>2})")
    print("\nError bands by regime, split by format and batch (catalogs/error_bands.yaml `regimes:`"
          " copies these rows)")
    for (fam, kind, fmt_, batch), (err, n) in regime_bands(results, terms_list, cat).items():
        print(f"  - {{family: {fam}, kind: {kind}, format: {fmt_}, batch: {batch}, mape_pct: {err}, rows: {n}}}")
    if args.fit:
        fam = {t.family for t in terms_list}
        eff0 = cat.efficiency_for("h100-sxm")
        eng0 = cat.engine("tensorrt-llm")
        start = {k: float(getattr(eng0 if k in ENGINE_FACTORS else eff0, k)) for k in FACTORS}
        idx = [i for i, c in enumerate(usable) if c.split == "fit" and c.group == "refdata"]
        f = fit([terms_list[i] for i in idx], [usable[i] for i in idx], start)
        print(f"\nFitted on {len(idx)} fit rows (families {', '.join(sorted(fam))}), shared by all families:")
        print("  " + ", ".join(f"{k}={v:g}" for k, v in f.items()))
        fitted = [(c, predict(with_efficiency(t, **f), c)) for t, c in zip(terms_list, usable)]
        report("With the fitted factors (error on the holdout rows is out-of-sample)", fitted)
    print("\nSkipped rows:")
    for row, what, why in sorted(skipped, key=lambda s: (s[0].startswith("v"), int(s[0].lstrip("v")))):
        print(f"  {row:>4} {what[:60]:60} {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
