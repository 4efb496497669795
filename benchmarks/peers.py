"""fleetplan's cost model against a peer model: NVIDIA's AIConfigurator (AIC).

Usage::

    python benchmarks/peers.py --aic-venv /work/aic-venv   # run AIC, refresh the cache, compare
    python benchmarks/peers.py --from-cache                # compare with the committed AIC outputs

Set up AIC once, outside the repository (CPU only, ~850 MB, runs offline; never a dependency of
fleetplan, never in CI, never imported by tests)::

    python3 -m venv /work/aic-venv && /work/aic-venv/bin/pip install aiconfigurator

AIC (https://github.com/ai-dynamo/aiconfigurator) predicts TTFT, TPOT and throughput from kernel
timings measured on H100/H200/B200 with TensorRT-LLM. It is itself a model: this benchmark uses
it to find structural errors of fleetplan's cost model, never to fit factors (those are fitted
to measurements only, ``benchmarks/accuracy.py``).

The grid: Llama-3.1-8B/70B, Qwen3-32B (dense); Qwen3-30B-A3B, Qwen3-235B-A22B, DeepSeek-V3
(MoE); bf16 and fp8 weights (KV cache in the same dtype); TP 1/2/4/8; batch 1/16/64/256;
ISL/OSL 1024/256 and 4000/1000; dense on H100/H200/B200, MoE on H200/B200 with the experts
tensor-parallel (``moe_tp = tp``), expert-parallel (``moe_ep = tp``) or with attention
data-parallel over all GPUs and experts expert-parallel (DEP, ``tp = 1``, ``ep = gpus``). In a
DEP row ``batch`` is per attention rank (AIC's convention); the replica runs ``batch x gpus``
sequences. Both tools run AIC's aggregated mode (in-flight batching, prefill chunks mixed into
decode steps) at that fixed concurrency; fleetplan's ``estimate`` is called on the same shape.
Points whose weights do not fit in the GPUs' memory are left out before running either tool.

Printed: the share of points within +-25 % on output tokens/s per GPU by regime (dense / MoE,
batch, TP, expert layout), median ratios fleetplan / AIC of tokens/s/GPU, TPOT and TTFT, the
largest differences, and the SLO-capacity scenarios side by side (fleetplan ``capacity`` vs
AIC's best aggregated configuration). Written: ``benchmarks/results/aic_grid.csv`` (AIC's
outputs with its version, committed: ``--from-cache`` reprints without the venv),
``benchmarks/results/aic_slo.csv`` and ``benchmarks/results/peers_grid.csv`` (one row per point,
both tools, fleetplan's decode-step breakdown, ratios).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
AIC_GRID = RESULTS / "aic_grid.csv"
AIC_SLO = RESULTS / "aic_slo.csv"
AIC_RAW = RESULTS / "aic_grid.raw.csv"
"""The driver's rows while a run is in progress (resumed by the next run, removed at the end)."""
PEERS_GRID = RESULTS / "peers_grid.csv"
DRIVER = REPO / "benchmarks" / "aic_driver.py"
TOLERANCE = 0.25
"""A point agrees when fleetplan / AIC tokens/s/GPU lies within 1 +- 0.25."""

AIC_MODELS = {
    "llama-3.1-8b": "meta-llama/Meta-Llama-3.1-8B", "llama-3.1-70b": "meta-llama/Meta-Llama-3.1-70B",
    "qwen3-32b": "Qwen/Qwen3-32B", "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B", "deepseek-v3": "deepseek-ai/DeepSeek-V3",
}
DENSE = ("llama-3.1-8b", "llama-3.1-70b", "qwen3-32b")
MOE = ("qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3")
MLA = {"deepseek-v3"}
AIC_SYSTEMS = {"h100-sxm": "h100_sxm", "h200-sxm": "h200_sxm", "b200": "b200_sxm"}
QUANTS = ("bf16", "fp8")
TPS = (1, 2, 4, 8)
BATCHES = (1, 16, 64, 256)
LENGTHS = ((1024, 256), (4000, 1000))
SLO_SCENARIOS = (
    # (model, accelerator, gpus, isl, osl, ttft_ms, tpot_ms): issue 8's scenarios
    ("deepseek-v3", "h200-sxm", 8, 4000, 1000, 2000.0, 50.0),
    ("qwen3-235b-a22b", "h200-sxm", 8, 4000, 1000, 2000.0, 50.0),
    ("qwen3-30b-a3b", "h200-sxm", 8, 4000, 1000, 2000.0, 50.0),
)


