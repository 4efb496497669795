"""``fleetplan catalog``: list, show and validate the catalogs; import models from HF configs."""

from __future__ import annotations

from typing import Any

import click

from solver.catalog import KINDS, Catalog, load_catalog
from solver.cli.output import emit_json, table
from solver.errors import InputError, unknown_id

# Columns shown by `catalog list KIND` (JSON output always has every field).
LIST_COLUMNS: dict[str, list[str]] = {
    "accelerators": ["id", "name", "hbm_gib", "hbm_tb_s", "bf16_tflops", "fp8_tflops",
                     "fp4_tflops", "scaleup_domain_gpus", "tdp_w"],
    "systems": ["id", "accelerator", "gpus_per_node", "scaleup_domain_gpus", "intra_node_link",
                "intra_node_gb_s", "scaleout_gb_s_per_gpu"],
    "models": ["id", "total_params_b", "active_params_b", "num_layers", "hidden_size",
               "attention_kind", "experts", "max_context"],
    "quantizations": ["id", "weight_bits", "bytes_per_weight", "compute_dtype", "kv_dtypes",
                      "quality_loss_points"],
    "kv-dtypes": ["id", "bytes_per_element"],
    "prices": ["id", "accelerator", "provider", "pricing", "usd_per_gpu_hour", "date"],
    "efficiency": ["id", "family", "engine", "eta_bw", "mfu_prefill", "mfu_decode",
                   "step_overhead_ms"],
}
SINGULAR = {k.rstrip("s"): k for k in KINDS} | {
    "efficiency": "efficiency", "kv-dtype": "kv-dtypes", "gpu": "accelerators", "gpus": "accelerators",
    "quant": "quantizations", "quants": "quantizations",
}


def _kind(name: str) -> str:
    name = name.lower()
    if name in KINDS:
        return name
    if name in SINGULAR:
        return SINGULAR[name]
    raise InputError(unknown_id("catalog kind", name, KINDS))


def describe(cat: Catalog, kind: str, entry_id: str) -> dict[str, Any]:
    """One entry as a flat-ish dict with the derived facts a reader wants beside it."""
    entry = cat.entries(kind)[entry_id]
    row: dict[str, Any] = entry.model_dump(mode="json")
    if kind == "accelerators":
        for dtype, v in entry.dense_tflops.items():
            row[f"{dtype}_tflops"] = v
        row["quantizations"] = {q: cat.quant_support(entry_id, q) for q in cat.supported_quantizations(entry_id)}
        row["systems"] = [s.id for s in cat.systems_for(entry_id)]
    elif kind == "models":
        row["attention_kind"] = entry.attention.kind
        row["experts"] = f"{entry.moe.experts_per_token}/{entry.moe.num_experts}" if entry.moe else None
    elif kind == "quantizations":
        row["bytes_per_weight"] = round(entry.bytes_per_weight, 4)
        row["quality_loss_points"] = entry.quality_loss.points
    return row


@click.group()
def catalog() -> None:
    """Browse and check the hardware, model, format and price catalogs.

    \b
    KIND is one of: accelerators, systems, models, quantizations, kv-dtypes, prices, efficiency
    (singular forms work too). Every number in a catalog carries its source; see
    `fleetplan catalog show KIND ID`.
    """


@catalog.command("list")
@click.argument("kind")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects, each with its id.")
def list_cmd(kind: str, as_json: bool) -> None:
    """List the entries of one catalog KIND."""
    kind = _kind(kind)
    cat = load_catalog()
    rows = [describe(cat, kind, i) for i in sorted(cat.entries(kind))]
    if as_json:
        emit_json(rows)
    else:
        click.echo(table(rows, LIST_COLUMNS[kind]))


@catalog.command("show")
@click.argument("kind")
@click.argument("entry_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as a JSON object.")
def show_cmd(kind: str, entry_id: str, as_json: bool) -> None:
    """Show one entry in full, with its sources."""
    kind = _kind(kind)
    cat = load_catalog()
    if entry_id not in cat.entries(kind):
        raise InputError(unknown_id(kind.rstrip("s"), entry_id, cat.entries(kind)))
    row = describe(cat, kind, entry_id)
    if as_json:
        emit_json(row)
        return
    width = max(len(k) for k in row)
    for key, value in row.items():
        if value in (None, "", {}, []):
            continue
        click.echo(f"{key.ljust(width)}  {value}")


@catalog.command("validate")
@click.option("--json", "as_json", is_flag=True, help="Print counts per kind as JSON.")
def validate_cmd(as_json: bool) -> None:
    """Load and cross-check every catalog file; exit 2 naming the first problem."""
    cat = load_catalog()
    counts = {kind: len(cat.entries(kind)) for kind in KINDS}
    if as_json:
        emit_json({"ok": True, "folder": str(cat.folder), "counts": counts})
    else:
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        click.echo(f"catalogs OK ({cat.folder}): {summary}")
