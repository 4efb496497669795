"""Render :class:`ReportContent` as Markdown, a self-contained HTML page and JSON.

All text that comes from users (problem names, descriptions, model names) is escaped: in HTML
by entity escaping, in Markdown by :func:`md_escape` (no headings, links, images or raw HTML can
be injected through a name), and control characters are dropped in both. Output is
deterministic: no timestamps or wall-clock timings, so a stale checked-in report shows as a diff.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from typing import Any

from solver import __version__
from solver.labels import axis_targets, config_label, per_model_values, share_of_target
from solver.report.chain_figure import chain_figures, chain_mermaid
from solver.report.content import DeploymentView, ReportContent, problem_paragraph
from solver.confidence import REPORT_HEADERS as CONF_HEADERS, report_section

REPORT_SCHEMA_VERSION = 1
AXIS_LABELS = {
    "ttft": ("ttft_p99_ms", "worst p99 TTFT (ms)"),
    "tpot": ("tpot_p99_ms", "worst p99 TPOT (ms)"),
    "e2e": ("e2e_p99_ms", "worst p99 end-to-end (ms)"),
    "quality": ("quality_loss_points", "worst quality loss (points)"),
}
_AXIS_NAMES = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "end-to-end"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|]|<(?=[A-Za-z/!?]))")


def clean(text: str) -> str:
    """``text`` without control characters (a NUL in a name must not reach a report)."""
    return _CONTROL.sub("", str(text))


def md_escape(text: str) -> str:
    """User text made inert in Markdown, on one line: characters that open markup (emphasis,
    code, links, images, table cells, and ``<`` before a tag or autolink) are backslash-escaped,
    ``&`` becomes an entity, a leading list/quote/heading marker is escaped, line breaks become
    spaces (so no heading can start inside a name)."""
    text = " ".join(clean(text).replace("&", "&amp;").split())
    text = _MD_SPECIAL.sub(r"\\\1", text)
    if text[:1] in "-+=>#" and text:
        text = "\\" + text
    return re.sub(r"^(\d{1,9})([.)])(?=\s|$)", r"\1\\\2", text)


def axis_label(content: ReportContent) -> tuple[str, str]:
    """(point key, axis label) of the Pareto axis, naming the latency percentile: the models'
    common percentile, or 'at each model's target percentile' when they differ."""
    axis = content.pareto_axis or "ttft"
    key, label = AXIS_LABELS.get(axis, AXIS_LABELS["ttft"])
    if axis in _AXIS_NAMES:
        pcts = {d.slo.percentile(axis) for d in content.problem.models}
        name = _AXIS_NAMES[axis]
        label = (f"worst p{pcts.pop():g} {name} (ms)" if len(pcts) == 1
                 else f"worst {name} at each model's target percentile (ms)")
    return key, label