@dataclass(frozen=True)
class Point:
    """One grid configuration, in both tools' terms."""

    model: str
    gpu: str
    quant: str
    tp: int          # attention tensor parallelism (AIC tp_size)
    attn_dp: int     # attention data-parallel ranks (AIC attention_dp_size)
    moe_tp: int      # expert tensor parallelism (AIC moe_tp_size); 1 for dense
    moe_ep: int      # expert parallelism (AIC moe_ep_size); 1 for dense
    batch: int       # sequences per attention rank (AIC batch_size)
    isl: int
    osl: int

    @property
    def key(self) -> str:
        return (f"{self.model}|{self.gpu}|{self.quant}|tp{self.tp}|dp{self.attn_dp}|mtp{self.moe_tp}"
                f"|ep{self.moe_ep}|b{self.batch}|{self.isl}/{self.osl}")

    @property
    def gpus(self) -> int:
        return self.tp * self.attn_dp

    @property
    def concurrency(self) -> int:
        """Sequences in flight in the replica."""
        return self.batch * self.attn_dp

    @property
    def moe(self) -> bool:
        return self.model in MOE

    @property
    def layout(self) -> str:
        """Expert layout: dense, expert-TP, EP, or DEP (attention DP + EP)."""
        if not self.moe:
            return "dense"
        if self.attn_dp > 1:
            return "DEP"
        return "EP" if self.moe_ep > 1 else "expert-TP"

    @property
    def fleetplan_tp_ep(self) -> tuple[int, int]:
        """fleetplan's (tp, ep): ep > tp means ep / tp attention data-parallel copies."""
        return self.tp, self.moe_ep

    def job(self) -> dict:
        return dict(key=self.key, aic_model=AIC_MODELS[self.model], aic_system=AIC_SYSTEMS[self.gpu],
                    quant=self.quant, isl=self.isl, osl=self.osl, batch=self.batch, tp=self.tp,
                    attn_dp=self.attn_dp, moe_tp=self.moe_tp, moe_ep=self.moe_ep, moe=self.moe,
                    mla=self.model in MLA)


def grid() -> list[Point]:
    """Every configuration of the comparison, in a fixed order (before the memory filter)."""
    pts: list[Point] = []
    for model in DENSE + MOE:
        gpus = ("h100-sxm", "h200-sxm", "b200") if model in DENSE else ("h200-sxm", "b200")
        layouts: list[tuple[int, int, int, int]] = []  # (tp, attn_dp, moe_tp, moe_ep)
        if model in DENSE:
            layouts = [(t, 1, 1, 1) for t in TPS]
        else:
            layouts = [(t, 1, t, 1) for t in TPS] + [(t, 1, 1, t) for t in (4, 8)] + [(1, 8, 1, 8)]
        for gpu in gpus:
            for quant in QUANTS:
                for tp, dp, mtp, ep in layouts:
                    for isl, osl in LENGTHS:
                        for b in BATCHES:
                            pts.append(Point(model, gpu, quant, tp, dp, mtp, ep, b, isl, osl))
    return pts


# -- fleetplan side -----------------------------------------------------------------------------

def fleetplan_point(p: Point) -> dict:
    """fleetplan's estimate of one point: tokens/s/GPU, TPOT, TTFT, fit and step breakdown."""
    from solver.catalog import load_catalog
    from solver.costmodel import Shape, estimate
    from solver.errors import InputError

    tp, ep = p.fleetplan_tp_ep
    shape = Shape(p.model, p.gpu, None, p.quant, "bf16" if p.quant == "bf16" else "fp8", tp=tp, pp=1, ep=ep)
    try:
        e = estimate(_catalog(load_catalog), shape, p.isl, p.osl, p.concurrency)
    except InputError as exc:
        return {"fp_error": str(exc)}
    return {
        "fp_fits": e.fits, "fp_reason": e.reason or "", "fp_weights_gib_gpu": e.weights_gib_per_gpu,
        "fp_hbm_gib_gpu": e.hbm_gib_per_gpu, "fp_tok_s_gpu": e.output_tokens_per_s_per_gpu,
        "fp_tpot_ms": e.tpot_ms, "fp_ttft_ms": e.ttft_ms, "fp_mem_ms": e.decode_memory_ms,
        "fp_compute_ms": e.decode_compute_ms, "fp_comm_ms": e.decode_comm_ms,
        "fp_overhead_ms": e.decode_overhead_ms, "fp_bound": e.bound,
    }


