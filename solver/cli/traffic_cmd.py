"""``fleetplan traffic``: a problem file's traffic block from a request trace."""

from __future__ import annotations

from pathlib import Path

import click

from solver.cli.output import emit_json, fmt
from solver.traffic import TrafficStats, parse_window, read_trace, traffic_stats


def _yaml_block(s: TrafficStats, window: str) -> str:
    """The traffic block as pasteable YAML, with the statistics behind it as comments."""
    t = s.traffic_block()
    lines = [f"# from {s.source}"]
    if s.citation:
        lines.append(f"# source: {s.citation}")
    lines.append(f"# {s.requests:,} requests over {s.span_s:,.0f} s; mean {fmt(s.mean_rps)} req/s; "
                 f"busiest {window} window {fmt(s.busiest_rps)} req/s")
    if s.peaks_rps:
        peaks = ", ".join(f"{k} {fmt(v)}" for k, v in s.peaks_rps.items())
        lines.append(f"# p{s.percentile:g} rate by window: {peaks} req/s")
    lines.append(f"# burstiness: index of dispersion of {window} counts {fmt(s.index_of_dispersion)} "
                 f"(Poisson 1); inter-arrival CV {fmt(s.interarrival_cv)} (Poisson 1)")
    lines.append(f"# mean lengths: input {s.input_tokens.mean:,.0f}, output {s.output_tokens.mean:,.0f} tokens")
    if s.hourly_rps:
        lines.append("# hourly mean req/s: " + ", ".join(fmt(x) for x in s.hourly_rps))
    lines += ["traffic:", f"  peak_rps: {t['peak_rps']:g}    # p{s.percentile:g} of {window} windows"]
    for key in ("input_tokens", "output_tokens"):
        if "histogram" in t[key]:
            lines.append(f"  {key}:")
            lines.append("    histogram:    # tokens = upper edge of each bin, weight = requests")
            lines += [f"      - {{tokens: {b['tokens']}, weight: {b['weight']}}}" for b in t[key]["histogram"]]
        else:
            lines.append(f"  {key}: {{{{p50: {{p50}}, p90: {{p90}}, p99: {{p99}}}}}}".format(**t[key]))
    return "\n".join(lines)


@click.command("traffic")
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option("--window", default="10s", show_default=True,
              help="Window the peak rate is measured over: 1s, 10s, 60s (or any N s / N m).")
@click.option("--percentile", type=float, default=99.0, show_default=True,
              help="Percentile of the windows' rates taken as the peak (100 = the busiest window).")
@click.option("--histogram", "bins", type=click.IntRange(min=0), default=0, show_default=True,
              help="Give lengths as a histogram of this many log-spaced bins (0: p50/p90/p99).")
@click.option("--json", "as_json", is_flag=True, help="Print every statistic and the block as JSON.")
def traffic(trace_file: Path, window: str, percentile: float, bins: int, as_json: bool) -> None:
    """Read a request trace and print the traffic block of a problem file: the peak rate at a
    percentile of fixed windows, length percentiles (p50/p90/p99), and, as comments, the mean
    rate, burstiness (index of dispersion of counts per window, inter-arrival CV; both 1 for
    Poisson arrivals) and an hourly profile when the trace spans two hours or more.

    TRACE_FILE is a CSV with a header: the Azure LLM inference trace format
    (TIMESTAMP,ContextTokens,GeneratedTokens) or timestamp_s,input_tokens,output_tokens
    (seconds, or ISO date-times). Rows sorted by time.

    \b
      fleetplan traffic ../shared/traces/azure-llm-2023-conv.csv
      fleetplan traffic my-trace.csv --window 1s --percentile 99.9 --json
      fleetplan traffic my-trace.csv --histogram 12

    A problem file can also name the trace directly:
    traffic: {trace: my-trace.csv, window: 10s, percentile: 99}.
    """
    stats = traffic_stats(read_trace(trace_file), parse_window(window), percentile, bins)
    if as_json:
        emit_json(stats)
    else:
        click.echo(_yaml_block(stats, window))