def _num(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def _with_slo(value: float, pct: float, target: float | None) -> str:
    """A latency with its percentile and target: ``123.4 p90 (<= 500)``."""
    return _num(value, 1) + f" p{pct:g}" + (f" (<= {target:g})" if target is not None else "")


PLAN_HEADERS = ["model", "accelerator", "quant", "quality loss (points)", "KV", "TP/PP/EP", "batch cap",
                "replicas", "GPUs", "$/h", "$/M in tok", "$/M out tok", "$/M tok", "$/1k req",
                "TTFT ms (pct, SLO)", "TPOT ms (pct, SLO)", "bound"]


def _parallel_cell(d: Any) -> str:
    """``TP/PP/EP`` of a replica (``d``: a :class:`~solver.plan.Deployment`); a disaggregated unit names both pools (``disaggregated: 2x
    prefill 1/1/1 + 1x decode 2/1/1``; its batch cap is the decode pool's)."""
    if d.pools:
        return "disaggregated: " + " + ".join(f"{p.replicas}x {p.role} {p.tp}/{p.pp}/{p.ep}" for p in d.pools)
    return (f"{d.tp}/{d.pp}/{d.ep}" + (f" x MoE-TP{d.moe_tp}" if d.moe_tp else "")
            + (f" (DP{d.shape.dp_attn})" if d.shape.stage_gpus > d.tp else ""))


def plan_rows(content: ReportContent) -> list[list[str]]:
    rows = []
    for v in content.deployments:
        d, c = v.deployment, v.costs
        rows.append([
            d.model, d.accelerator + (f" ({d.partition})" if d.partition else ""), d.quant,
            _num(v.quality_loss_points), d.kv_dtype,
            _parallel_cell(d), str(d.max_batch),
            str(d.replicas), str(d.total_gpus), _num(d.cost_usd_per_hour), _num(c.usd_per_million_input_tokens, 3),
            _num(c.usd_per_million_output_tokens, 3), _num(c.usd_per_million_tokens, 3),
            _num(c.usd_per_1k_requests, 3),
            _with_slo(d.ttft_p99_ms, v.percentiles["ttft"], v.slo["ttft_ms"]),
            _with_slo(d.tpot_p99_ms, v.percentiles["tpot"], v.slo["tpot_ms"]), v.bound,
        ])
    return rows


MEMORY_HEADERS = ["model", "config", "weights GiB", "KV GiB", "activations GiB", "overhead GiB",
                  "free GiB", "reserved GiB", "HBM GiB"]


CHAIN_HEADERS = ["application", "path", "stage e2e p99 (ms)", "path ms", "budget ms"]


def chain_rows(content: ReportContent) -> list[list[str]]:
    """One row per application path: each stage's e2e p99 in the plan, their sum, the budget."""
    rows = []
    for r in content.plan.applications:
        stages = " + ".join((f"{s['calls']} x " if s["calls"] > 1 else "") + f"{s['model']} {_num(s['e2e_p99_ms'], 0)}"
                            for s in r["stages"])
        rows.append([r["application"], r["path"], stages, _num(r["latency_ms"], 0),
                     "-" if r["budget_ms"] is None else _num(r["budget_ms"], 0)])
    return rows


GUARD_HEADERS = ["model", "max input tokens", "max new tokens", "queue limit", "circuit breaker at",
                 "min warm replicas", "scale-up lead time (s)", "alerts"]


def guard_rows(content: ReportContent) -> list[list[str]]:
    """One row per planned model: the request, queue and scaling limits to configure with the
    plan (solver.guardrails), and how many alert targets come with it."""
    return [[g["model"], str(g["max_input_tokens"]), str(g["max_new_tokens"]), str(g["queue_limit"]),
             str(g["circuit_breaker_queue"]), str(g["min_warm_replicas"]), _num(g["scale_up_lead_time_s"], 1),
             str(len(g["alerts"]))] for g in content.plan.guardrails]


GUARD_NOTE = ("Queue limit = longest tolerable wait x arrival rate; the breaker trips below it. The lead "
              "time is a lower bound (weights over the host link; storage, download and engine start come "
              "on top). Alert targets are in the JSON (plan.guardrails[].alerts).")


CHAIN_NOTE = ("Each path's latency is the sum over its stages of calls x the stage's e2e p99 (its "
              "slowest configuration, at the planned load); the solver keeps every path within the "
              "application's budget.")


def memory_rows(content: ReportContent) -> list[list[str]]:
    rows = []
    for v in content.deployments:
        d, m = v.deployment, v.memory_gib
        rows.append([d.model, config_label(d), _num(m["weights"]),
                     _num(m["kv"]), _num(m["activations"]), _num(m["overhead"]), _num(m["free"]),
                     _num(m["reserved"]), _num(v.hbm_gib)])
    return rows


def _axis_targets(content: ReportContent) -> dict[str, float]:
    return axis_targets(content.problem, content.pareto_axis or "ttft")


def target_share(content: ReportContent, point: dict[str, Any]) -> float | None:
    return share_of_target(content.problem, content.pareto_axis or "ttft", point)


def _multi(content: ReportContent) -> bool:
    return len(_axis_targets(content)) > 1


def pareto_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    """Pareto table. With several models targeting the axis, the worst latency is shown per
    model and as the worst share of each model's own target (one raw worst over models would
    track the model with the largest target only)."""
    key, label = axis_label(content)
    models = sorted(_axis_targets(content)) if _multi(content) else []
    name = _AXIS_NAMES.get(content.pareto_axis or "ttft", "")
    headers = ["#", "cost $/h"] + ([f"worst {name} / target"] + [f"{m} {name} ms" for m in models]
                                   if models else [label]) + ["configurations"]
    rows = []
    for i, p in enumerate(content.pareto_points, 1):
        configs = "; ".join(f"{d['model']}: {d['replicas']} x {config_label(d)}" for d in p["deployments"])
        if models:
            vals = per_model_values(content.pareto_axis or "ttft", p)
            middle = [_num(target_share(content, p), 2)] + [_num(vals.get(m), 1) for m in models]
        else:
            middle = [_num(p[key], 1)]
        rows.append([str(i), _num(p["cost_usd_per_hour"])] + middle + [configs])
    return headers, rows


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = md_escape
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _headline(content: ReportContent) -> str:
    p = content.plan
    if not content.feasible:
        return f"No plan meets every constraint (status: {p.status.value})."
    gpus = sum(s.gpus_used for s in p.systems)  # GPUs shared by several models count once
    text = f"Cheapest plan: **${p.cost_usd_per_hour:,.2f} per hour** on {gpus} GPUs ({p.status.value}"
    if p.gap:
        text += f", gap {p.gap:.1%}"
    return text + ")."


def to_markdown(content: ReportContent) -> str:
    pr = content.problem
    out = [f"# fleetplan report: {md_escape(pr.name)}", ""]
    if pr.description:
        out += [md_escape(pr.description), ""]
    out += ["## Problem", "", md_escape(problem_paragraph(pr)), "", "## Result", "", _headline(content), ""]
    if not content.feasible:
        out += ["Why: the constraint families below conflict; relax at least one of them.", ""]
        out += [f"- {md_escape(s)}" for s in content.plan.explanation] + [""]
    else:
        out += ["## Chosen plan", "", _md_table(PLAN_HEADERS, plan_rows(content)), "",
                "Costs per million tokens (input, output, both) and per thousand requests are at peak "
                "traffic (headroom is spare capacity). Latencies are at each target's percentile. "
                "Quality loss is the format's published loss against bf16 (catalog).", "",
                *(["## Applications", "", _md_table(CHAIN_HEADERS, chain_rows(content)), "", CHAIN_NOTE, "",
                   *_chain_drawings_md(content)]
                  if content.plan.applications else []),
                *(["## Guardrails", "", _md_table(GUARD_HEADERS, guard_rows(content)), "", GUARD_NOTE, ""]
                  if content.plan.guardrails else []),
                "## Memory budget per GPU", "", _md_table(MEMORY_HEADERS, memory_rows(content)), "",
                "At the batch cap with every slot holding a p99 prompt plus a p99 output; "
                "'reserved' is the share of HBM the utilisation cap keeps back.", ""]
        if content.confidence is not None:
            text, rows = report_section(content.confidence)
            out += ["## Cost of confidence", "", md_escape(text), ""]
            out += [_md_table(CONF_HEADERS, rows), ""] if rows else []
        out += ["## Binding constraints", ""]
        out += [f"- {md_escape(b)}" for b in content.binding] if content.binding else ["- none found"]
        out += [""]
        if content.pareto_points:
            headers, rows = pareto_rows(content)
            out += [f"## Pareto set (cost vs {md_escape(content.pareto_axis or '')})", "", _md_table(headers, rows), ""]
        out += _schedule_md(content)
    out += _assumptions_md(content)
    return "\n".join(out).rstrip() + "\n"


def _chain_drawings_md(content: ReportContent) -> list[str]:
    """One Mermaid drawing per application (rendered as a diagram by GitHub and other viewers)."""
    out = []
    for fig in chain_figures(content.problem.applications, content.plan.deployments):
        out += [f"### Chain {md_escape(fig.application)}", "", "```mermaid", chain_mermaid(fig), "```", "",
                md_escape(fig.caption), ""]
    return out


def _schedule_md(content: ReportContent) -> list[str]:
    """The purchasing schedule over the day (problems with hourly demand only)."""
    from solver.report import schedule as sch

    d = content.schedule
    if not d or not d.get("schedule"):
        return []
    peak = content.plan.cost_usd_per_hour or 0.0
    return ["## Demand over the day and purchasing", "",
            *[f"- {md_escape(x)}" for x in sch.summary_lines(d["schedule"], d["unit_costs"], peak)], "",
            _md_table(sch.HEADERS, sch.rows(d["schedule"])), "", sch.NOTE, ""]


def _assumptions_md(content: ReportContent) -> list[str]:
    a = content.assumptions
    out = ["## Assumptions", ""]
    out.append("- Headroom: " + ", ".join(f"{k} {v:.0%}" for k, v in a["headroom"].items()))
    out.append(f"- Pricing: {a['pricing']}")
    for pid, p in a["prices"].items():
        out.append(f"- Price {pid}: ${p['usd_per_gpu_hour']:g}/GPU-h ({md_escape(p['provider'])}, {p['pricing']}, "
                   f"read {p['date']})")
    for g, e in a["efficiency"].items():
        out.append(f"- Efficiency on {g} ({e['id']}): bandwidth {e['eta_bw']:.2f} (half at "
                   f"{e['stream_kernel_us']:g} us fixed per kernel), prefill MFU {e['mfu_prefill']:.2f}, decode MFU "
                   f"{e['mfu_decode']:.2f}, MoE layer fixed time {e['moe_layer_fixed_us']:g} us")
    for k, e in a.get("engines", {}).items():
        out.append(f"- Engine {k}: host time per step {e['host_overhead_graph_ms']:g} ms (CUDA graph) / "
                   f"{e['host_overhead_eager_ms']:g} ms (with a prefill chunk), chunk {e['chunk_tokens']} tokens")
    for k, b in a.get("error_bands", {}).items():
        out.append(f"- Error band of {md_escape(k)}: +-{b['sigma']:.0%} (1 sigma) on step times ({md_escape(b['source'])})")
    for cid in a.get("calibrations", []):
        out.append(f"- Calibration in effect: {md_escape(cid)} (fitted factors for that model, accelerator, format and engine)")
    if a.get("confidence") is not None:
        out.append(f"- Planned at confidence {a['confidence']:g}: step times x exp(z x band), the upper latency bound")
    out += ["", "## What the model does not capture", ""] + [f"- {s}" for s in a["not_captured"]]
    return out


def to_json(content: ReportContent) -> dict[str, Any]:
    """The machine-readable report (schema documented in README, versioned)."""
    plan = content.plan.to_dict()
    plan.pop("solve_seconds", None)  # wall-clock: would make reports non-reproducible
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "fleetplan_version": __version__,
        "problem": content.problem.model_dump(mode="json"),
        "plan": plan,
        "deployments": [
            {
                "model": v.deployment.model,
                "accelerator": v.deployment.accelerator,
                "usd_per_million_output_tokens": v.usd_per_million_output_tokens,
                "output_tokens_per_s_at_peak": v.output_tokens_per_s_at_peak,
                "bound": v.bound,
                "memory_gib_per_gpu": v.memory_gib,
                "hbm_gib": v.hbm_gib,
                "quality_loss_points": v.quality_loss_points,
                "latency_percentiles": v.percentiles,
                "unit_costs": v.costs.to_dict(),
            }
            for v in content.deployments
        ],
        "unit_costs": content.plan.unit_costs.to_dict() if content.plan.unit_costs is not None else {},
        "binding": list(content.binding),
        "pareto": {"axis": content.pareto_axis, "points": list(content.pareto_points)},
        "assumptions": content.assumptions,
        **({"confidence": content.confidence} if content.confidence is not None else {}),
        **({"purchasing": content.schedule} if content.schedule is not None else {}),
    }