_CAT: list = []


def _catalog(loader: Callable[[], object]) -> object:
    if not _CAT:
        _CAT.append(loader())
    return _CAT[0]


def weights_fit(fp: dict) -> bool:
    """The weights leave room in HBM (both tools refuse the point otherwise)."""
    return "fp_error" not in fp and fp["fp_weights_gib_gpu"] < 0.95 * fp["fp_hbm_gib_gpu"]


def fleetplan_capacity(model: str, gpu: str, gpus: int, isl: int, osl: int, ttft: float, tpot: float,
                       quants: Sequence[str] | None = None) -> dict:
    """``fleetplan capacity`` for one scenario (p99 targets, Poisson arrivals), any format or ``quants``."""
    from solver import api
    from solver.catalog import load_catalog

    cat = _catalog(load_catalog)
    problem = api.single_model_problem(model=model, rps=1.0, isl=isl, osl=osl, ttft_p99_ms=ttft, tpot_p99_ms=tpot,
                                       gpus=[gpu], quants=list(quants) if quants else None, cat=cat)
    ans = api.capacity(problem, cat, gpus)
    deps = ans.deployments
    desc = "; ".join(f"{d['replicas']}x {d['quant']} tp{d['tp']} ep{d['ep']} batch<={d['max_batch']} "
                     f"(p99 TTFT {d['ttft_p99_ms']:.0f} ms, TPOT {d['tpot_p99_ms']:.1f} ms)" for d in deps)
    return {"tok_s_gpu": ans.output_tokens_per_s_per_gpu, "config": desc or ans.status.value}


# -- AIC side -----------------------------------------------------------------------------------

def run_aic(venv: Path, mode: str, jobs: list[dict], out: Path) -> None:
    """Run the driver under the AIC venv's python; rows land in ``out`` (resumable)."""
    py = venv / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(jobs, fh)
    try:
        subprocess.run([str(py), str(DRIVER), mode, fh.name, str(out)], check=True,
                       env=os.environ | {"AICONFIGURATOR_LOG_LEVEL": "ERROR"})
    finally:
        os.unlink(fh.name)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: Sequence[dict], fields: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in fields})


def _fmt(v: object) -> object:
    return f"{v:.4g}" if isinstance(v, float) else v


# -- comparison (pure functions over rows) ------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive."""
    if a is None or b is None or not b > 0 or math.isnan(a):
        return None
    return a / b


def within(r: float | None, tol: float = TOLERANCE) -> bool:
    return r is not None and abs(r - 1.0) <= tol


def summarize(rows: Iterable[dict], group: Callable[[dict], str]) -> list[dict]:
    """Per group: points, share of tokens/s/GPU ratios within +-TOLERANCE, median ratios.

    Each row carries ``r_tok`` (fleetplan / AIC tokens/s/GPU), ``r_tpot`` and ``r_ttft``.
    Groups come out sorted by name; a final ``all`` group covers every row.
    """
    buckets: dict[str, list[dict]] = {}
    rows = list(rows)
    for r in rows:
        buckets.setdefault(group(r), []).append(r)
    out = []
    for name in sorted(buckets, key=_natural) + ["all"]:
        rs = rows if name == "all" else buckets[name]
        tok = [r["r_tok"] for r in rs if r.get("r_tok") is not None]
        out.append({
            "group": name, "n": len(rs),
            "within": sum(within(x) for x in tok) / len(tok) if tok else float("nan"),
            "med_tok": _median([r.get("r_tok") for r in rs]),
            "med_tpot": _median([r.get("r_tpot") for r in rs]),
            "med_ttft": _median([r.get("r_ttft") for r in rs]),
        })
    return out


def _median(xs: Iterable[float | None]) -> float:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else float("nan")


