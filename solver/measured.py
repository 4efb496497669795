"""Read measured load sweeps written by the engines' benchmark clients into one shape.

A sweep is a list of :class:`MeasuredPoint` (one per concurrency or request rate). Understood
formats, with the fields read and where their names come from:

==================  =====================================================================
format              fields (source of the names)
==================  =====================================================================
vllm-bench          ``vllm bench serve --save-result`` JSON: ``max_concurrency``,
                    ``request_rate``, ``request_throughput``, ``output_throughput``,
                    ``p50_/median_ttft_ms``, ``p99_ttft_ms``, ``p50_/median_itl_ms``,
                    ``p99_itl_ms``, ``mean_e2el_ms`` (vllm-project/vllm
                    vllm/benchmarks/serve.py: ``result[f"p{p_word}_{metric}_ms"]``,
                    ``median_*``, and main_async's ``max_concurrency``/``request_rate``)
sglang-bench        ``python -m sglang.bench_serving --output-file`` JSONL, one object a
                    line: same keys, ``mean_e2e_latency_ms`` (sgl-project/sglang
                    python/sglang/bench_serving.py, the ``result`` dict it appends)
aiperf-json         ``profile_export_aiperf.json``: ``time_to_first_token``,
                    ``inter_token_latency``, ``request_throughput``,
                    ``output_token_throughput``, ``request_latency``, each
                    ``{unit, avg, p50, p99, ...}``; concurrency from
                    ``input_config.loadgen.concurrency`` (ai-dynamo/aiperf
                    aiperf/common/models/export_models.py JsonExportData, which mirrors
                    GenAI-Perf's JSON, so GenAI-Perf exports with ``input_config.concurrency``
                    read too)
aiperf-csv          ``profile_export_aiperf.csv``: a ``Metric,avg,min,max,p1,...,p99,std``
                    section then a ``Metric,Value`` section; names ``Header (unit)``
                    (aiperf/exporters/csv_exporter.py, metric headers in
                    aiperf/metrics/types/*). The CSV has no concurrency: it is taken from the
                    sibling JSON, else from a ``c<N>`` / ``concurrency<N>`` folder name.
guidellm-json       ``guidellm run --output kind=json`` ``benchmarks.json``: ``benchmarks[]``
                    with ``config.strategy`` (``type_`` concurrent + ``streams``, or
                    constant/poisson + ``rate``) and ``metrics.<name>.successful`` summaries
                    (``mean``, ``median``, ``percentiles.p50/p99``) for
                    ``time_to_first_token_ms``, ``inter_token_latency_ms``,
                    ``requests_per_second``, ``output_tokens_per_second``,
                    ``request_latency`` (seconds) (vllm-project/guidellm
                    src/guidellm/benchmark/schemas/{report,benchmark,metrics}.py,
                    src/guidellm/schemas/statistics.py, scheduler/strategies.py)
plain-csv           this project's CSV: header ``concurrency`` or ``request_rate_rps`` (one
                    of them), ``ttft_p50_ms,ttft_p99_ms,itl_p50_ms,itl_p99_ms,
                    output_tokens_per_s,requests_per_s`` and optional ``e2e_mean_ms``;
                    one row per sweep point
==================  =====================================================================
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from solver.errors import InputError

FORMATS = ("vllm-bench", "sglang-bench", "aiperf-json", "aiperf-csv", "guidellm-json", "plain-csv")
UNDERSTOOD = ("vLLM bench serve JSON, SGLang bench_serving JSONL, AIPerf/GenAI-Perf JSON, "
              "AIPerf CSV, GuideLLM benchmarks.json, plain CSV (concurrency or request_rate_rps, "
              "ttft_p50_ms, ttft_p99_ms, itl_p50_ms, itl_p99_ms, output_tokens_per_s, requests_per_s)")
PLAIN_COLUMNS = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "output_tokens_per_s",
                 "requests_per_s")
MIN_POINTS = 3


class UnknownFormat(InputError):
    """A file that is none of the understood formats (skipped inside folders, an error alone)."""


@dataclass(frozen=True)
class MeasuredPoint:
    """One load level of a sweep. Latencies ms, rates per second."""

    concurrency: float | None
    """Client concurrency (closed loop); None for an open-loop rate sweep."""
    request_rate: float | None
    """Offered request rate (open loop); None when the client ran at fixed concurrency."""
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    e2e_mean_ms: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sweep:
    points: tuple[MeasuredPoint, ...]
    formats: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"formats": list(self.formats), "points": [p.to_dict() for p in self.points]}


def _num(v: Any, where: str, name: str) -> float:
    if isinstance(v, bool) or v is None:
        raise InputError(f"missing or non-numeric {name!r}", where=where)
    if isinstance(v, str):
        if v.strip().lower() in ("inf", "infinity"):
            return math.inf
        try:
            v = float(v)
        except ValueError:
            raise InputError(f"{name!r} is not a number: {v!r}", where=where) from None
    if not isinstance(v, (int, float)) or math.isnan(v):
        raise InputError(f"missing or non-numeric {name!r}", where=where)
    return float(v)


def _first(d: dict[str, Any], names: tuple[str, ...], where: str, hint: str = "") -> float:
    for n in names:
        if d.get(n) is not None:
            return _num(d[n], where, n)
    raise InputError(f"needs one of {', '.join(names)}{hint}", where=where)


def _opt(v: Any, where: str, name: str) -> float | None:
    return None if v is None else _num(v, where, name)


# -- vLLM / SGLang ------------------------------------------------------------------------------

_VLLM_HINT = " (rerun with --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99)"


def _bench_point(d: dict[str, Any], where: str, fmt: str) -> MeasuredPoint:
    conc = d.get("max_concurrency")
    rate = d.get("request_rate")
    rate_v = None if rate is None else _num(rate, where, "request_rate")
    return MeasuredPoint(
        concurrency=None if conc is None else _num(conc, where, "max_concurrency"),
        request_rate=None if rate_v is None or math.isinf(rate_v) else rate_v,
        requests_per_s=_first(d, ("request_throughput",), where),
        output_tokens_per_s=_first(d, ("output_throughput",), where),
        ttft_p50_ms=_first(d, ("p50_ttft_ms", "median_ttft_ms"), where, _VLLM_HINT),
        ttft_p99_ms=_first(d, ("p99_ttft_ms",), where, _VLLM_HINT),
        itl_p50_ms=_first(d, ("p50_itl_ms", "median_itl_ms"), where, _VLLM_HINT),
        itl_p99_ms=_first(d, ("p99_itl_ms",), where, _VLLM_HINT),
        e2e_mean_ms=_opt(d.get("mean_e2el_ms", d.get("mean_e2e_latency_ms")), where, "mean_e2el_ms"),
        source=f"{fmt}:{where}",
    )


def _is_bench(d: Any) -> bool:
    return isinstance(d, dict) and "request_throughput" in d and (
        "p99_ttft_ms" in d or "median_ttft_ms" in d or "mean_ttft_ms" in d)


# -- AIPerf / GenAI-Perf ------------------------------------------------------------------------

_TO_MS = {"ms": 1.0, "milliseconds": 1.0, "s": 1e3, "sec": 1e3, "seconds": 1e3, "us": 1e-3,
          "microseconds": 1e-3, "ns": 1e-6, "nanoseconds": 1e-6}


def _ms(metric: dict[str, Any], stat: str, where: str, name: str) -> float:
    unit = str(metric.get("unit", "ms")).lower()
    if unit not in _TO_MS:
        raise InputError(f"{name}: unknown time unit {unit!r}", where=where)
    if metric.get(stat) is None:
        raise InputError(f"{name} has no {stat!r}", where=where)
    return _num(metric[stat], where, f"{name}.{stat}") * _TO_MS[unit]


def _aiperf_concurrency(d: dict[str, Any]) -> tuple[Any, Any]:
    """(concurrency, request rate) of an AIPerf/GenAI-Perf run: ``input_config.loadgen`` (AIPerf
    up to 0.x CLI config), ``input_config.phases[]`` (AIPerf 0.13 BenchmarkConfig: the phase named
    ``profiling``, else the last; ``type`` concurrency with ``concurrency``, or a rate type with
    ``rate``), else GenAI-Perf's top-level ``input_config.concurrency``/``request_rate``."""
    cfg = d.get("input_config") or {}
    phases = [p for p in cfg.get("phases") or [] if isinstance(p, dict)]
    if phases:
        ph = next((p for p in phases if p.get("name") == "profiling"), phases[-1])
        if ph.get("type") == "concurrency":
            return ph.get("concurrency"), None
        return None, ph.get("rate")
    lg = cfg.get("loadgen") or {}
    return lg.get("concurrency", cfg.get("concurrency")), lg.get("request_rate", cfg.get("request_rate"))


