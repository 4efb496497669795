"""Request traces and the traffic statistics a problem file needs (``fleetplan traffic``).

A trace is one row per request: arrival time, prompt (input) tokens, output tokens. Two CSV
layouts are read, told apart by their header:

- the Azure LLM inference trace format (``TIMESTAMP,ContextTokens,GeneratedTokens``, timestamps
  ``YYYY-MM-DD HH:MM:SS.fffffff``), as published in the Azure Public Dataset (CC-BY 4.0; Patel
  et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024);
- a plain CSV ``timestamp_s,input_tokens,output_tokens`` with the timestamp in seconds (any
  origin) or as an ISO date-time.

Rows must be sorted by time; token counts are integers >= 1. From a trace,
:func:`traffic_stats` computes what sizing needs: the rate at a percentile of fixed windows
(1 s, 10 s, 60 s ...), the mean rate, length percentiles, and burstiness (index of dispersion of
the counts per window: 1 for Poisson arrivals, larger for bursty ones; the inter-arrival
coefficient of variation: 1 for Poisson). :func:`expand_trace_traffic` turns a problem's
``traffic: {trace: FILE, window: 10s}`` into the ordinary traffic block.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from solver.errors import InputError
from solver.loading import read_text

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
PLAIN_COLUMNS = ("timestamp_s", "input_tokens", "output_tokens")
AZURE_CITATION = (
    "Azure LLM inference trace 2023 (Azure Public Dataset, CC-BY 4.0; Patel et al., "
    "Splitwise, ISCA 2024)"
)
_ALIASES = {
    "timestamp": ("timestamp_s", "TIMESTAMP", "timestamp", "time_s", "arrival_s"),
    "input tokens": ("input_tokens", "ContextTokens", "prompt_tokens"),
    "output tokens": ("output_tokens", "GeneratedTokens", "completion_tokens"),
}
WINDOWS_S = {"1s": 1.0, "10s": 10.0, "60s": 60.0}
"""Window names the CLI and problem files accept (any ``<seconds>s`` also works)."""
HOUR_S = 3600.0


@dataclass(frozen=True)
class Trace:
    """Requests of a trace, sorted by arrival. ``arrival_s`` starts at 0."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str
    azure: bool = False
    """True when read from the Azure format (so results derived from it carry its citation)."""

    @property
    def requests(self) -> int:
        return int(self.arrival_s.size)

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if self.requests else 0.0