def _natural(s: str) -> tuple:
    """Sort 'b16' after 'b1' and before 'b256' (numbers by value)."""
    import re
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def compare(points: Sequence[Point], aic: dict[str, dict[str, str]], fp: dict[str, dict]) -> list[dict]:
    """One row per point both tools estimated (fleetplan fits, AIC returned numbers)."""
    rows = []
    for p in points:
        a, f = aic.get(p.key), fp.get(p.key)
        if not a or not f or a.get("error") or "fp_error" in f or not f.get("fp_fits"):
            continue
        a_tok, a_tpot, a_ttft = (float(a[k]) for k in ("tokens_s_gpu", "tpot_ms", "ttft_ms"))
        rows.append({
            "key": p.key, "model": p.model, "gpu": p.gpu, "quant": p.quant, "tp": p.tp,
            "attn_dp": p.attn_dp, "moe_tp": p.moe_tp, "moe_ep": p.moe_ep, "batch": p.batch,
            "concurrency": p.concurrency, "isl": p.isl, "osl": p.osl, "gpus": p.gpus,
            "kind": "MoE" if p.moe else "dense", "layout": p.layout,
            "aic_tok_s_gpu": a_tok, "aic_tpot_ms": a_tpot, "aic_ttft_ms": a_ttft,
            "aic_kv_warning": a.get("kv_cache_warning", ""), **f,
            "fp_rest_ms": step_rest(f),
            "r_tok": ratio(f["fp_tok_s_gpu"], a_tok), "r_tpot": ratio(f["fp_tpot_ms"], a_tpot),
            "r_ttft": ratio(f["fp_ttft_ms"], a_ttft),
        })
    return rows


def step_breakdown(rows: Iterable[dict], group: Callable[[dict], str]) -> list[dict]:
    """Per group: median AIC TPOT and median fleetplan TPOT with its decode-step terms (ms), so a
    gap can be read against the term that makes it (memory, compute, comm, fixed overhead)."""
    buckets: dict[str, list[dict]] = {}
    for r in rows:
        buckets.setdefault(group(r), []).append(r)
    keys = ("aic_tpot_ms", "fp_tpot_ms", "fp_mem_ms", "fp_compute_ms", "fp_comm_ms", "fp_overhead_ms", "fp_rest_ms")
    return [{"group": g, "n": len(buckets[g]), **{k: _median([r.get(k) for r in buckets[g]]) for k in keys}}
            for g in sorted(buckets, key=_natural)]


def step_rest(f: dict) -> float | None:
    """fleetplan's TPOT minus its printed decode-step terms (ms): positive for work the breakdown does
    not show (fixed time per expert GEMM, amortised prompt tokens; issue 8, item 7), negative where
    the step overlaps memory and compute time."""
    terms = [f.get(k) for k in ("fp_mem_ms", "fp_compute_ms", "fp_comm_ms", "fp_overhead_ms")]
    if f.get("fp_tpot_ms") is None or any(t is None for t in terms):
        return None
    return f["fp_tpot_ms"] - sum(terms)


def largest_differences(rows: Sequence[dict], n: int = 8) -> list[dict]:
    """The ``n`` rows whose tokens/s/GPU ratio is furthest from 1 (either side), in log terms."""
    scored = [r for r in rows if r.get("r_tok")]
    return sorted(scored, key=lambda r: (-abs(math.log(r["r_tok"])), r["key"]))[:n]


# -- report -------------------------------------------------------------------------------------

def print_summary(title: str, summary: list[dict]) -> None:
    print(f"\n{title}")
    print(f"  {'regime':24} {'points':>6} {'within 25%':>10} {'tok/s/GPU':>10} {'TPOT':>7} {'TTFT':>7}")
    for s in summary:
        print(f"  {s['group']:24} {s['n']:>6} {100 * s['within']:>9.1f}% {s['med_tok']:>10.2f} "
              f"{s['med_tpot']:>7.2f} {s['med_ttft']:>7.2f}")


