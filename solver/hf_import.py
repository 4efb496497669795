"""Build a catalog :class:`ModelArch` from a Hugging Face ``config.json`` on disk (no network).

Supported ``model_type`` values: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, deepseek_v3,
gpt_oss, gemma3 / gemma3_text (text config nested under ``text_config`` for ``gemma3``) and
llama4 (text config under ``text_config``). How each family's keys map onto the schema:

* **kv heads** -- ``num_key_value_heads``; absent means MHA (= ``num_attention_heads``), which is
  what ``transformers`` does. ``head_dim`` absent means ``hidden_size / num_attention_heads``.
* **sliding windows** -- mistral/mixtral: ``sliding_window`` (when not null) on every layer;
  qwen2/qwen3: only when ``use_sliding_window`` is true, on layers >= ``max_window_layers``;
  gpt_oss / gemma3: the ``sliding_attention`` entries of ``layer_types``, or for gemma3 without
  ``layer_types`` every layer but each ``sliding_window_pattern``-th (default 6);
  llama4: chunked attention (``attention_chunk_size``) on the RoPE layers -- all but every
  ``no_rope_layer_interval``-th (default 4) -- stored as a sliding window of the chunk size,
  which bounds the KV those layers keep the same way.
* **MoE layers** -- mixtral/gpt_oss: every layer; qwen3_moe: layer i unless in ``mlp_only_layers``
  and when ``(i+1) % decoder_sparse_step == 0``; deepseek_v3: i >= ``first_k_dense_replace`` and
  ``i % moe_layer_freq == 0``; llama4: ``moe_layers`` or every ``interleave_moe_layer_step``-th
  layer, with one shared expert of ``intermediate_size`` and dense layers of
  ``intermediate_size_mlp``.
* **MLA** (deepseek_v3) -- ``head_dim`` is stored as the q.k head size ``qk_nope + qk_rope``.
* **gemma3 defaults** -- the Hub configs of Gemma 3 omit keys that take ``transformers``'
  ``Gemma3TextConfig`` defaults: vocab_size 262208, max_position_embeddings 131072,
  tie_word_embeddings true, sliding_window_pattern 6. Defaults used are listed in ``notes``.
* **native quantisation** -- from ``quantization_config.quant_method``: fp8 -> fp8, mxfp4 ->
  mxfp4; otherwise bf16.

Totals not given are computed with :func:`solver.architecture.param_counts` and the notes say so.
Any problem (unreadable file, malformed JSON, unsupported model_type, missing or mistyped key)
is one :class:`InputError` line naming the file and the key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from solver.architecture import param_counts
from solver.errors import InputError
from solver.loading import MAX_DEPTH, check_shape, read_text, validate
from solver.schemas import ModelArch

SUPPORTED_MODEL_TYPES: tuple[str, ...] = (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3", "gpt_oss",
    "gemma3", "gemma3_text", "llama4",
)

# transformers' Gemma3TextConfig defaults for keys the Hub configs of Gemma 3 leave out.
_GEMMA3_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262208,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": True,
    "sliding_window_pattern": 6,
}
_QUANT_METHODS = {"fp8": "fp8", "mxfp4": "mxfp4"}
_FILENAME_REPO = re.compile(r"^(?P<org>[A-Za-z0-9_.\-]+)--(?P<repo>[A-Za-z0-9_.\-]+?)_config\.json$")


class _Cfg:
    """A config dict plus where it came from, with typed, error-reporting getters."""

    def __init__(self, data: dict[str, Any], where: str, prefix: str = "") -> None:
        self.data = data
        self.where = where
        self.prefix = prefix
        self.defaults_used: list[str] = []

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        v = self.data.get(key)
        return default if v is None else v

    def integer(self, key: str, default: int | None = None, *, min_value: int = 1) -> int:
        """A required (or defaulted) integer >= ``min_value``."""
        v = self.data.get(key)
        if v is None:
            if default is None:
                raise InputError(f"missing key {self._name(key)!r}", where=self.where)
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < min_value:
            raise InputError(
                f"key {self._name(key)!r} must be an integer >= {min_value} (got {v!r})",
                where=self.where,
            )
        return v

    def opt_int(self, key: str) -> int | None:
        """An optional positive integer (None when absent or null)."""
        return self.integer(key) if self.has(key) else None

    def flag(self, key: str, default: bool) -> bool:
        v = self.data.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise InputError(f"key {self._name(key)!r} must be true or false (got {v!r})", where=self.where)
        return v

    def int_list(self, key: str) -> list[int]:
        v = self.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            raise InputError(f"key {self._name(key)!r} must be a list of integers", where=self.where)
        return v

    def str_list(self, key: str) -> list[str] | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
            raise InputError(f"key {self._name(key)!r} must be a list of strings", where=self.where)
        return v

    def gemma_default(self, key: str) -> Any:
        if self.has(key):
            return self.data[key]
        self.defaults_used.append(f"{key}={_GEMMA3_DEFAULTS[key]}")
        return _GEMMA3_DEFAULTS[key]


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """Parse a ``config.json``; unreadable or malformed files are one ``InputError`` line."""
    p = Path(path)
    text = read_text(p, "a config.json file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}", where=str(p)) from None
    except RecursionError:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels", where=str(p)) from None
    check_shape(data, str(p))
    if not isinstance(data, dict):
        raise InputError("expected a JSON object at the top level", where=str(p))
    return data


def _layer_count(layer_types: list[str] | None, kind: str, n_layers: int, where: str) -> int | None:
    if layer_types is None:
        return None
    if len(layer_types) != n_layers:
        raise InputError(
            f"key 'layer_types' has {len(layer_types)} entries for {n_layers} layers", where=where
        )
    return sum(1 for t in layer_types if t == kind)


def _attention(model_type: str, c: _Cfg, n_layers: int, heads: int, kv: int) -> dict[str, Any]:
    """The ``attention`` block of the entry."""
    if model_type == "deepseek_v3":
        return {
            "kind": "mla",
            "kv_lora_rank": c.integer("kv_lora_rank"),
            "q_lora_rank": c.opt_int("q_lora_rank"),
            "qk_rope_head_dim": c.integer("qk_rope_head_dim"),
            "qk_nope_head_dim": c.integer("qk_nope_head_dim"),
            "v_head_dim": c.integer("v_head_dim"),
        }
    att: dict[str, Any] = {"kind": "mha" if kv == heads else "gqa"}
    window: int | None = None
    local = 0
    if model_type in ("mistral", "mixtral"):
        window = c.opt_int("sliding_window")
        local = n_layers if window else 0
    elif model_type in ("qwen2", "qwen3", "qwen3_moe"):
        if c.flag("use_sliding_window", False):
            window = c.integer("sliding_window")
            local = n_layers - min(n_layers, c.integer("max_window_layers", n_layers, min_value=0))
    elif model_type == "gpt_oss":
        local = _layer_count(c.str_list("layer_types"), "sliding_attention", n_layers, c.where) or 0
        window = c.integer("sliding_window") if local else None
    elif model_type in ("gemma3", "gemma3_text"):
        window = c.integer("sliding_window")
        counted = _layer_count(c.str_list("layer_types"), "sliding_attention", n_layers, c.where)
        if counted is None:
            pattern = c.integer("sliding_window_pattern", c.gemma_default("sliding_window_pattern"))
            counted = sum(1 for i in range(n_layers) if (i + 1) % pattern)
        local = counted
    elif model_type == "llama4":
        chunk = c.opt_int("attention_chunk_size")
        if chunk:
            interval = c.integer("no_rope_layer_interval", 4)
            window = chunk
            local = sum(1 for i in range(n_layers) if (i + 1) % interval)
    if window and local:
        att["sliding_window"] = window
        att["sliding_window_layers"] = local
    return att


def _moe(model_type: str, c: _Cfg, n_layers: int) -> dict[str, Any] | None:
    """The ``moe`` block of the entry, or None for a dense model."""
    if model_type == "mixtral":
        return {
            "num_experts": c.integer("num_local_experts"),
            "experts_per_token": c.integer("num_experts_per_tok"),
            "moe_intermediate_size": c.integer("intermediate_size"),
            "moe_layers": n_layers,
        }
    if model_type == "gpt_oss":
        k = c.integer("num_experts_per_tok") if c.has("num_experts_per_tok") else c.integer("experts_per_token")
        return {
            "num_experts": c.integer("num_local_experts"),
            "experts_per_token": k,
            "moe_intermediate_size": c.integer("intermediate_size"),
            "moe_layers": n_layers,
        }
    if model_type == "qwen3_moe":
        step = c.integer("decoder_sparse_step", 1)
        dense_only = set(c.int_list("mlp_only_layers"))
        layers = sum(1 for i in range(n_layers) if i not in dense_only and (i + 1) % step == 0)
        return {
            "num_experts": c.integer("num_experts"),
            "experts_per_token": c.integer("num_experts_per_tok"),
            "moe_intermediate_size": c.integer("moe_intermediate_size"),
            "moe_layers": layers,
        }
    if model_type == "deepseek_v3":
        first_dense = c.integer("first_k_dense_replace", 0, min_value=0)
        freq = c.integer("moe_layer_freq", 1)
        layers = sum(1 for i in range(n_layers) if i >= first_dense and i % freq == 0)
        return {
            "num_experts": c.integer("n_routed_experts"),
            "experts_per_token": c.integer("num_experts_per_tok"),
            "shared_experts": c.integer("n_shared_experts", 0, min_value=0),
            "moe_intermediate_size": c.integer("moe_intermediate_size"),
            "moe_layers": layers,
        }
    if model_type == "llama4":
        explicit = c.int_list("moe_layers")
        if explicit:
            layers = len(set(explicit))
        else:
            step = c.integer("interleave_moe_layer_step", 1)
            layers = len(range(step - 1, n_layers, step))
        width = c.integer("intermediate_size")
        return {
            "num_experts": c.integer("num_local_experts"),
            "experts_per_token": c.integer("num_experts_per_tok"),
            "shared_experts": 1,
            "moe_intermediate_size": width,
            "shared_expert_intermediate_size": width,
            "moe_layers": layers,
        }
    return None


def _hf_repo_from(path: Path, data: dict[str, Any]) -> str | None:
    """``ORG/REPO`` from a file named ``ORG--REPO_config.json`` or a ``_name_or_path`` like it."""
    m = _FILENAME_REPO.match(path.name)
    if m:
        return f"{m['org']}/{m['repo']}"
    name = data.get("_name_or_path")
    if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+", name):
        return name
    return None


def arch_fields(data: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Schema fields (no id/name/totals/source) from a parsed config, plus notes to record."""
    top = _Cfg(data, where)
    model_type = data.get("model_type")
    if model_type is None:
        raise InputError("missing key 'model_type'", where=where)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise InputError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
            where=where,
        )
    c = top
    if model_type in ("gemma3", "llama4"):
        text = data.get("text_config")
        if not isinstance(text, dict):
            raise InputError(f"missing key 'text_config' (a {model_type} config nests its text model there)", where=where)
        c = _Cfg(text, where, prefix="text_config.")
    notes: list[str] = []
    gemma = model_type in ("gemma3", "gemma3_text")

    n_layers = c.integer("num_hidden_layers")
    hidden = c.integer("hidden_size")
    heads = c.integer("num_attention_heads")
    kv = c.integer("num_key_value_heads", heads)
    if model_type == "deepseek_v3":
        head_dim = c.integer("qk_nope_head_dim") + c.integer("qk_rope_head_dim")
    else:
        head_dim = c.integer("head_dim", hidden // heads if hidden % heads == 0 else None)
    if model_type == "llama4":
        dense_width = c.integer("intermediate_size_mlp")
    else:
        dense_width = c.integer("intermediate_size")
    if gemma:
        vocab = c.integer("vocab_size", c.gemma_default("vocab_size"))
        max_ctx = c.integer("max_position_embeddings", c.gemma_default("max_position_embeddings"))
        if c.has("tie_word_embeddings") or top.has("tie_word_embeddings"):
            tie = c.flag("tie_word_embeddings", top.flag("tie_word_embeddings", True))
        else:
            tie = c.gemma_default("tie_word_embeddings")
    else:
        vocab = c.integer("vocab_size")
        max_ctx = c.integer("max_position_embeddings")
        tie = c.flag("tie_word_embeddings", top.flag("tie_word_embeddings", False))

    fields: dict[str, Any] = {
        "hf_model_type": model_type,
        "num_layers": n_layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv,
        "head_dim": head_dim,
        "intermediate_size": dense_width,
        "vocab_size": vocab,
        "tie_word_embeddings": tie,
        "max_context": max_ctx,
        "attention": _attention(model_type, c, n_layers, heads, kv),
    }
    moe = _moe(model_type, c, n_layers)
    if moe is not None:
        fields["moe"] = moe
    quant = data.get("quantization_config")
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    fields["native_quantization"] = _QUANT_METHODS.get(method, "bf16")
    skip = quant.get("modules_to_not_convert") if isinstance(quant, dict) else None
    if moe is not None and isinstance(skip, list) and any("self_attn" in str(x) for x in skip):
        fields["quant_scope"] = "experts"  # attention kept in 16-bit: only the experts are quantised
    mtp = c.integer("num_nextn_predict_layers", 0, min_value=0) if model_type == "deepseek_v3" else 0
    if mtp:
        fields["mtp_layers"] = mtp  # a speculative-decoding draft (solver.costmodel.speculative)
        notes.append("multi-token-prediction layer not counted (used only as a speculative-decoding draft)")
    if model_type == "llama4" and "sliding_window" in fields["attention"]:
        notes.append(
            f"chunked attention ({fields['attention']['sliding_window']}-token chunks) on "
            f"{fields['attention']['sliding_window_layers']} of {n_layers} layers, stored as a sliding window"
        )
    if c.defaults_used:
        notes.append("transformers Gemma3TextConfig defaults used: " + ", ".join(c.defaults_used))
    return fields, notes


def import_hf_config(
    path: str | Path,
    model_id: str,
    *,
    name: str | None = None,
    total_params_b: float | None = None,
    active_params_b: float | None = None,
    source: str | None = None,
    hf_repo: str | None = None,
) -> ModelArch:
    """A validated catalog entry from a local Hugging Face ``config.json``.

    ``total_params_b`` / ``active_params_b`` (billions) should be the published figures; any not
    given are computed from the config and the notes say "computed from config". ``hf_repo``
    defaults to ``ORG/REPO`` taken from a file named ``ORG--REPO_config.json`` (or the config's
    ``_name_or_path``), else to ``model_id``. Raises ``InputError`` (one line) on any problem.
    """
    p = Path(path)
    where = str(p)
    data = read_hf_config(p)
    fields, notes = arch_fields(data, where)
    repo = hf_repo or _hf_repo_from(p, data)
    if source is None:
        source = (
            f"https://huggingface.co/{repo}/blob/main/config.json" if repo else f"local config file {p.name}"
        )
    entry: dict[str, Any] = {
        "id": model_id,
        "name": name or (repo.split("/")[-1] if repo else model_id),
        "hf_repo": repo or model_id,
        **fields,
        # placeholders so param_counts can run; replaced below
        "total_params_b": 1e6,
        "active_params_b": 1e-3,
        "source": source,
    }
    draft = validate(ModelArch, entry, where=where)
    counts = param_counts(draft)
    computed: list[str] = []
    if total_params_b is None:
        total_params_b = round(counts.total / 1e9, 3)
        computed.append("total_params_b")
    if active_params_b is None:
        if draft.moe is None:
            active_params_b = total_params_b
        else:
            active_params_b = round(counts.active / 1e9, 3)
        computed.append("active_params_b")
    if computed:
        notes.insert(0, f"{' and '.join(computed)} computed from config (solver.architecture.param_counts)")
    entry["total_params_b"] = total_params_b
    entry["active_params_b"] = active_params_b
    entry["notes"] = "; ".join(notes)
    return validate(ModelArch, entry, where=where)
