"""The purchasing schedule in a report: a Markdown section, an HTML section and one plot of
replicas per hour against demand, utilisation and cost per million tokens over the day.

matplotlib is imported inside :func:`schedule_svg` only, so reading a schedule loads no
plotting library."""

from __future__ import annotations

from typing import Any

KINDS = ("owned", "reserved", "on-demand", "spot")
HEADERS = ("hour", "demand req/s", "capacity req/s", "owned", "reserved", "on-demand", "spot",
           "utilisation", "cost $", "$/M tokens")
NOTE = ("Each hour keeps the peak plan's configurations; the schedule chooses replicas on each price "
        "tier. Reserved replicas are paid every hour; spot replicas count at (1 - interruption allowance) "
        "of their capacity and never towards the warm minimum; every replica started is billed its "
        "scale-up lead time (weights / load bandwidth) in the hour before. Utilisation is requests "
        "served / capacity counted.")


def rows(sched: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in sched["hourly"]:
        reps = {k: sum(m[k] for m in r["replicas"].values()) for k in KINDS}
        u, c = r["utilisation"], r["usd_per_million_tokens"]
        out.append([str(r["hour"]), f"{sum(r['demand_rps'].values()):.2f}", f"{sum(r['capacity_rps'].values()):.2f}",
                    *(str(reps[k]) for k in KINDS), "-" if u is None else f"{u:.0%}", f"{r['cost_usd']:.2f}",
                    "-" if c is None else f"{c:.3f}"])
    return out


def summary_lines(sched: dict[str, Any], unit_costs: dict[str, Any], peak_cost_usd_per_hour: float) -> list[str]:
    """Tiers used, the period's cost against the peak plan held all period, unit costs."""
    out = []
    for t in sched["tiers"]:
        extra = (f", term {t['term_months']} months" if t["term_months"] else "") + \
                (f", {t['discount']:.1%} below the provider's on-demand (same source)" if t["discount"] is not None else "")
        out.append(f"Tier {t['kind']} ({t['provider']}): ${t['usd_per_gpu_hour']:g}/GPU-h, {t['price_id']}{extra}")
    hours = sched["hours"]
    out.append(f"Cost over {hours} h: ${sched['cost_usd']:,.2f} (mean ${sched['cost_usd_per_hour_mean']:.2f}/h), "
               f"against ${peak_cost_usd_per_hour * hours:,.2f} for the peak plan held all period")
    pk, mn = unit_costs.get("peak") or {}, unit_costs["mean"]
    for key, label in (("usd_per_million_input_tokens", "$/M input tokens"),
                       ("usd_per_million_output_tokens", "$/M output tokens"),
                       ("usd_per_million_tokens", "$/M tokens (blended)"), ("usd_per_1k_requests", "$/1k requests")):
        p, m = pk.get(key), mn.get(key)
        out.append(f"{label}: at peak {'-' if p is None else f'{p:.4g}'}, averaged over the period "
                   f"{'-' if m is None else f'{m:.4g}'}")
    return out


def schedule_svg(sched: dict[str, Any]) -> str:
    """Three stacked panels over the hours: replicas per tier (bars) with demand (line, right
    axis), utilisation, and cost per million tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from solver.report.plots import COLORS, _svg

    hours = [r["hour"] for r in sched["hourly"]]
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 6.6), dpi=100, sharex=True,
                             gridspec_kw={"height_ratios": [2, 1, 1]})
    ax = axes[0]
    bottom = [0] * len(hours)
    for i, k in enumerate(KINDS):
        vals = [sum(m[k] for m in r["replicas"].values()) for r in sched["hourly"]]
        if any(vals):
            ax.bar(hours, vals, bottom=bottom, color=COLORS[i], label=k, width=0.85)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("replicas")
    twin = ax.twinx()
    twin.plot(hours, [sum(r["demand_rps"].values()) for r in sched["hourly"]], color="black", lw=1.5,
              label="demand (req/s)")
    twin.set_ylabel("demand, req/s")
    twin.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    util = [r["utilisation"] if r["utilisation"] is not None else float("nan") for r in sched["hourly"]]
    axes[1].plot(hours, [100 * u for u in util], color=COLORS[2], marker=".")
    axes[1].set_ylabel("utilisation, %")
    axes[1].set_ylim(0, 100)
    cost = [r["usd_per_million_tokens"] if r["usd_per_million_tokens"] is not None else float("nan")
            for r in sched["hourly"]]
    axes[2].plot(hours, cost, color=COLORS[3], marker=".")
    axes[2].set_ylabel("$ / M tokens")
    axes[2].set_xlabel("hour")
    for a in axes:
        a.grid(True, alpha=0.3)
    return _svg(fig)
