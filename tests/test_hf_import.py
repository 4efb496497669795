"""``solver.hf_import`` and ``fleetplan catalog import-hf`` on real Hugging Face configs.

Fixtures in ``tests/fixtures/hf`` are real ``config.json`` files. Models without a fixture here
(qwen2, mistral, gemma3) are tested on configs written from the values their catalog entries cite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver.cli import main
from solver.errors import InputError
from solver.hf_import import import_hf_config
from solver.loading import read_yaml, validate
from solver.schemas import ModelArch

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"

# catalog id -> fixture it must agree with
CATALOG_FIXTURES = {
    "llama-3.1-8b": "meta-llama--Meta-Llama-3.1-8B_config.json",
    "llama-3.1-70b": "meta-llama--Meta-Llama-3.1-70B_config.json",
    "llama-3.3-70b": "meta-llama--Meta-Llama-3.1-70B_config.json",  # identical architecture
    "llama-3.1-405b": "meta-llama--Meta-Llama-3.1-405B_config.json",
    "llama-4-scout": "meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json",
    "llama-4-maverick": "meta-llama--Llama-4-Maverick-17B-128E-Instruct_config.json",
    "mixtral-8x7b": "mistralai--Mixtral-8x7B-v0.1_config.json",
    "mixtral-8x22b": "mistralai--Mixtral-8x22B-v0.1_config.json",
    "qwen3-8b": "Qwen--Qwen3-8B_config.json",
    "qwen3-32b": "Qwen--Qwen3-32B_config.json",
    "qwen3-30b-a3b": "Qwen--Qwen3-30B-A3B_config.json",
    "qwen3-235b-a22b": "Qwen--Qwen3-235B-A22B_config.json",
    "deepseek-v3": "deepseek-ai--DeepSeek-V3_config.json",
    "deepseek-r1": "deepseek-ai--DeepSeek-R1_config.json",
    "gpt-oss-20b": "openai--gpt-oss-20b_config.json",
    "gpt-oss-120b": "openai--gpt-oss-120b_config.json",
}
ARCH_FIELDS = (
    "hf_model_type", "num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim",
    "intermediate_size", "vocab_size", "tie_word_embeddings", "max_context", "attention", "moe",
    "native_quantization", "quant_scope",
)
REQUIRED_IDS = {
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b", "llama-3.1-405b", "llama-2-70b", "mistral-7b",
    "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-7b", "qwen2.5-32b", "qwen2.5-72b", "qwen3-8b",
    "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3", "deepseek-r1", "gpt-oss-20b",
    "gpt-oss-120b", "gemma-3-27b", "llama-4-scout", "llama-4-maverick",
}


def _catalog() -> dict[str, ModelArch]:
    data = read_yaml(REPO / "catalogs" / "models.yaml")
    return {i["id"]: validate(ModelArch, i, where=f"models.yaml[{i['id']}]") for i in data["models"]}


CATALOG = _catalog()


def _write(tmp_path: Path, cfg: dict, name: str = "config.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(cfg), encoding="utf-8")
    return p


# -- catalog vs configs ---------------------------------------------------------------------------
def test_catalog_has_required_models_with_sources() -> None:
    assert REQUIRED_IDS <= set(CATALOG)
    quants = {q["id"] for q in read_yaml(REPO / "catalogs" / "quantizations.yaml")["quantizations"]}
    for m in CATALOG.values():
        assert "huggingface.co/" in m.source and "config.json" in m.source, m.id
        assert m.native_quantization in quants, m.id
    assert CATALOG["deepseek-v3"].native_quantization == CATALOG["deepseek-r1"].native_quantization == "fp8"
    assert CATALOG["gpt-oss-120b"].native_quantization == CATALOG["gpt-oss-20b"].native_quantization == "mxfp4"


@pytest.mark.parametrize("model_id", sorted(CATALOG_FIXTURES))
def test_catalog_entry_agrees_with_its_config(model_id: str) -> None:
    imported = import_hf_config(FIXTURES / CATALOG_FIXTURES[model_id], model_id)
    entry = CATALOG[model_id]
    for field in ARCH_FIELDS:
        assert getattr(entry, field) == getattr(imported, field), field


def test_attention_kinds_and_windows() -> None:
    assert CATALOG["llama-2-70b"].attention.kind == "gqa"
    assert CATALOG["deepseek-v3"].attention.kind == "mla"
    g = CATALOG["gemma-3-27b"].attention
    assert (g.sliding_window, g.sliding_window_layers) == (1024, 52)  # 5 of every 6 of 62 layers
    o = CATALOG["gpt-oss-120b"].attention
    assert (o.sliding_window, o.sliding_window_layers) == (128, 18)
    mi = CATALOG["mistral-7b"].attention
    assert (mi.sliding_window, mi.sliding_window_layers) == (4096, 32)


# -- importer on each config shape ------------------------------------------------------------------
def test_published_totals_are_kept_and_computed_ones_noted() -> None:
    f = FIXTURES / "Qwen--Qwen3-30B-A3B_config.json"
    given = import_hf_config(f, "q", total_params_b=30.5, active_params_b=3.3)
    assert (given.total_params_b, given.active_params_b) == (30.5, 3.3)
    assert "computed from config" not in given.notes
    computed = import_hf_config(f, "q")
    assert "computed from config" in computed.notes
    assert computed.total_params_b == pytest.approx(30.53, abs=0.01)
    assert computed.active_params_b == pytest.approx(3.35, abs=0.01)
    assert computed.hf_repo == "Qwen/Qwen3-30B-A3B"
    assert computed.source == "https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json"
    dense = import_hf_config(FIXTURES / "Qwen--Qwen3-8B_config.json", "q8", total_params_b=8.2)
    assert dense.active_params_b == 8.2 and "active_params_b computed" in dense.notes


def test_llama4_interleaved_moe_and_chunked_attention() -> None:
    mav = import_hf_config(FIXTURES / "meta-llama--Llama-4-Maverick-17B-128E-Instruct_config.json", "m")
    assert mav.moe is not None
    assert (mav.moe.moe_layers, mav.moe.num_experts, mav.moe.shared_experts) == (24, 128, 1)
    assert (mav.intermediate_size, mav.moe.moe_intermediate_size) == (16384, 8192)
    assert (mav.attention.sliding_window, mav.attention.sliding_window_layers) == (8192, 36)
    assert "chunked attention" in mav.notes


def test_deepseek_first_dense_layers_and_mla() -> None:
    ds = import_hf_config(FIXTURES / "deepseek-ai--DeepSeek-V3_config.json", "d")
    assert ds.moe is not None and ds.moe.moe_layers == 58 and ds.moe.shared_experts == 1
    assert ds.attention.kind == "mla" and ds.head_dim == 192
    assert ds.native_quantization == "fp8"
    assert "multi-token-prediction" in ds.notes


def test_qwen3_moe_sparse_step_and_mlp_only_layers(tmp_path: Path) -> None:
    cfg = json.loads((FIXTURES / "Qwen--Qwen3-30B-A3B_config.json").read_text())
    cfg["decoder_sparse_step"] = 2
    cfg["mlp_only_layers"] = [1, 3, 4]
    m = import_hf_config(_write(tmp_path, cfg), "q")
    # layers with (i+1) % 2 == 0 are 1, 3, ..., 47 (24 of them); 1 and 3 forced dense
    assert m.moe is not None and m.moe.moe_layers == 22


def test_gemma3_nested_text_config_and_defaults(tmp_path: Path) -> None:
    # google/gemma-3-27b-it config.json text_config (values cited in catalogs/models.yaml).
    cfg = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {
            "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
            "model_type": "gemma3_text", "num_attention_heads": 32, "num_hidden_layers": 62,
            "num_key_value_heads": 16, "query_pre_attn_scalar": 168,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024,
        },
        "torch_dtype": "bfloat16",
        "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"},
    }
    m = import_hf_config(_write(tmp_path, cfg), "gemma-3-27b", total_params_b=27.0, hf_repo="google/gemma-3-27b-it")
    assert m.tie_word_embeddings and m.vocab_size == 262208 and m.max_context == 131072
    assert (m.attention.sliding_window, m.attention.sliding_window_layers) == (1024, 52)
    assert "Gemma3TextConfig defaults" in m.notes
    for field in ARCH_FIELDS:
        assert getattr(m, field) == getattr(CATALOG["gemma-3-27b"], field), field


def test_gemma3_layer_types_take_precedence(tmp_path: Path) -> None:
    cfg = {"model_type": "gemma3_text", "head_dim": 128, "hidden_size": 256, "intermediate_size": 512,
           "num_attention_heads": 2, "num_hidden_layers": 4, "num_key_value_heads": 1,
           "sliding_window": 512, "vocab_size": 1000, "max_position_embeddings": 8192,
           "tie_word_embeddings": True,
           "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]}
    m = import_hf_config(_write(tmp_path, cfg), "g")
    assert m.attention.sliding_window_layers == 2
    assert "defaults" not in m.notes


@pytest.mark.parametrize("model_id", ["qwen2.5-7b", "qwen2.5-32b", "qwen2.5-72b", "mistral-7b", "llama-2-70b"])
def test_importer_reproduces_entries_without_fixture(tmp_path: Path, model_id: str) -> None:
    e = CATALOG[model_id]
    cfg = {
        "model_type": e.hf_model_type, "num_hidden_layers": e.num_layers, "hidden_size": e.hidden_size,
        "num_attention_heads": e.num_attention_heads, "num_key_value_heads": e.num_kv_heads,
        "intermediate_size": e.intermediate_size, "vocab_size": e.vocab_size,
        "max_position_embeddings": e.max_context, "tie_word_embeddings": False,
        "rms_norm_eps": 1e-5,
    }
    if e.hf_model_type == "mistral":
        cfg["sliding_window"] = 4096
    if e.hf_model_type == "qwen2":  # as in the Qwen2.5 configs: a window that is switched off
        cfg.update(sliding_window=131072, use_sliding_window=False, max_window_layers=e.num_layers)
    m = import_hf_config(_write(tmp_path, cfg), model_id)
    for field in ARCH_FIELDS:
        assert getattr(m, field) == getattr(e, field), field
    assert abs(m.total_params_b / e.total_params_b - 1) < 0.02


def test_qwen2_sliding_window_when_switched_on(tmp_path: Path) -> None:
    cfg = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28,
           "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
           "max_position_embeddings": 131072, "sliding_window": 4096, "use_sliding_window": True,
           "max_window_layers": 21}
    m = import_hf_config(_write(tmp_path, cfg), "q")
    assert (m.attention.sliding_window, m.attention.sliding_window_layers) == (4096, 7)


# -- errors -------------------------------------------------------------------------------------------
def test_unsupported_model_type_names_file_and_type() -> None:
    f = FIXTURES / "zai-org--GLM-5_config.json"
    with pytest.raises(InputError, match=r"GLM-5_config\.json: unsupported model_type 'glm_moe_dsa'"):
        import_hf_config(f, "glm")


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    cfg = json.loads((FIXTURES / "Qwen--Qwen3-8B_config.json").read_text())
    del cfg["hidden_size"]
    with pytest.raises(InputError, match=r"config\.json: missing key 'hidden_size'"):
        import_hf_config(_write(tmp_path, cfg), "q")
    cfg = json.loads((FIXTURES / "meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json").read_text())
    del cfg["text_config"]["num_local_experts"]
    with pytest.raises(InputError, match=r"missing key 'text_config\.num_local_experts'"):
        import_hf_config(_write(tmp_path, cfg), "l4")
    with pytest.raises(InputError, match=r"missing key 'text_config'"):
        import_hf_config(_write(tmp_path, {"model_type": "gemma3"}), "g")
    with pytest.raises(InputError, match=r"missing key 'model_type'"):
        import_hf_config(_write(tmp_path, {"hidden_size": 1}), "x")


def test_mistyped_key_and_bad_json(tmp_path: Path) -> None:
    cfg = json.loads((FIXTURES / "Qwen--Qwen3-8B_config.json").read_text())
    cfg["num_hidden_layers"] = "36"
    with pytest.raises(InputError, match=r"key 'num_hidden_layers' must be an integer"):
        import_hf_config(_write(tmp_path, cfg), "q")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "llama",', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json: malformed JSON: line 1"):
        import_hf_config(bad, "x")
    with pytest.raises(InputError, match="file not found"):
        import_hf_config(tmp_path / "nope.json", "x")
    with pytest.raises(InputError, match="expected a JSON object"):
        import_hf_config(_write(tmp_path, [1, 2]), "x")


def test_bad_id_is_an_input_error() -> None:
    with pytest.raises(InputError, match="id"):
        import_hf_config(FIXTURES / "Qwen--Qwen3-8B_config.json", "Not An Id")


# -- CLI ------------------------------------------------------------------------------------------------
def _run(*args: str):
    return CliRunner().invoke(main, ["catalog", "import-hf", *args])


def test_cli_prints_a_valid_yaml_entry() -> None:
    r = _run(str(FIXTURES / "openai--gpt-oss-120b_config.json"), "--id", "gpt-oss-120b",
             "--total-params-b", "116.8", "--active-params-b", "5.1")
    assert r.exit_code == 0, r.output
    items = yaml.safe_load(r.stdout)
    assert isinstance(items, list) and len(items) == 1
    m = validate(ModelArch, items[0], where="stdout")
    assert (m.total_params_b, m.active_params_b, m.native_quantization) == (116.8, 5.1, "mxfp4")
    for field in ARCH_FIELDS:
        assert getattr(m, field) == getattr(CATALOG["gpt-oss-120b"], field), field


def test_cli_json() -> None:
    r = _run(str(FIXTURES / "mistralai--Mixtral-8x7B-v0.1_config.json"), "--id", "mixtral-8x7b", "--json")
    assert r.exit_code == 0, r.output
    m = validate(ModelArch, json.loads(r.stdout), where="stdout")
    assert m.moe is not None and m.moe.num_experts == 8 and "computed from config" in m.notes


def test_cli_out_creates_then_appends_and_refuses_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "models.yaml"
    assert _run(str(FIXTURES / "Qwen--Qwen3-8B_config.json"), "--id", "qwen3-8b", "--out", str(out)).exit_code == 0
    r = _run(str(FIXTURES / "Qwen--Qwen3-32B_config.json"), "--id", "qwen3-32b", "--out", str(out))
    assert r.exit_code == 0 and "appended qwen3-32b" in r.stdout
    data = read_yaml(out)
    ids = [validate(ModelArch, m, where="out").id for m in data["models"]]
    assert ids == ["qwen3-8b", "qwen3-32b"]
    r = _run(str(FIXTURES / "Qwen--Qwen3-32B_config.json"), "--id", "qwen3-32b", "--out", str(out))
    assert r.exit_code == 2 and "already in the file" in r.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("bad-json", "malformed JSON"),
        ("unsupported", "unsupported model_type 'glm_moe_dsa'"),
        ("missing-key", "missing key 'num_attention_heads'"),
        ("not-found", "file not found"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, setup: str, message: str) -> None:
    if setup == "bad-json":
        path = tmp_path / "config.json"
        path.write_text("{not json", encoding="utf-8")
    elif setup == "unsupported":
        path = FIXTURES / "zai-org--GLM-5_config.json"
    elif setup == "missing-key":
        cfg = json.loads((FIXTURES / "meta-llama--Meta-Llama-3.1-8B_config.json").read_text())
        del cfg["num_attention_heads"]
        path = _write(tmp_path, cfg)
    else:
        path = tmp_path / "missing.json"
    r = _run(str(path), "--id", "x")
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path.name) in lines[0]
    assert "Traceback" not in r.output


def test_cli_help_describes_the_command() -> None:
    r = CliRunner().invoke(main, ["catalog", "import-hf", "--help"])
    assert r.exit_code == 0
    for word in ("--id", "--total-params-b", "--active-params-b", "--out", "--json", "no network"):
        assert word in r.stdout