def _aiperf_json_point(d: dict[str, Any], where: str) -> MeasuredPoint:
    def metric(name: str) -> dict[str, Any]:
        m = d.get(name)
        if not isinstance(m, dict):
            raise InputError(f"AIPerf export lacks {name!r}", where=where)
        return m

    conc, rate = _aiperf_concurrency(d)
    lat = d.get("request_latency")
    return MeasuredPoint(
        concurrency=_opt(conc, where, "input_config.loadgen.concurrency"),
        request_rate=_opt(rate, where, "input_config.loadgen.request_rate"),
        requests_per_s=_num(metric("request_throughput").get("avg"), where, "request_throughput.avg"),
        output_tokens_per_s=_num(metric("output_token_throughput").get("avg"), where,
                                 "output_token_throughput.avg"),
        ttft_p50_ms=_ms(metric("time_to_first_token"), "p50", where, "time_to_first_token"),
        ttft_p99_ms=_ms(metric("time_to_first_token"), "p99", where, "time_to_first_token"),
        itl_p50_ms=_ms(metric("inter_token_latency"), "p50", where, "inter_token_latency"),
        itl_p99_ms=_ms(metric("inter_token_latency"), "p99", where, "inter_token_latency"),
        e2e_mean_ms=_ms(lat, "avg", where, "request_latency") if isinstance(lat, dict) else None,
        source=f"aiperf-json:{where}",
    )


