"""Pydantic schemas of the catalog files (``catalogs/*.yaml``).

Units are in field names: ``_gib`` (2**30 bytes), ``_gb_s`` (1e9 bytes/s), ``_tb_s`` (1e12 bytes/s),
``_tflops`` (1e12 FLOP/s, dense, no sparsity), ``_w`` (watts), ``_usd_per_hour``.
Every entry carries a ``source`` (addresses or documents, ``;``-separated); a figure that is an
estimate is named in ``estimated`` together with its reasoning. Models are frozen: nothing in the
program mutates a catalog after loading.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", min_length=1, max_length=64)]
Pos = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

ComputeDtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]
Family = Literal[
    "ampere", "ada", "hopper", "blackwell", "blackwell-ultra", "cdna3", "cdna4", "gaudi3"
]


class Entry(BaseModel):
    """Common fields of every catalog entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: Id
    source: str = Field(min_length=4, description="where the numbers come from")
    notes: str = ""
    estimated: dict[str, str] = Field(
        default_factory=dict,
        description="field name -> reasoning, for every figure that is an estimate",
    )

    @model_validator(mode="after")
    def _estimated_fields_exist(self) -> "Entry":
        known = set(type(self).model_fields)
        for name in self.estimated:
            if name.split(".")[0] not in known:
                raise ValueError(f"estimated names unknown field {name!r}")
        return self