def report(rows: list[dict], n_grid: int, n_skipped_weights: int, aic_version: str) -> None:
    print(f"AIConfigurator {aic_version} (TensorRT-LLM database, aggregated mode) vs fleetplan estimate")
    print(f"grid: {n_grid} configurations; {n_skipped_weights} left out (weights do not fit); "
          f"compared: {len(rows)} (both tools estimate it and fleetplan's memory model fits it)")
    print("ratios are fleetplan / AIC; medians over the group; 'within 25%' is on tokens/s/GPU")
    kind = lambda r: r["kind"]  # noqa: E731
    print_summary("By kind", summarize(rows, kind))
    for name, sel in (("dense", "dense"), ("MoE", "MoE")):
        sub = [r for r in rows if r["kind"] == sel]
        if not sub:
            continue
        print_summary(f"{name} by batch (sequences per attention rank)", summarize(sub, lambda r: f"b{r['batch']}"))
        print_summary(f"{name} by TP (attention)", summarize(sub, lambda r: f"tp{r['tp']}"))
        print_summary(f"{name} by model", summarize(sub, lambda r: r["model"]))
    moe = [r for r in rows if r["kind"] == "MoE"]
    if moe:
        print_summary("MoE by expert layout", summarize(moe, lambda r: r["layout"]))
    print_summary("by GPU", summarize(rows, lambda r: r["gpu"]))
    print_summary("by ISL/OSL", summarize(rows, lambda r: f"{r['isl']}/{r['osl']}"))
    regime = lambda r: f"{r['layout']} b{r['batch']}"  # noqa: E731
    print("\nDecode step by regime (medians, ms): AIC TPOT vs fleetplan TPOT = memory + compute + comm + overhead")
    print("  + rest: TPOT minus those four terms -- positive where TPOT holds work the breakdown does not show")
    print("  (fixed time per expert GEMM, amortised prompt tokens), negative where memory and compute overlap")
    print(f"  {'regime':18} {'points':>6} {'AIC':>7} {'fleetplan':>9} {'memory':>7} {'compute':>7} {'comm':>6} "
          f"{'overhead':>8} {'rest':>7}")
    for b in step_breakdown(rows, regime):
        print(f"  {b['group']:18} {b['n']:>6} {b['aic_tpot_ms']:>7.2f} {b['fp_tpot_ms']:>9.2f} {b['fp_mem_ms']:>7.2f} "
              f"{b['fp_compute_ms']:>7.2f} {b['fp_comm_ms']:>6.2f} {b['fp_overhead_ms']:>8.2f} {b['fp_rest_ms']:>7.2f}")
    print("\nLargest differences per regime (tokens/s/GPU, fleetplan / AIC):")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(regime(r), []).append(r)
    for g in sorted(groups, key=_natural):
        for r in largest_differences(groups[g], 2):
            print(f"  {r['key']:60} {r['r_tok']:6.2f}x  TPOT {r['fp_tpot_ms']:7.1f} vs {r['aic_tpot_ms']:7.1f} ms"
                  f"  (fleetplan: mem {r['fp_mem_ms']:.1f} + compute {r['fp_compute_ms']:.1f}"
                  f" + comm {r['fp_comm_ms']:.1f} + overhead {r['fp_overhead_ms']:.1f} + rest {r['fp_rest_ms']:.1f})")


def aic_config(a: dict[str, str]) -> tuple[int, int, int, str, str, int] | None:
    """fleetplan's (tp, ep, moe_tp, quant, kv_dtype, concurrency) for AIC's chosen aggregated
    configuration (``moe_tp`` 0: derived; set for expert TP inside attention DP), or None when
    AIC's fields are missing or its GPUs do not add up (attention tp x dp != moe_tp x moe_ep)."""
    try:
        tp, dp, mtp, mep, conc = (int(float(a[k])) for k in ("tp", "dp", "moe_tp", "moe_ep", "concurrency"))
    except (KeyError, ValueError):
        return None
    quant, kv = aic_format(a)
    if dp > 1 and mtp > 1:
        if tp * dp != mtp * mep:
            return None
        return tp, mep, mtp, quant, kv, conc
    ep = tp * dp if dp > 1 else mep
    return tp, ep, 0, quant, kv, conc


def aic_format(a: dict[str, str]) -> tuple[str, str]:
    """fleetplan's (weight format, KV dtype) for AIC's GEMM and KV-cache quantisation modes."""
    return ("fp8" if "fp8" in a.get("gemm", "").lower() else "bf16",
            "fp8" if "fp8" in a.get("kvcache", "").lower() else "bf16")