def parse_window(text: str | float, field_name: str = "--window") -> float:
    """Window length in seconds from ``"10s"``, ``"1m"`` or a number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        scale = 60.0 if s.endswith("m") else 1.0
        try:
            value = float(s.rstrip("sm")) * scale
        except ValueError:
            raise InputError(f"{field_name}: expected a window such as 1s, 10s or 60s, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{field_name}: window must be a positive number of seconds, got {text!r}")
    return value


def _timestamps(values: list[str], column: str, where: str) -> np.ndarray:
    """Seconds since the first row, from numbers of seconds or ISO date-times."""
    try:
        t = np.array([float(v) for v in values])
    except ValueError:
        pass
    else:
        bad = np.flatnonzero(~np.isfinite(t))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"row {i + 2}, column {column}: not a finite number of seconds: {values[i]!r}",
                             where=where)
        return t
    try:
        t = np.array([v.strip() for v in values], dtype="datetime64[ns]")
    except ValueError:
        bad = next(i for i, v in enumerate(values) if not _is_time(v))
        raise InputError(f"row {bad + 2}, column {column}: not a time or number of seconds: {values[bad]!r}",
                         where=where) from None
    return (t - t[0]).astype(np.int64) / 1e9


def _is_time(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        pass
    try:
        np.datetime64(v.strip(), "ns")
        return True
    except ValueError:
        return False


MAX_TOKENS = 1e9
"""Most tokens one request's prompt or answer may hold in a trace: a sanity bound (far above any
context window) that keeps the counts within 64-bit integers, not a model limit."""


def _tokens(values: list[str], column: str, where: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            x = float(v)
        except ValueError:
            raise InputError(f"row {i + 2}, column {column}: not a number: {v!r}", where=where) from None
        if not (1 <= x <= MAX_TOKENS) or x != math.floor(x):
            raise InputError(f"row {i + 2}, column {column}: must be a whole number from 1 to {MAX_TOKENS:.0e}, "
                             f"got {v!r}", where=where)
        out[i] = int(x)
    return out


def parse_trace(text: str, where: str) -> Trace:
    """A trace from CSV text (either layout); ``InputError`` naming the column or row."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise InputError("empty trace (no header row)", where=where)
    names = [h.strip() for h in header]
    cols: dict[str, int] = {}
    for need, aliases in _ALIASES.items():
        hit = next((names.index(a) for a in aliases if a in names), None)
        if hit is None:
            raise InputError(
                f"missing {need} column (one of {', '.join(aliases)}); header has: {', '.join(names)}",
                where=where)
        cols[need] = hit
    rows = [r for r in reader if any(c.strip() for c in r)]
    if not rows:
        raise InputError("empty trace (a header but no requests)", where=where)
    width = max(cols.values()) + 1
    short = next((i for i, r in enumerate(rows) if len(r) < width), None)
    if short is not None:
        raise InputError(f"row {short + 2}: has {len(rows[short])} fields, expected {len(names)}", where=where)
    tcol, icol, ocol = (names[cols[k]] for k in _ALIASES)
    t = _timestamps([r[cols["timestamp"]] for r in rows], tcol, where)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise InputError(f"row {i + 2}: timestamp earlier than the row before (the trace must be "
                         f"sorted by {tcol})", where=where)
    return Trace(
        arrival_s=t - t[0],
        input_tokens=_tokens([r[cols["input tokens"]] for r in rows], icol, where),
        output_tokens=_tokens([r[cols["output tokens"]] for r in rows], ocol, where),
        source=where,
        azure=names[cols["timestamp"]] == AZURE_COLUMNS[0] and names[cols["input tokens"]] == AZURE_COLUMNS[1],
    )


def read_trace(path: Path | str) -> Trace:
    """Read a trace file (see the module docstring); bad input is an ``InputError``."""
    path = Path(path)
    return parse_trace(read_text(path, "a CSV trace"), where=str(path))


@dataclass(frozen=True)
class Lengths3:
    p50: int
    p90: int
    p99: int
    mean: float


def _lengths(x: np.ndarray) -> Lengths3:
    """p50/p90/p99 (values of the data, the higher neighbour: conservative) and mean."""
    p = np.percentile(x, [50, 90, 99], method="higher")
    return Lengths3(int(p[0]), int(p[1]), int(p[2]), float(x.mean()))