def to_json_text(content: ReportContent) -> str:
    return json.dumps(to_json(content), indent=2, allow_nan=False) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ddd;padding:.3em .5em;
text-align:left}th{background:#f4f6f8}.headline{font-size:1.1em}.bad{color:#b3261e}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
"""


def _e(text: str) -> str:
    """HTML-escaped user text without control characters."""
    return html.escape(clean(text))


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = _e
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str, fig_id: str) -> str:
    return f'<figure id="{fig_id}" class="plot">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _plots(content: ReportContent) -> list[str]:
    from solver.report import plots  # matplotlib loads with the first figure drawn

    figs = []
    views: Sequence[DeploymentView] = content.deployments
    if content.pareto_points:
        key, label = axis_label(content)
        costs = [p["cost_usd_per_hour"] for p in content.pareto_points]
        vals = [p[key] for p in content.pareto_points]
        chosen = None
        if content.plan.cost_usd_per_hour is not None and key != "quality_loss_points":
            worst = max((getattr(v.deployment, key) for v in views), default=0.0)
            chosen = (content.plan.cost_usd_per_hour, worst)
        if _multi(content):  # compare models on their own targets (see pareto_rows)
            name = _AXIS_NAMES[content.pareto_axis or "ttft"]
            label = f"worst {name} as a share of each model's target"
            vals = [target_share(content, p) or 0.0 for p in content.pareto_points]
            if chosen is not None:
                here = {"deployments": [{"model": v.deployment.model, key: getattr(v.deployment, key)} for v in views]}
                chosen = (chosen[0], target_share(content, here) or 0.0)
        figs.append(_figure(plots.pareto_svg(costs, vals, chosen, label),
                            "Cost-latency Pareto front; the star is the chosen plan.", "plot-pareto"))
    if views:
        figs.append(_figure(
            plots.memory_svg([f"{v.deployment.model}: {config_label(v.deployment)}" for v in views],
                             [v.memory_gib for v in views], [v.hbm_gib for v in views]),
            "Memory budget per GPU at the batch cap (p99 prompt + p99 output per slot).", "plot-memory"))
        targets = sorted({(d.name, d.slo.tpot.max_ms) for d in content.problem.models
                          if d.slo.tpot is not None and any(v.deployment.model == d.name for v in views)},
                         key=lambda t: (t[1], t[0]))
        figs.append(_figure(
            plots.curves_svg([v.curve for v in views], targets),
            "Throughput-latency curve of each chosen configuration at p50 lengths; dot: batch cap, "
            "diamond: knee.", "plot-curves"))
    return figs


def to_html(content: ReportContent) -> str:
    e = _e
    pr = content.problem
    parts = [f"<h1>fleetplan report: {e(pr.name)}</h1>"]
    if pr.description:
        parts.append(f"<p>{e(pr.description.strip())}</p>")
    parts += ["<h2>Problem</h2>", f"<p>{e(problem_paragraph(pr))}</p>", "<h2>Result</h2>"]
    headline = e(_headline(content)).replace("**", "")
    if not content.feasible:
        parts.append(f'<p class="headline bad">{headline}</p>')
        parts.append("<p>Why: the constraint families below conflict; relax at least one of them.</p><ul>")
        parts += [f"<li>{e(s)}</li>" for s in content.plan.explanation] + ["</ul>"]
    else:
        parts.append(f'<p class="headline">{headline}</p>')
        parts += ["<h2>Chosen plan</h2>", _html_table(PLAN_HEADERS, plan_rows(content))]
        if content.plan.applications:
            parts += ["<h2>Applications</h2>", _html_table(CHAIN_HEADERS, chain_rows(content)),
                      f"<p>{e(CHAIN_NOTE)}</p>"]
            from solver.report.chain_figure import chain_svg

            parts += [_figure(chain_svg(fig), fig.caption, f"chain-{fig.application}")
                      for fig in chain_figures(content.problem.applications, content.plan.deployments)]
        if content.plan.guardrails:
            parts += ["<h2>Guardrails</h2>", _html_table(GUARD_HEADERS, guard_rows(content)),
                      f"<p>{e(GUARD_NOTE)}</p>"]
        parts += ["<h2>Memory budget per GPU</h2>", _html_table(MEMORY_HEADERS, memory_rows(content))]
        if content.confidence is not None:
            text, rows = report_section(content.confidence)
            parts += ["<h2>Cost of confidence</h2>", f"<p>{e(text)}</p>"]
            parts += [_html_table(CONF_HEADERS, rows)] if rows else []
        parts += ["<h2>Binding constraints</h2><ul>"]
        parts += [f"<li>{e(b)}</li>" for b in content.binding] or ["<li>none found</li>"]
        parts.append("</ul>")
        if content.pareto_points:
            headers, rows = pareto_rows(content)
            parts += [f"<h2>Pareto set (cost vs {e(content.pareto_axis or '')})</h2>", _html_table(headers, rows)]
        if content.schedule and content.schedule.get("schedule"):
            from solver.report import schedule as sch

            d = content.schedule
            parts += ["<h2>Demand over the day and purchasing</h2><ul>"]
            parts += [f"<li>{e(x)}</li>" for x in sch.summary_lines(d["schedule"], d["unit_costs"],
                                                                   content.plan.cost_usd_per_hour or 0.0)]
            parts += ["</ul>", _html_table(sch.HEADERS, sch.rows(d["schedule"])), f"<p>{e(sch.NOTE)}</p>",
                      _figure(sch.schedule_svg(d["schedule"]), "Replicas per hour by price tier against demand "
                              "(line), utilisation, and cost per million tokens over the day.", "plot-schedule")]
        parts += ["<h2>Plots</h2>"] + _plots(content)
    md_assumptions = _assumptions_md(content)
    parts.append("<h2>Assumptions</h2><ul>")
    for line in md_assumptions[2:]:
        if line.startswith("## "):
            parts.append(f"</ul><h2>{e(line[3:])}</h2><ul>")
        elif line.startswith("- "):
            parts.append(f"<li>{e(line[2:])}</li>")
    parts.append("</ul>")
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>fleetplan: {e(pr.name)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
        f"<footer><p><small>fleetplan {e(__version__)}</small></p></footer>\n</body></html>\n"
    )