def fleetplan_at(model: str, gpu: str, cfg: tuple[int, int, int, str, str, int], isl: int, osl: int) -> dict:
    """fleetplan's estimate (mean latencies, no queueing -- AIC's definition) at one configuration."""
    from solver.catalog import load_catalog
    from solver.costmodel import Shape, estimate
    from solver.errors import InputError

    tp, ep, moe_tp, quant, kv, conc = cfg
    try:
        e = estimate(_catalog(load_catalog), Shape(model, gpu, None, quant, kv, tp=tp, pp=1, ep=ep, moe_tp=moe_tp),
                     isl, osl, conc)
    except InputError as exc:
        return {"error": str(exc)}
    return {"tok_s_gpu": e.output_tokens_per_s_per_gpu, "ttft_ms": e.ttft_ms, "tpot_ms": e.tpot_ms, "fits": e.fits}


def slo_report(scenarios: Sequence[tuple], aic_rows: dict[str, dict[str, str]]) -> None:
    """Capacity at the latency targets, side by side, three ways (see the printed legend)."""
    print("\nSLO capacity, 8 GPUs, ISL 4000 / OSL 1000, TTFT 2000 ms, TPOT 50 ms (output tokens/s per GPU)")
    print("  AIC: best aggregated configuration of its own search; its TTFT/TPOT are means at a fixed")
    print("  concurrency (no arrival variance, no queue). fleetplan capacity: the targets as p99 under Poisson")
    print("  arrivals, queueing included -- the stricter definition (any format, then AIC's format only).")
    print("  fleetplan at AIC's config: estimate on AIC's chosen shape and concurrency, mean latencies like AIC.")
    print(f"  {'model':16} {'AIC':>8} {'fp capacity':>12} {'(AIC fmt)':>10} {'fp at AIC cfg':>14}")
    for sc in scenarios:
        model, gpu, _, isl, osl, _, _ = sc
        a = aic_rows.get(slo_key(sc), {})
        a_tok = float(a["tokens_s_gpu"]) if a.get("tokens_s_gpu") else None
        cfg = aic_config(a) if a_tok else None
        free = fleetplan_capacity(*sc)
        same = (fleetplan_capacity(*sc, quants=[aic_format(a)[0]]) if a_tok
                else {"tok_s_gpu": None, "config": "-"})
        at = fleetplan_at(model, gpu, cfg, isl, osl) if cfg else {}
        cells = [a_tok, free["tok_s_gpu"], same["tok_s_gpu"], at.get("tok_s_gpu")]
        print(f"  {model:16} " + " ".join(f"{(c if c is not None else float('nan')):>{w}.1f}"
                                          for c, w in zip(cells, (8, 12, 10, 14)))
              + f"   ratios fp/AIC {_r(free['tok_s_gpu'], a_tok)}, {_r(same['tok_s_gpu'], a_tok)}, "
              f"{_r(at.get('tok_s_gpu'), a_tok)}")
        if a:
            print(f"      AIC: {a.get('parallel') or a.get('error')} gemm {a.get('gemm', '')} kv {a.get('kvcache', '')}, "
                  f"concurrency {a.get('concurrency', '')}, mean TTFT {_f(a.get('ttft_ms'))} ms, "
                  f"TPOT {_f(a.get('tpot_ms'))} ms")
        print(f"      fleetplan capacity: {free['config']}")
        print(f"      fleetplan capacity, AIC's format: {same['config']}")
        if a_tok and not cfg:
            print("      fleetplan at AIC's config: not expressible (AIC's parallel fields missing or inconsistent)")
        if at:
            print(f"      fleetplan at AIC's config: TTFT {_f(at.get('ttft_ms'))} ms, TPOT {_f(at.get('tpot_ms'))} ms"
                  f"{'' if at.get('fits', True) else ' (does not fit fleetplan memory model)'}{at.get('error', '')}")


def _r(a: float | None, b: float | None) -> str:
    x = ratio(a, b)
    return f"{x:.2f}" if x is not None else "-"


def _f(v: object) -> str:
    try:
        return f"{float(v):.1f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"


def slo_key(sc: tuple) -> str:
    model, gpu, n, isl, osl, ttft, tpot = sc
    return f"{model}|{gpu}|{n}|{isl}/{osl}|ttft{ttft:g}|tpot{tpot:g}"