def window_counts(arrival_s: np.ndarray, window_s: float) -> np.ndarray:
    """Requests in each whole window of ``window_s`` seconds from the first arrival (a partial
    last window is dropped; a trace shorter than one window gives one count over its span)."""
    span = float(arrival_s[-1] - arrival_s[0]) if arrival_s.size else 0.0
    n = int(span // window_s)
    if n < 1:
        return np.array([arrival_s.size])
    idx = ((arrival_s - arrival_s[0]) // window_s).astype(np.int64)
    return np.bincount(idx[idx < n], minlength=n)


def length_histogram(x: np.ndarray, bins: int) -> list[dict[str, int]]:
    """Lengths as ``bins`` log-spaced bins (the problem files' histogram form): each bin's
    ``tokens`` is its upper edge (so percentiles read from it are never low) and ``weight`` its
    request count; empty bins are left out."""
    if bins < 1:
        raise InputError(f"--histogram: needs at least 1 bin, got {bins}")
    lo, hi = float(x.min()), float(x.max())
    edges = np.unique(np.ceil(np.geomspace(lo, hi, bins + 1)).astype(np.int64)) if hi > lo else np.array([int(hi)])
    idx = np.searchsorted(edges, x, side="left")  # bin whose upper edge is the first >= x
    if edges.size > 1:
        idx = np.maximum(idx, 1)  # the minimum joins the first bin [edge 0, edge 1]
    counts = np.bincount(idx, minlength=edges.size)
    return [{"tokens": int(e), "weight": int(c)} for e, c in zip(edges, counts) if c > 0]


@dataclass(frozen=True)
class TrafficStats:
    """What a trace says about sizing; rates in requests/s, lengths in tokens."""

    source: str
    citation: str | None
    requests: int
    span_s: float
    mean_rps: float
    window_s: float
    percentile: float
    peak_rps: float
    """Rate at ``percentile`` of the ``window_s`` windows."""
    busiest_rps: float
    """Rate of the busiest ``window_s`` window."""
    windows: int
    index_of_dispersion: float
    """Variance / mean of the counts per window: 1 for Poisson, higher for bursty arrivals."""
    interarrival_cv: float
    """Standard deviation / mean of the gaps between arrivals: 1 for Poisson."""
    input_tokens: Lengths3
    output_tokens: Lengths3
    peaks_rps: dict[str, float] = field(default_factory=dict)
    """Rate at ``percentile`` for each standard window (1s, 10s, 60s) the trace is long enough for."""
    hourly_rps: list[float] | None = None
    """Mean rate of each whole hour, when the trace spans at least two."""
    input_histogram: list[dict[str, int]] | None = None
    output_histogram: list[dict[str, int]] | None = None
    """Lengths as histograms instead of percentiles in the traffic block (``histogram_bins``)."""

    def traffic_block(self) -> dict[str, Any]:
        """The ``traffic:`` block of a problem file (peak rate rounded up to 0.01 req/s)."""
        if self.input_histogram is not None and self.output_histogram is not None:
            return {"peak_rps": math.ceil(round(self.peak_rps * 100, 6)) / 100,
                    "input_tokens": {"histogram": self.input_histogram},
                    "output_tokens": {"histogram": self.output_histogram}}
        return {
            "peak_rps": math.ceil(round(self.peak_rps * 100, 6)) / 100,
            "input_tokens": {"p50": self.input_tokens.p50, "p90": self.input_tokens.p90,
                             "p99": self.input_tokens.p99},
            "output_tokens": {"p50": self.output_tokens.p50, "p90": self.output_tokens.p90,
                              "p99": self.output_tokens.p99},
        }

    def to_dict(self) -> dict[str, Any]:
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in asdict(self).items()}  # NaN (too short to measure) -> null
        out["traffic"] = self.traffic_block()
        return out


MAX_WINDOWS = 10_000_000
"""Most windows one trace is counted in (a memory bound: one 8-byte count per window)."""


def traffic_stats(trace: Trace, window_s: float = 10.0, percentile: float = 99.0,
                  histogram_bins: int = 0, window_field: str = "--window") -> TrafficStats:
    """Rates, lengths and burstiness of a trace at windows of ``window_s`` seconds; lengths as
    ``histogram_bins`` log-spaced bins too when it is > 0. A trace shorter than one window is
    an ``InputError`` naming ``window_field``."""
    if not 0 < percentile <= 100:
        raise InputError(f"--percentile: must be in (0, 100], got {percentile:g}")
    t = trace.arrival_s
    n = trace.requests
    span = trace.span_s
    if span / window_s > MAX_WINDOWS:
        raise InputError(f"{window_field}: {window_s:g} s windows split the trace's {span:.3g} s into more than "
                         f"{MAX_WINDOWS:,} windows; use a longer window")
    counts = window_counts(t, window_s)
    if span < window_s:
        raise InputError(f"{window_field}: the trace spans {span:.3g} s, less than one {window_s:g} s "
                         "window; use a shorter window (or a longer trace)")
    width = window_s
    mean_count = float(counts.mean())
    iod = float(counts.var() / mean_count) if counts.size > 1 and mean_count > 0 else float("nan")
    gaps = np.diff(t)
    cv = float(gaps.std() / gaps.mean()) if gaps.size > 1 and gaps.mean() > 0 else float("nan")
    peaks = {
        name: float(np.percentile(window_counts(t, w), percentile)) / w
        for name, w in WINDOWS_S.items() if span >= w
    }
    hours = int(span // HOUR_S)
    hourly = (window_counts(t, HOUR_S) / HOUR_S).tolist() if hours >= 2 else None
    return TrafficStats(
        source=trace.source, citation=AZURE_CITATION if trace.azure else None, requests=n,
        span_s=span, mean_rps=n / span, window_s=window_s,
        percentile=percentile, peak_rps=float(np.percentile(counts, percentile)) / width,
        busiest_rps=float(counts.max()) / width, windows=int(counts.size),
        index_of_dispersion=iod, interarrival_cv=cv,
        input_tokens=_lengths(trace.input_tokens), output_tokens=_lengths(trace.output_tokens),
        peaks_rps=peaks, hourly_rps=hourly,
        input_histogram=length_histogram(trace.input_tokens, histogram_bins) if histogram_bins else None,
        output_histogram=length_histogram(trace.output_tokens, histogram_bins) if histogram_bins else None,
    )


def hourly_profile(trace: Trace) -> list[float]:
    """Mean requests/s of each hour from the first arrival, for a trace covering a day (24
    hours, the last one possibly partial but divided by a whole hour) or a week (168)."""
    hours = max(1, math.ceil(trace.span_s / HOUR_S - 1e-9))
    if hours not in (24, 168):
        raise InputError(f"the trace covers {hours} hour(s); an hourly profile needs 24 (a day) or 168 (a week)")
    idx = np.minimum((trace.arrival_s // HOUR_S).astype(np.int64), hours - 1)
    return (np.bincount(idx, minlength=hours) / HOUR_S).tolist()


def expand_trace_traffic(data: Any, base: Path, where: str | None = None) -> Any:
    """A problem mapping with each ``models[i].traffic: {trace: FILE, window: W, percentile: P}``
    (and ``hourly: true`` to take ``hourly_rps`` from the trace's hours, see :func:`hourly_profile`)
    replaced by the traffic block the trace gives (paths relative to ``base``, the problem's
    folder). Other traffic keys (``prefix_cache_hit_rate``; ``peak_rps`` or lengths to override
    the trace's) are kept. Anything that is not such a mapping is returned unchanged. Errors
    name the problem file (``where``) and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        return data
    models = []
    for i, m in enumerate(data["models"]):
        tr = m.get("traffic") if isinstance(m, dict) else None
        if not isinstance(tr, dict) or "trace" not in tr:
            models.append(m)
            continue
        field_name = f"models[{i}].traffic"
        rest = dict(tr)
        file = rest.pop("trace")
        try:
            window = parse_window(rest.pop("window", "10s"), f"{field_name}.window")
            pct = rest.pop("percentile", 99.0)
            hourly = rest.pop("hourly", False)
            if not isinstance(hourly, bool):
                raise InputError(f"{field_name}.hourly: expected true or false, got {hourly!r}")
            if not isinstance(pct, (int, float)) or isinstance(pct, bool) or not 0 < pct <= 100:
                raise InputError(f"{field_name}.percentile: must be a number in (0, 100], got {pct!r}")
            if not isinstance(file, str):
                raise InputError(f"{field_name}.trace: expected a path to a CSV trace, got {file!r}")
            path = Path(file) if Path(file).is_absolute() else base / file
            try:
                stats = traffic_stats(read_trace(path), window, float(pct), 0, f"{field_name}.window")
            except InputError as exc:
                raise InputError(f"{field_name}.trace: {exc}") from None
        except InputError as exc:
            raise InputError(exc.detail, where=where) from None
        block = stats.traffic_block()
        if hourly:
            try:
                rates = hourly_profile(read_trace(path))
            except InputError as exc:
                raise InputError(f"{field_name}.hourly: {exc.detail}", where=where) from None
            block["hourly_rps"] = rates
            block["peak_rps"] = max(block["peak_rps"], max(rates))  # never below the busiest hour
        models.append({**m, "traffic": {**block, **rest}})
    return {**data, "models": models}
