"""Plots for the HTML report, drawn with matplotlib and returned as inline SVG text.

Output is byte-for-byte reproducible (fixed SVG hash salt, no date metadata), so a checked-in
report can be compared with a fresh one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = ["#1f6fb4", "#e0701b", "#2a9d4b", "#c4312f", "#7e57c2", "#8c564b"]
MEMORY_PARTS = (("weights", "#1f6fb4"), ("kv", "#2a9d4b"), ("activations", "#e0a01b"),
                ("overhead", "#8c8c8c"), ("free", "#e6e6e6"))


@dataclass(frozen=True)
class Curve:
    """A throughput-latency curve of one configuration, with its operating point and knee."""

    label: str
    tpot_ms: Sequence[float]
    output_tokens_per_s: Sequence[float]
    operating_index: int | None
    knee_index: int | None


def _svg(fig: plt.Figure) -> str:
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": "fleetplan", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # Drop the RDF metadata block: it only names the generator.
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if start != -1 and end != -1:
        text = text[:start] + text[end + len("</metadata>"):]
    return text


def _fig(width: float = 6.4, height: float = 3.6) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def pareto_svg(costs: Sequence[float], values: Sequence[float], chosen: tuple[float, float] | None,
               value_label: str) -> str:
    """Cost (x) against the swept axis (y), the front as a step line, the chosen plan marked."""
    fig, ax = _fig()
    order = sorted(range(len(costs)), key=lambda i: costs[i])
    xs = [costs[i] for i in order]
    ys = [values[i] for i in order]
    ax.step(xs, ys, where="post", color=COLORS[0], alpha=0.5)
    ax.plot(xs, ys, "o", color=COLORS[0], label="Pareto-optimal plans")
    if chosen is not None:
        ax.plot([chosen[0]], [chosen[1]], marker="*", markersize=16, color=COLORS[1],
                linestyle="none", label="chosen plan")
    ax.set_xlabel("fleet cost (USD per hour)")
    ax.set_ylabel(value_label)
    ax.legend(loc="best", frameon=False)
    return _svg(fig)


def memory_svg(labels: Sequence[str], parts: Sequence[dict[str, float]], hbm_gib: Sequence[float]) -> str:
    """Per-GPU memory budget of each configuration as stacked horizontal bars (GiB)."""
    fig, ax = _fig(6.4, 0.9 + 0.55 * len(labels))
    left = [0.0] * len(labels)
    for name, color in MEMORY_PARTS:
        widths = [p.get(name, 0.0) for p in parts]
        ax.barh(labels, widths, left=left, color=color, label=name, edgecolor="white")
        left = [a + b for a, b in zip(left, widths)]
    for i, cap in enumerate(hbm_gib):
        ax.plot([cap, cap], [i - 0.4, i + 0.4], color="black", linewidth=1)
    ax.set_xlabel("GiB per GPU (black tick: HBM capacity)")
    ax.invert_yaxis()
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _svg(fig)


def curves_svg(curves: Sequence[Curve], tpot_targets_ms: Sequence[tuple[str, float]] = ()) -> str:
    """Output tokens/s per replica (x) against TPOT (y) as concurrency grows, with one dashed
    TPOT target line per (model name, target) pair: models with different targets get their
    own lines."""
    fig, ax = _fig()
    for i, c in enumerate(curves):
        color = COLORS[i % len(COLORS)]
        ax.plot(c.output_tokens_per_s, c.tpot_ms, "-", color=color, label=c.label)
        if c.operating_index is not None:
            j = c.operating_index
            ax.plot([c.output_tokens_per_s[j]], [c.tpot_ms[j]], "o", color=color, markersize=8)
        if c.knee_index is not None:
            k = c.knee_index
            ax.plot([c.output_tokens_per_s[k]], [c.tpot_ms[k]], "D", markerfacecolor="none",
                    markeredgecolor=color, markersize=9)
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
    for i, (name, target) in enumerate(tpot_targets_ms):
        ax.axhline(target, color="#c4312f", linestyle=styles[i % len(styles)], linewidth=1,
                   label=f"TPOT target {name} ({target:g} ms)")
    ax.set_xlabel("output tokens/s per replica")
    ax.set_ylabel("TPOT (ms)")
    ax.legend(loc="upper left", frameon=False, fontsize=8,
              title="dot: operating point, diamond: knee", title_fontsize=8)
    return _svg(fig)