class MigProfile(BaseModel):
    """One NVIDIA Multi-Instance GPU profile of an accelerator: its share of the GPU's memory
    (memory slices of 8), of its SMs (compute slices of 7) and how many instances of it one GPU
    holds. Memory bandwidth follows the memory slices (each slice has its own memory
    controllers and L2 banks, per NVIDIA's MIG user guide)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Annotated[str, Field(pattern=r"^[0-9]g\.[0-9]+gb$")]
    memory_slices: Annotated[int, Field(ge=1, le=8)]
    """Memory slices of 8 (the guide's "fraction of memory" x 8)."""
    compute_slices: Annotated[int, Field(ge=1, le=7)]
    """Compute slices of 7 (the guide's "fraction of SMs" x 7)."""
    max_count: Annotated[int, Field(ge=1, le=7)]
    """Instances of this profile one GPU holds ("number of instances available")."""
    placements: list[Annotated[int, Field(ge=0, le=7)]] = []
    """Memory slices (0..7) an instance of this profile may start at; it occupies
    ``memory_slices`` from there, and instances on one GPU never overlap (NVML's GPU instance
    placements). Empty: not documented, so the profile shares a GPU only with itself
    (``max_count`` instances)."""
    source: str = Field(min_length=4)

    @model_validator(mode="after")
    def _placements_fit(self) -> "MigProfile":
        if any(s + self.memory_slices > 8 for s in self.placements):
            raise ValueError(f"placements: an instance of {self.name} starting there runs past memory slice 8")
        if len(set(self.placements)) != len(self.placements):
            raise ValueError("placements: a start is listed twice")
        return self


class Accelerator(Entry):
    """One accelerator (GPU/XPU) as the vendor specifies it."""

    name: str
    vendor: Literal["nvidia", "amd", "intel"]
    family: Family
    form_factor: Literal["sxm", "pcie", "oam", "superchip"]
    hbm_gib: Pos
    hbm_tb_s: Pos
    dense_tflops: dict[ComputeDtype, Pos] = Field(
        description="dense (no sparsity) peak per compute dtype, TFLOP/s (TOP/s for int8)"
    )
    scaleup_link_gb_s: NonNeg = Field(
        description="per-GPU one-direction bandwidth of the scale-up link (NVLink/IF); 0 if none"
    )
    scaleup_domain_gpus: Annotated[int, Field(ge=1)] = Field(
        description="largest number of GPUs that share the scale-up fabric"
    )
    pcie_gb_s: Pos = Field(description="host link, one direction, GB/s")
    tdp_w: Pos
    mig_profiles: list[MigProfile] = Field(
        default_factory=list, description="NVIDIA MIG profiles (empty: the accelerator has no MIG)"
    )

    @model_validator(mode="after")
    def _mig_on_nvidia_only(self) -> "Accelerator":
        if self.mig_profiles and self.vendor != "nvidia":
            raise ValueError("mig_profiles: MIG is an NVIDIA feature")
        names = [p.name for p in self.mig_profiles]
        if len(set(names)) != len(names):
            raise ValueError("mig_profiles: duplicate profile name")
        return self

    @field_validator("dense_tflops")
    @classmethod
    def _has_bf16_or_fp16(cls, v: dict[str, float]) -> dict[str, float]:
        if not ({"bf16", "fp16"} & set(v)):
            raise ValueError("needs at least a bf16 or fp16 figure")
        return v


class System(Entry):
    """A node shape: how many accelerators, linked how, and how nodes talk to each other."""

    name: str
    accelerator: Id
    gpus_per_node: Annotated[int, Field(ge=1)]
    scaleup_domain_gpus: Annotated[int, Field(ge=1)] = Field(
        description="GPUs in one scale-up (NVLink/fabric) domain; > gpus_per_node for racks (NVL72)"
    )
    intra_node_link: Literal["nvlink", "nvlink-bridge", "pcie", "infinity-fabric", "roce"]
    intra_node_gb_s: Pos = Field(description="per-GPU one-direction bandwidth inside the domain")
    intra_node_latency_us: Pos
    scaleout_gb_s_per_gpu: Pos = Field(description="per-GPU one-direction network bandwidth")
    scaleout_latency_us: Pos
    nodes_per_domain: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _domain_covers_node(self) -> "System":
        if self.scaleup_domain_gpus < 1:
            raise ValueError("scaleup_domain_gpus must be >= 1")
        return self


class Attention(BaseModel):
    """Attention shape. ``mla`` uses the LoRA ranks; sliding windows hold at most ``window`` tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["mha", "gqa", "mla"]
    kv_lora_rank: Annotated[int, Field(ge=1)] | None = None
    q_lora_rank: Annotated[int, Field(ge=1)] | None = None
    qk_rope_head_dim: Annotated[int, Field(ge=1)] | None = None
    qk_nope_head_dim: Annotated[int, Field(ge=1)] | None = None
    v_head_dim: Annotated[int, Field(ge=1)] | None = None
    sliding_window: Annotated[int, Field(ge=1)] | None = None
    sliding_window_layers: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _mla_needs_ranks(self) -> "Attention":
        if self.kind == "mla" and (self.kv_lora_rank is None or self.qk_rope_head_dim is None):
            raise ValueError("mla attention needs kv_lora_rank and qk_rope_head_dim")
        if self.sliding_window_layers and self.sliding_window is None:
            raise ValueError("sliding_window_layers > 0 needs sliding_window")
        return self


class Moe(BaseModel):
    """Mixture-of-experts shape."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_experts: Annotated[int, Field(ge=2)]
    experts_per_token: Annotated[int, Field(ge=1)]
    shared_experts: Annotated[int, Field(ge=0)] = 0
    moe_intermediate_size: Annotated[int, Field(ge=1)]
    shared_expert_intermediate_size: Annotated[int, Field(ge=1)] | None = None
    moe_layers: Annotated[int, Field(ge=1)] = Field(description="layers whose FFN is MoE")

    @model_validator(mode="after")
    def _routed_le_experts(self) -> "Moe":
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token exceeds num_experts")
        return self


class ModelArch(Entry):
    """A model's architecture facts (from its Hugging Face config) and published sizes."""

    name: str
    hf_repo: str
    hf_model_type: str
    num_layers: Annotated[int, Field(ge=1)]
    hidden_size: Annotated[int, Field(ge=1)]
    num_attention_heads: Annotated[int, Field(ge=1)]
    num_kv_heads: Annotated[int, Field(ge=1)]
    head_dim: Annotated[int, Field(ge=1)]
    intermediate_size: Annotated[int, Field(ge=1)] = Field(
        description="dense FFN width (dense layers of an MoE model too)"
    )
    vocab_size: Annotated[int, Field(ge=1)]
    tie_word_embeddings: bool = False
    max_context: Annotated[int, Field(ge=1)]
    attention: Attention
    moe: Moe | None = None
    total_params_b: Pos = Field(description="published total parameters, billions")
    active_params_b: Pos = Field(description="published active parameters per token, billions")
    native_quantization: Id = Field(
        default="bf16", description="format of the released weights (e.g. fp8, mxfp4)"
    )
    mtp_layers: Annotated[int, Field(ge=0)] = Field(
        default=0, description="published multi-token-prediction modules (config.json "
        "num_nextn_predict_layers); usable as a speculative-decoding draft; 0: none"
    )
    quant_scope: Literal["all", "experts"] = Field(
        default="all",
        description=(
            "parameter groups a quantised format covers: 'all' = every matmul weight except the "
            "token embedding and LM head (which, like norms and the router, stay 16-bit in every "
            "format); 'experts' = the routed experts only, attention and dense/shared FFNs stay "
            "16-bit too (gpt-oss: quantization_config.modules_to_not_convert lists self_attn, "
            "router, embed_tokens, lm_head)"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> "ModelArch":
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_kv_heads")
        if self.active_params_b > self.total_params_b:
            raise ValueError("active_params_b exceeds total_params_b")
        if self.moe and self.moe.moe_layers > self.num_layers:
            raise ValueError("moe.moe_layers exceeds num_layers")
        return self

    @property
    def is_moe(self) -> bool:
        return self.moe is not None


class QualityLoss(BaseModel):
    """Expected quality loss of a format against bf16, in accuracy points on a named benchmark."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    points: NonNeg
    benchmark: str
    measured_on: str = Field(description="model(s) the figure was measured on")
    source: str = Field(min_length=4)


class Emulation(BaseModel):
    """How a format runs where the hardware has no native support."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    families: list[Family]
    compute_dtype: ComputeDtype = Field(description="dtype the math actually runs in")
    note: str


class Quantization(Entry):
    """A weight/activation quantisation format."""

    name: str
    weight_bits: Annotated[int, Field(ge=2, le=32)]
    scale_overhead_fraction: NonNeg = Field(
        description="extra bytes for scales/zero points, as a fraction of the packed weight bytes"
    )
    compute_dtype: ComputeDtype = Field(description="dtype of the matmuls where native")
    kv_dtypes: list[Id] = Field(min_length=1, description="KV-cache dtypes usable with it")
    native_families: list[Family]
    emulated: list[Emulation] = Field(default_factory=list)
    quality_loss: QualityLoss

    @property
    def bytes_per_weight(self) -> float:
        """Bytes per weight including scale overhead."""
        return self.weight_bits / 8 * (1 + self.scale_overhead_fraction)


class KvDtype(Entry):
    """A KV-cache element type."""

    name: str
    bytes_per_element: Pos
    native_families: list[Family]


class Price(Entry):
    """One list price per GPU-hour, dated."""

    accelerator: Id
    provider: str
    pricing: Literal["on-demand", "reserved", "spot"]
    usd_per_gpu_hour: Pos
    date: dt.date
    region: str = ""
    term_months: int | None = Field(default=None, ge=1, le=120, description=(
        "reserved/committed rows: the commitment term in months (paid every hour of it); "
        "none for on-demand, spot and reservations whose source states no term"))
    on_demand_ref: str | None = Field(default=None, description=(
        "reserved/spot rows: id of the same provider's on-demand row read from the same source, "
        "against which the discount is stated (like with like)"))
    unpaired_reason: str | None = Field(default=None, description=(
        "reserved/spot rows without on_demand_ref: why no on-demand row of the same provider and "
        "accelerator, read from the same source, exists to state the discount against"))


class Efficiency(Entry):
    """Achievable fractions of peak and fixed kernel times for one accelerator family.

    The host overhead per step and the collectives' parameters live in ``catalogs/engines.yaml``
    (engine and link profiles). ``measured`` and ``error_pct`` say how far a plan on this family
    can be trusted: a family fitted on no measurement of its own states a wider error.
    """

    family: Family
    engine: str = "generic"
    eta_bw: Fraction = Field(description="plateau achieved / peak HBM bandwidth of a large kernel")
    mfu_prefill: Fraction = Field(description="achieved / peak dense FLOP/s in prefill")
    mfu_decode: Fraction = Field(description="achieved / peak dense FLOP/s in decode GEMMs")
    stream_kernel_us: NonNeg = Field(
        default=0.0,
        description=(
            "fixed time (microseconds) of one kernel beyond bytes / (peak x eta_bw) or FLOP / rate: "
            "launch, fill, drain, paid whichever bounds it; a kernel of S bytes reaches "
            "eta(S) = eta_bw x S / (S + S_half), S_half = peak x eta_bw x t0; 0 = eta_bw at every size"
        ),
    )
    moe_layer_fixed_us: NonNeg = Field(
        default=0.0,
        description=(
            "fixed time (microseconds) of one MoE layer's kernels on one GPU -- routing, "
            "permutation, two grouped GEMMs, un-permutation -- whatever the batch"
        ),
    )
    mixed_input_gemm_efficiency: Fraction = Field(
        default=1.0,
        description=(
            "share of the math dtype's peak that a mixed-input GEMM reaches (weights narrower than "
            "the math dtype, dequantised in the main loop: MXFP4 on Hopper, W4A16); 1 = as native"
        ),
    )
    block_scaled_gemm_efficiency: Fraction = Field(
        default=1.0,
        description=(
            "share of the FP8 peak x MFU that a block-scaled FP8 grouped expert GEMM reaches (128x128 "
            "weight blocks, scales applied in the main loop: DeepSeek-V3/R1 and Qwen3 FP8 experts); 1 = as "
            "a per-tensor FP8 GEMM"
        ),
    )
    block_scaled_decode_tile_rows: int = Field(
        default=128, ge=1, le=256,
        description=(
            "token rows per expert tile of a block-scaled FP8 grouped GEMM in a decode-only step "
            "(CUDA graphs: DeepGEMM's masked layout / TensorRT-LLM's vendored DeepGEMM pick a 64-row M "
            "block at <= 64 rows per expert on Hopper); 128 = the contiguous layout's alignment, as in "
            "steps that carry prompt tokens"
        ),
    )
    measured: bool = Field(
        default=True,
        description="false: no public measurement of this family was fitted; its factors are carried over",
    )
    error_pct: NonNeg | None = Field(
        default=None,
        description=(
            "stated error of a throughput prediction on this family (%): the benchmark's "
            "out-of-sample MAPE where measured, a wider band where not (reasoning in `estimated`)"
        ),
    )
    host_overhead_factor: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="multiplies the engine's host time per step (1 = engines.yaml as is); set by a calibration")
    collective_factor: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="multiplies the links' bw_efficiency (capped at 1); set by a calibration")
    calibration: str | None = Field(default=None, description="id of the calibration overlay applied, if any")


class Engine(Entry):
    """A serving engine's defaults that change what a replica holds and how fast it steps."""

    name: str
    kv_memory_policy: Literal["total-fraction", "free-after-weights"] = Field(
        description=(
            "total-fraction: weights + runtime + KV <= fraction x HBM (vLLM gpu_memory_utilization, "
            "SGLang mem_fraction_static); free-after-weights: KV = fraction x (HBM - weights - "
            "runtime) (TensorRT-LLM KvCacheConfig.free_gpu_memory_fraction)"
        )
    )
    kv_memory_fraction: Fraction
    host_overhead_graph_ms: NonNeg = Field(
        description="host time per decode-only step replayed as a CUDA graph (ms)"
    )
    host_overhead_eager_ms: NonNeg = Field(
        description="host time per step that runs eagerly (a step with a prefill chunk) (ms)"
    )
    request_overhead_ms: NonNeg = Field(
        default=0.0,
        description="per-request time before the first step (admission, tokenisation, first-token "
                    "return), added to TTFT only (ms)",
    )
    chunk_tokens: Annotated[int, Field(ge=64)] = Field(
        description="token budget of one step with chunked prefill (default)"
    )
    formats: dict[Family, list[Id]] = Field(
        description="accelerator family -> formats the engine runs on it (families absent: unsupported)"
    )
    compute_dtype_overrides: dict[Id, dict[Family, ComputeDtype]] = Field(
        default_factory=dict,
        description="format -> family -> the dtype the engine's GEMMs of that format run in, where "
                    "it differs from the format's own (e.g. MXFP4 weights x MXFP8 activations)",
    )


class LinkProfile(Entry):
    """What one collective pays on a kind of link (``id`` = a system's ``intra_node_link`` kind
    or ``scale-out``): t = latency + wire / (bandwidth x eff(S)), eff(S) = bw_efficiency x
    min(1, S / saturation)^ramp."""

    latency_us: NonNeg = Field(description="software latency of one collective (launch, sync)")
    bw_efficiency: Fraction = Field(description="plateau achieved / datasheet link bandwidth")
    saturation_mb: NonNeg = Field(description="message size (MB, 1e6 bytes) where the plateau starts")
    ramp: NonNeg = Field(default=0.25, description="exponent of the efficiency ramp below saturation")


class EnginesFile(BaseModel):
    """``catalogs/engines.yaml``: engine profiles plus link (collective) profiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_engine: Id
    engines: list[Engine]
    links: list[LinkProfile]


class QuantizationsFile(BaseModel):
    """``catalogs/quantizations.yaml``: formats plus KV dtypes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    quantizations: list[Quantization]
    kv_dtypes: list[KvDtype]