def _is_aiperf_json(d: Any) -> bool:
    return isinstance(d, dict) and isinstance(d.get("time_to_first_token"), dict) and "request_throughput" in d


_CSV_HEADER = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^)]*)\)$")
_CONC_DIR = re.compile(r"^(?:c|concurrency)[-_]?(\d+)$", re.IGNORECASE)


def _aiperf_csv_point(text: str, path: Path, where: str) -> MeasuredPoint:
    stats: dict[str, dict[str, str]] = {}
    values: dict[str, str] = {}
    header: list[str] | None = None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            header = None
            continue
        if row[0] == "Metric":
            header = row
            continue
        if header is None:
            continue
        if len(header) == 2:
            values[row[0]] = row[1]
        else:
            stats[row[0]] = dict(zip(header[1:], row[1:]))

    def stat(label: str, key: str) -> float:
        for name, row in stats.items():
            m = _CSV_HEADER.match(name)
            if m and m["name"] == label:
                unit = m["unit"].lower()
                if unit not in _TO_MS:
                    raise InputError(f"{label}: unknown time unit {unit!r}", where=where)
                return _num(row.get(key) or None, where, f"{label} {key}") * _TO_MS[unit]
        raise InputError(f"AIPerf CSV lacks the {label!r} row", where=where)

    def value(label: str) -> float:
        for name, v in values.items():
            if name == label or name.startswith(label + " ("):
                return _num(v, where, label)
        raise InputError(f"AIPerf CSV lacks the {label!r} row", where=where)

    conc = rate = None
    sibling = path.with_suffix(".json")
    if sibling.is_file():
        try:
            conc, rate = _aiperf_concurrency(json.loads(sibling.read_text()))
        except (OSError, ValueError):
            conc = None
    if conc is None and rate is None:
        for part in reversed(path.parent.parts):
            m = _CONC_DIR.match(part)
            if m:
                conc = int(m.group(1))
                break
    if conc is None and rate is None:
        raise InputError("AIPerf CSV carries no concurrency: keep profile_export_aiperf.json beside it "
                         "or name its folder c<N> (as bench-plan does)", where=where)
    lat = None
    try:
        lat = stat("Request Latency", "avg")
    except InputError:
        lat = None
    return MeasuredPoint(
        concurrency=_opt(conc, where, "concurrency"), request_rate=_opt(rate, where, "request_rate"),
        requests_per_s=value("Request Throughput"), output_tokens_per_s=value("Output Token Throughput"),
        ttft_p50_ms=stat("Time to First Token", "p50"), ttft_p99_ms=stat("Time to First Token", "p99"),
        itl_p50_ms=stat("Inter Token Latency", "p50"), itl_p99_ms=stat("Inter Token Latency", "p99"),
        e2e_mean_ms=lat, source=f"aiperf-csv:{where}",
    )


