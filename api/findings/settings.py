"""Thresholds of the findings and the prices of the cost model, as two nested settings
groups (`INFERWATCH_FINDINGS__*`, `INFERWATCH_COST__*`). docs/configuration.md documents
every field; docs/findings.md says where each one enters a formula."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

Pct = Annotated[float, Field(ge=0, le=100)]
Share = Annotated[float, Field(ge=0, le=1)]

IDLE_THRESHOLD_MAX_PCT = 20
"""The hourly rollup keeps per-minute figures only for minutes below 20 % (migration 0003),
so the idle threshold, chosen at query time, may be at most that."""
KV_SATURATION_MIN = 0.8
"""…and per-minute KV-cache usage only from 0.8 up, so saturation starts there at the lowest."""


class DeploymentProfile(BaseModel):
    """What the telemetry cannot tell about one deployment. Every field is optional: an
    unset one falls back to the group default or to what is inferred from the data."""

    model_config = ConfigDict(extra="forbid")

    gpus_per_replica: Annotated[int, Field(ge=1, le=64)] | None = Field(
        None, description="GPUs one replica uses (tensor/pipeline parallel size). Default: inferred, else 1."
    )
    min_replicas: Annotated[int, Field(ge=0, le=10_000)] | None = Field(
        None, description="Fewest replicas the scale-to-demand simulation keeps."
    )
    ttft_p95_slo_s: Annotated[float, Field(gt=0)] | None = Field(None, description="TTFT p95 SLO, seconds.")
    itl_p95_slo_s: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Inter-token latency p95 SLO, seconds."
    )
    params_b: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Model parameters in billions. Default: parsed from the model name (`70B`)."
    )
    weight_bits: Annotated[int, Field(ge=2, le=32)] | None = Field(
        None, description="Bits per weight as served (16 for bf16/fp16, 8 for FP8/INT8, 4 for INT4)."
    )


class FindingsSettings(BaseModel):
    """Thresholds of every finding. Percentages are 0–100, shares 0–1."""

    model_config = ConfigDict(extra="forbid")

    # --- reporting --------------------------------------------------------------------
    min_weekly_usd: Annotated[float, Field(ge=0)] = Field(
        25.0,
        description="A finding that saves or costs money is reported only from this many dollars a week.",
    )
    severity_high_usd: Annotated[float, Field(ge=0)] = Field(
        1000.0, description="Weekly dollars from which a finding is `high`."
    )
    severity_medium_usd: Annotated[float, Field(ge=0)] = Field(
        100.0, description="Weekly dollars from which a finding is `medium` (below: `low`)."
    )
    timezone: str = Field(
        "UTC", description="IANA time zone of the hour-of-day × weekday idle pattern (e.g. `Europe/Berlin`)."
    )

    # --- idle -------------------------------------------------------------------------
    idle_threshold_pct: Annotated[float, Field(ge=0, le=IDLE_THRESHOLD_MAX_PCT)] = Field(
        5.0,
        description="A GPU-minute is idle when its max utilisation (SM activity, else NVML util) is "
        f"below this (at most {IDLE_THRESHOLD_MAX_PCT}).",
    )
    idle_min_share: Share = Field(
        0.05, description="Idle findings need at least this share of the scope's reported GPU-minutes idle."
    )
    held_memory_mib: Annotated[int, Field(ge=0)] = Field(
        1024,
        description="An idle GPU holding at least this much memory (or any process) counts as held, not "
        "empty.",
    )
    streak_min_minutes: Annotated[int, Field(ge=1)] = Field(
        60, description="Shortest run of consecutive idle minutes reported as a streak."
    )
    pattern_min_share: Share = Field(
        0.9,
        description="An hour-of-day × weekday cell is idle when at least this share of its minutes was idle.",
    )
    pattern_min_hours: Annotated[int, Field(ge=1, le=24)] = Field(
        2, description="Shortest daily idle period (hours) reported as a pattern."
    )

    # --- fleet sizing -------------------------------------------------------------------
    target_util_pct: Annotated[float, Field(gt=0, le=100)] = Field(
        70.0,
        description="Utilisation a replica is sized for: replicas needed = busy GPUs / (target × GPUs "
        "per replica).",
    )
    bucket_minutes: Literal[5, 10, 15, 20, 30, 60] = Field(
        5,
        description="Width of the sizing buckets, minutes (a multiple of the 5-minute rollup dividing "
        "an hour).",
    )
    min_replicas: Annotated[int, Field(ge=0)] = Field(
        1, description="Fewest replicas the scale-to-demand simulation keeps (per deployment: `deployments`)."
    )
    scale_down_delay_minutes: Annotated[int, Field(ge=0)] = Field(
        15, description="The simulated autoscaler removes a replica only after demand stayed lower this long."
    )
    ttft_p95_slo_s: Annotated[float, Field(gt=0)] = Field(2.0, description="Default TTFT p95 SLO, seconds.")
    itl_p95_slo_s: Annotated[float, Field(gt=0)] = Field(
        0.1,
        description="Default inter-token latency p95 SLO, seconds (measured as decode time / (output "
        "tokens − 1)).",
    )
    queue_p95_max_s: Annotated[float, Field(gt=0)] = Field(
        1.0, description="Queue time p95 above this marks a deployment under-sized."
    )
    kv_saturation: Annotated[float, Field(ge=KV_SATURATION_MIN, le=1)] = Field(
        0.95, description=f"KV-cache usage at or above this is saturated (at least {KV_SATURATION_MIN})."
    )
    kv_saturated_min_share: Share = Field(
        0.05,
        description="Share of replica-minutes with a saturated KV cache that marks a deployment under-sized.",
    )
    wrong_type_headroom: Share = Field(
        0.1, description="Memory kept free on a candidate GPU when checking whether it fits."
    )

    # --- speculative decoding -------------------------------------------------------------
    spec_decode_share: Share = Field(
        0.6, description="A request is decode-dominated from this decode / e2e share."
    )
    spec_min_output_tokens: Annotated[int, Field(ge=1)] = Field(
        64, description="…and this many output tokens (applied at the histogram's log2 bucket resolution)."
    )
    spec_min_request_share: Share = Field(
        0.2, description="A candidate needs at least this share of its requests decode-dominated."
    )
    spec_max_concurrency: Annotated[float, Field(gt=0)] = Field(
        4.0, description="Mean requests in flight per replica at or below which decode is bandwidth-bound."
    )
    spec_high_concurrency: Annotated[float, Field(gt=0)] = Field(
        16.0, description="Mean requests in flight per replica from which speculative decoding should be off."
    )
    spec_default_acceptance: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.6, description="Acceptance rate α assumed when the engine does not report one."
    )
    spec_draft_tokens: Annotated[int, Field(ge=1, le=16)] = Field(
        4, description="Draft tokens per step γ assumed when the engine does not report them."
    )
    spec_draft_cost_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.05, description="Cost of one draft step relative to one target step, c."
    )

    # --- quantisation -------------------------------------------------------------------
    quant_floor_ratio: Annotated[float, Field(ge=1)] = Field(
        2.0,
        description="Decode is memory-bound when per-token time ≤ this × the weight-bytes / bandwidth floor.",
    )
    quant_dram_bw_pct: Pct = Field(
        60.0, description="…or when GPM DRAM bandwidth utilisation while busy is at least this."
    )
    default_weight_bits: Annotated[int, Field(ge=2, le=32)] = Field(
        16, description="Bits per weight assumed for a deployment whose profile does not say."
    )

    # --- workload shape -------------------------------------------------------------------
    prefill_heavy_ratio: Annotated[float, Field(gt=0)] = Field(
        1.0, description="Prefill / decode time ratio from which a deployment is prefill-heavy."
    )
    long_prompt_tokens: Annotated[int, Field(ge=1)] = Field(
        2048, description="Prompts this long or longer are long (log2 bucket resolution)."
    )
    prefix_long_share: Share = Field(
        0.3, description="Prefix caching is suggested when long prompts are at least this share of requests…"
    )
    prefix_cached_share_max: Share = Field(
        0.1, description="…and at most this share of prompt tokens was served from cache."
    )
    chunked_ttft_ratio: Annotated[float, Field(ge=1)] = Field(
        4.0,
        description="Chunked prefill is suggested when long prompts' mean TTFT is this many times short "
        "ones'…",
    )
    chunked_ttft_p99_ratio: Annotated[float, Field(ge=1)] = Field(
        5.0, description="…and TTFT p99 / p50 is at least this."
    )
    mixed_min_share: Share = Field(
        0.2,
        description="A deployment is mixed when both short and long requests are at least this share each.",
    )
    bursty_cv: Annotated[float, Field(ge=0)] = Field(
        1.5,
        description="Coefficient of variation of requests per bucket from which traffic is bursty (bulk).",
    )

    deployments: dict[str, DeploymentProfile] = Field(
        default_factory=dict,
        description="Per-deployment facts and overrides, as JSON: "
        '{"chat": {"gpus_per_replica": 4, "params_b": 70}}.',
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"not an IANA time zone: {value!r}") from exc
        return value

    def profile(self, deployment: str) -> DeploymentProfile:
        return self.deployments.get(deployment) or DeploymentProfile()


class CostSettings(BaseModel):
    """Prices. A GPU costs money for every hour it reports, busy or not."""

    model_config = ConfigDict(extra="forbid")

    gpu_prices: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description='Dollars per GPU-hour by catalogue key or NVML name, as JSON: {"h100-sxm": 2.49}.',
    )
    host_prices: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Dollars per GPU-hour for every GPU of a host (exact name, or a prefix ending in `*` "
        'for a pool), as JSON: {"gpu-node-07": 1.80, "spot-*": 0.90}. Wins over gpu_prices.',
    )
    unknown_gpu_price: Annotated[float, Field(ge=0)] = Field(
        2.0, description="Dollars per GPU-hour for a GPU the catalogue does not know and no override names."
    )
