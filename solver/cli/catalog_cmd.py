"""``fleetplan catalog``: list, show and validate the catalogs; import models from HF configs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from solver.cli.output import emit_json, table
from solver.errors import InputError, unknown_id

if TYPE_CHECKING:
    from solver.catalog import Catalog

# solver.catalog (pydantic, YAML) is imported inside the commands: `--help` stays fast.

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
    "efficiency": ["id", "family", "eta_bw", "stream_kernel_us", "mfu_prefill", "mfu_decode",
                   "moe_layer_fixed_us", "mixed_input_gemm_efficiency", "measured", "error_pct"],
    "engines": ["id", "name", "kv_memory_policy", "kv_memory_fraction", "host_overhead_graph_ms",
                "host_overhead_eager_ms", "chunk_tokens"],
    "links": ["id", "latency_us", "bw_efficiency", "saturation_mb", "ramp"],
}
SINGULAR = {k.rstrip("s"): k for k in LIST_COLUMNS} | {
    "efficiency": "efficiency", "kv-dtype": "kv-dtypes", "gpu": "accelerators", "gpus": "accelerators",
    "quant": "quantizations", "quants": "quantizations",
}


def _kind(name: str) -> str:
    from solver.catalog import KINDS

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
    from solver.catalog import load_catalog

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
    from solver.catalog import load_catalog

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
    from solver.catalog import KINDS, load_catalog

    cat = load_catalog()
    counts = {kind: len(cat.entries(kind)) for kind in KINDS}
    if as_json:
        emit_json({"ok": True, "folder": str(cat.folder), "counts": counts})
    else:
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        click.echo(f"catalogs OK ({cat.folder}): {summary}")


def _entry_yaml(entry: Any) -> str:
    """A catalog entry as a YAML list item (``- id: ...``), the form ``models.yaml`` holds."""
    import yaml

    row = entry.model_dump(mode="json", exclude_none=True)
    for key, default in (("notes", ""), ("estimated", {}), ("tie_word_embeddings", False)):
        if row.get(key) == default:
            row.pop(key)
    if row.get("attention", {}).get("sliding_window_layers") == 0:
        row["attention"].pop("sliding_window_layers")
    tail = {k: row.pop(k) for k in ("source", "notes") if k in row}
    return yaml.safe_dump([row | tail], sort_keys=False, width=100, default_flow_style=False)


def _append_entry(out: str, entry: Any, text: str) -> str:
    """Append ``text`` (one list item) to the models list in ``out``; returns what was done."""
    from pathlib import Path

    from solver.loading import read_yaml

    path = Path(out)
    if not path.exists():
        path.write_text("models:\n" + _indent(text), encoding="utf-8")
        return f"wrote {path}"
    data = read_yaml(path)
    if data is None:
        path.write_text("models:\n" + _indent(text), encoding="utf-8")
        return f"wrote {path}"
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or set(data) != {"models"}:
        raise InputError("expected a file with only a top-level 'models' list", where=str(path))
    if any(isinstance(m, dict) and m.get("id") == entry.id for m in data["models"]):
        raise InputError(f"a model with id {entry.id!r} is already in the file", where=str(path))
    existing = path.read_text(encoding="utf-8")
    sep = "" if existing.endswith("\n") else "\n"
    path.write_text(existing + sep + _indent(text), encoding="utf-8")
    return f"appended {entry.id} to {path}"


def _indent(text: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))


@catalog.command("import-hf")
@click.argument("config", metavar="CONFIG.json", type=click.Path(dir_okay=False))
@click.option("--id", "model_id", required=True, help="Catalog id for the model (lower case, e.g. qwen3-8b).")
@click.option("--name", default=None, help="Display name [default: the Hugging Face repo name].")
@click.option("--hf-repo", default=None, metavar="ORG/REPO",
              help="Hugging Face repo [default: from a file named ORG--REPO_config.json, else the id].")
@click.option("--total-params-b", type=float, default=None,
              help="Published total parameters, billions [default: computed from the config].")
@click.option("--active-params-b", type=float, default=None,
              help="Published active parameters per token, billions [default: computed; = total if dense].")
@click.option("--source", default=None,
              help="Where the numbers come from [default: the repo's config.json address].")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Append the entry to this models YAML file (created if missing) instead of printing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as a JSON object.")
def import_hf_cmd(config: str, model_id: str, name: str | None, hf_repo: str | None,
                  total_params_b: float | None, active_params_b: float | None, source: str | None,
                  out: str | None, as_json: bool) -> None:
    """Turn a Hugging Face config.json into a validated model catalog entry.

    Reads a local CONFIG.json (no network) of model_type llama, mistral, mixtral, qwen2, qwen3,
    qwen3_moe, deepseek_v3, gpt_oss, gemma3 or llama4, and prints the entry as YAML, ready to
    paste under `models:` in catalogs/models.yaml. Give the published sizes with
    --total-params-b/--active-params-b; sizes left out are computed from the config and the
    entry's notes say so.

    \b
    Examples:
      fleetplan catalog import-hf Qwen--Qwen3-8B_config.json --id qwen3-8b --total-params-b 8.2
      fleetplan catalog import-hf config.json --id my-moe --hf-repo org/my-moe --json
      fleetplan catalog import-hf config.json --id my-moe --out my-models.yaml

    Exit code 2, with one line naming the file and key, for a malformed or unsupported config.
    """
    from solver.hf_import import import_hf_config

    entry = import_hf_config(
        config, model_id, name=name, total_params_b=total_params_b,
        active_params_b=active_params_b, source=source, hf_repo=hf_repo,
    )
    if as_json and out is None:
        emit_json(entry)
        return
    text = _entry_yaml(entry)
    if out is not None:
        done = _append_entry(out, entry, text)
        if as_json:
            emit_json({"ok": True, "message": done, "entry": entry})
        else:
            click.echo(done)
        return
    click.echo(text, nl=False)