# -- GuideLLM -----------------------------------------------------------------------------------

def _guidellm_points(d: dict[str, Any], where: str) -> list[MeasuredPoint]:
    out = []
    for i, b in enumerate(d["benchmarks"]):
        w = f"{where}: benchmarks[{i}]"
        if not isinstance(b, dict):
            raise InputError("benchmark entry is not an object", where=w)
        strat = (b.get("config") or {}).get("strategy") or {}
        kind = strat.get("type_")
        m = b.get("metrics") or {}

        def ok(name: str) -> dict[str, Any]:
            s = (m.get(name) or {}).get("successful")
            if not isinstance(s, dict):
                raise InputError(f"lacks metrics.{name}.successful", where=w)
            return s

        def pct(name: str, p: str) -> float:
            s = ok(name)
            return _num((s.get("percentiles") or {}).get(p), w, f"metrics.{name}.successful.percentiles.{p}")

        lat = (m.get("request_latency") or {}).get("successful")
        conc = strat.get("streams") if kind == "concurrent" else (1 if kind == "synchronous" else None)
        if isinstance(conc, list):
            conc = conc[0] if len(conc) == 1 else None
        rate = strat.get("rate") if kind in ("constant", "poisson") else None
        if conc is None and rate is None:
            raise InputError(f"strategy {kind!r} has neither streams nor rate; sweep with "
                             "--profile kind=concurrent or constant/poisson", where=w)
        out.append(MeasuredPoint(
            concurrency=_opt(conc, w, "config.strategy.streams"),
            request_rate=_opt(rate, w, "config.strategy.rate"),
            requests_per_s=_num(ok("requests_per_second").get("mean"), w, "requests_per_second.mean"),
            output_tokens_per_s=_num(ok("output_tokens_per_second").get("mean"), w,
                                     "output_tokens_per_second.mean"),
            ttft_p50_ms=pct("time_to_first_token_ms", "p50"), ttft_p99_ms=pct("time_to_first_token_ms", "p99"),
            itl_p50_ms=pct("inter_token_latency_ms", "p50"), itl_p99_ms=pct("inter_token_latency_ms", "p99"),
            e2e_mean_ms=(_num(lat.get("mean"), w, "request_latency.mean") * 1e3
                         if isinstance(lat, dict) and lat.get("mean") is not None else None),
            source=f"guidellm-json:{w}",
        ))
    return out


# -- plain CSV ----------------------------------------------------------------------------------

def _plain_csv_points(text: str, where: str) -> list[MeasuredPoint]:
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for i, r in enumerate(rows, start=2):
        w = f"{where}: line {i}"
        conc = (r.get("concurrency") or "").strip() or None
        rate = (r.get("request_rate_rps") or "").strip() or None
        if conc is None and rate is None:
            raise InputError("needs a concurrency or request_rate_rps value", where=w)
        e2e = (r.get("e2e_mean_ms") or "").strip() or None
        vals = {c: _num((r.get(c) or "").strip() or None, w, c) for c in PLAIN_COLUMNS}
        out.append(MeasuredPoint(concurrency=_opt(conc, w, "concurrency"), request_rate=_opt(rate, w, "request_rate_rps"),
                                 e2e_mean_ms=_opt(e2e, w, "e2e_mean_ms"), source=f"plain-csv:{w}", **vals))
    return out