def slo_job(sc: tuple) -> dict:
    model, gpu, n, isl, osl, ttft, tpot = sc
    return dict(key=slo_key(sc), aic_model=AIC_MODELS[model], aic_system=AIC_SYSTEMS[gpu], gpus=n,
                isl=isl, osl=osl, ttft_ms=ttft, tpot_ms=tpot)


def write_cache(points: Sequence[Point], raw: Path) -> None:
    """AIC's rows from the driver's output, with each point's configuration, in grid order."""
    by_key = {r["key"]: r for r in read_csv(raw)}
    cache = [{"model": p.model, "gpu": p.gpu, "quant": p.quant, "tp": p.tp, "attn_dp": p.attn_dp, "moe_tp": p.moe_tp,
              "moe_ep": p.moe_ep, "batch": p.batch, "isl": p.isl, "osl": p.osl} | by_key[p.key]
             for p in points if p.key in by_key]
    write_csv(AIC_GRID, cache, GRID_CACHE_FIELDS)


GRID_CACHE_FIELDS = ["key", "model", "gpu", "quant", "tp", "attn_dp", "moe_tp", "moe_ep", "batch", "isl", "osl",
                     "aic_version", "backend_version", "ttft_ms", "tpot_ms", "tokens_s", "tokens_s_gpu",
                     "num_gpus", "kv_cache_warning", "error"]
PEERS_FIELDS = ["key", "model", "gpu", "quant", "kind", "layout", "tp", "attn_dp", "moe_tp", "moe_ep", "batch",
                "concurrency", "isl", "osl", "gpus", "aic_tok_s_gpu", "fp_tok_s_gpu", "r_tok", "aic_tpot_ms",
                "fp_tpot_ms", "r_tpot", "aic_ttft_ms", "fp_ttft_ms", "r_ttft", "fp_mem_ms", "fp_compute_ms",
                "fp_comm_ms", "fp_overhead_ms", "fp_rest_ms", "fp_bound", "aic_kv_warning"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: python benchmarks/peers.py --from-cache")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--aic-venv", type=Path, help="virtual environment with aiconfigurator installed")
    src.add_argument("--from-cache", action="store_true", help=f"use {AIC_GRID.relative_to(REPO)} (no AIC run)")
    ap.add_argument("--no-slo", action="store_true", help="skip the SLO-capacity scenarios")
    args = ap.parse_args(argv)
    if args.aic_venv and not (args.aic_venv / "bin" / "python").exists():
        ap.error(f"--aic-venv: {args.aic_venv}/bin/python not found (python3 -m venv {args.aic_venv} && "
                 f"{args.aic_venv}/bin/pip install aiconfigurator)")
    if args.from_cache and not AIC_GRID.exists():
        ap.error(f"--from-cache: {AIC_GRID.relative_to(REPO)} not found; run with --aic-venv first")

    points = grid()
    fp = {p.key: fleetplan_point(p) for p in points}
    kept = [p for p in points if weights_fit(fp[p.key])]
    if args.aic_venv:
        RESULTS.mkdir(parents=True, exist_ok=True)
        # MoE points first: an interrupted run (resumable) then still covers the regimes that differ most
        run_aic(args.aic_venv, "grid", [p.job() for p in sorted(kept, key=lambda p: not p.moe)], AIC_RAW)
        write_cache(kept, AIC_RAW)
        AIC_RAW.unlink()
        if not args.no_slo:
            run_aic(args.aic_venv, "slo", [slo_job(sc) for sc in SLO_SCENARIOS], AIC_SLO)
    aic = {r["key"]: r for r in read_csv(AIC_GRID)}
    versions = sorted({r["aic_version"] for r in aic.values() if r.get("aic_version")})
    rows = compare(kept, aic, fp)
    write_csv(PEERS_GRID, rows, PEERS_FIELDS)
    report(rows, len(points), len(points) - len(kept), ", ".join(versions) or "?")
    if not args.no_slo and AIC_SLO.exists():
        slo_report(SLO_SCENARIOS, {r["key"]: r for r in read_csv(AIC_SLO)})
    print(f"\nper-point rows: {PEERS_GRID.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