# -- detection ----------------------------------------------------------------------------------

def read_file(path: Path) -> tuple[str, list[MeasuredPoint]]:
    """(format, points) of one results file; ``InputError`` naming the file when unknown."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", where=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=where) from None
    stripped = text.lstrip()
    if path.suffix == ".jsonl":
        try:
            docs = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        except ValueError:
            docs = []
        if docs and all(_is_bench(x) for x in docs):
            return "sglang-bench", [_bench_point(x, f"{where}: line {i}", "sglang-bench")
                                    for i, x in enumerate(docs, start=1)]
    elif stripped.startswith("{") or stripped.startswith("["):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if doc is not None:
            if _is_bench(doc):
                return "vllm-bench", [_bench_point(doc, where, "vllm-bench")]
            if _is_aiperf_json(doc):
                return "aiperf-json", [_aiperf_json_point(doc, where)]
            if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list):
                return "guidellm-json", _guidellm_points(doc, where)
            if isinstance(doc, list) and doc and all(_is_bench(x) for x in doc):
                return "vllm-bench", [_bench_point(x, f"{where}[{i}]", "vllm-bench") for i, x in enumerate(doc)]
    else:
        first = next(csv.reader(io.StringIO(text)), [])
        if first[:1] == ["Metric"]:
            return "aiperf-csv", [_aiperf_csv_point(text, path, where)]
        if set(PLAIN_COLUMNS) <= set(first) and ({"concurrency", "request_rate_rps"} & set(first)):
            return "plain-csv", _plain_csv_points(text, where)
    raise UnknownFormat(f"unknown results format; understood: {UNDERSTOOD}", where=where)


_SKIP = {"profile_export.jsonl", "inputs.json"}
"""AIPerf per-record and input files found beside its summaries (not results)."""


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".csv")
                       and p.name not in _SKIP)
        return [p for p in found if not (p.name == "profile_export_aiperf.csv"
                                         and p.with_suffix(".json").is_file())]
    return [path]


def load_sweep(paths: list[Path] | tuple[Path, ...], min_points: int = MIN_POINTS) -> Sweep:
    """Every point of the given files (folders are searched for result files), ordered by
    concurrency, then request rate. At least ``min_points`` points, else ``InputError``."""
    points: list[MeasuredPoint] = []
    formats: list[str] = []
    for p in paths:
        folder = Path(p).is_dir()
        found = 0
        for f in _files(Path(p)):
            try:
                fmt, pts = read_file(f)
            except UnknownFormat:
                if folder:
                    continue  # other artifacts the clients leave beside their summaries
                raise
            found += 1
            points.extend(pts)
            if fmt not in formats:
                formats.append(fmt)
        if folder and not found:
            raise InputError(f"no results file in this folder; understood: {UNDERSTOOD}", where=str(p))
    if len(formats) > 1:
        raise InputError(f"results from several clients ({', '.join(formats)}): pass one client's files "
                         "(e.g. results/<config>/aiperf)", where=", ".join(str(p) for p in paths))
    seen: dict[tuple[float | None, float | None], str] = {}
    for q in points:
        if q.requests_per_s <= 0:
            raise InputError("no completed requests (requests/s is 0): rerun this load", where=q.source)
        key = (q.concurrency, q.request_rate)
        if key in seen:
            what = f"concurrency {q.concurrency:g}" if q.concurrency is not None else f"rate {q.request_rate:g}"
            raise InputError(f"{what} appears twice ({seen[key]} and {q.source}): keep one run per load")
        seen[key] = q.source
    if len(points) < min_points:
        raise InputError(f"a sweep needs at least {min_points} points, got {len(points)}",
                         where=", ".join(str(p) for p in paths))
    points.sort(key=lambda q: (q.concurrency if q.concurrency is not None else math.inf,
                               q.request_rate if q.request_rate is not None else math.inf, q.source))
    return Sweep(tuple(points), tuple(formats))
