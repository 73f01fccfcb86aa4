"""What the finding functions read: plain dataclasses built from rollup query results
(`api.findings.engine`) or by hand (tests). No I/O here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True, slots=True)
class IdleStreak:
    """A run of consecutive idle minutes of one GPU."""

    start: datetime
    minutes: int


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """One GPU over the window (query `findings.gpu_usage`).

    `idle_cells` / `reported_cells` map weekday × 24 + hour (weekday 0 = Monday, in the
    findings time zone) to idle / reported minutes. Utilisation means SM activity where
    GPM reports it, else NVML's utilisation; the `busy_*` means are over non-idle minutes.
    """

    cluster: str
    host: str
    gpu_uuid: str
    gpu_name: str
    deployment: str
    minutes: int
    idle_minutes: int
    idle_held_minutes: int
    streaks: tuple[IdleStreak, ...] = ()
    idle_cells: Mapping[int, int] = field(default_factory=dict)
    reported_cells: Mapping[int, int] = field(default_factory=dict)
    mem_used_peak_bytes: int | None = None
    mem_total_bytes: int | None = None
    util_mean_pct: float | None = None
    util_busy_mean_pct: float | None = None
    dram_bw_busy_mean_pct: float | None = None
    mem_util_busy_mean_pct: float | None = None
    has_gpm: bool = False
    inflight_minutes: int = 0
    inflight_busy_s: float = 0.0

    @property
    def idle_empty_minutes(self) -> int:
        return self.idle_minutes - self.idle_held_minutes


@dataclass(frozen=True, slots=True)
class FleetSeries:
    """One deployment's GPUs per sizing bucket, densely from the window start (query
    `findings.fleet_buckets`). `gpus[i]`: GPUs that reported in bucket i; `busy_gpus[i]`:
    their mean utilisation × their count, i.e. GPU-equivalents of work."""

    bucket_minutes: int
    gpus: np.ndarray
    busy_gpus: np.ndarray

    def __post_init__(self) -> None:
        if len(self.gpus) != len(self.busy_gpus):
            raise ValueError("gpus and busy_gpus must have one value per bucket")


@dataclass(frozen=True, slots=True)
class Quantiles:
    p50: float
    p90: float
    p95: float
    p99: float

    @staticmethod
    def of(values: list[float] | None) -> Quantiles | None:
        if not values or len(values) != 4 or any(v is None or not math.isfinite(v) for v in values):
            return None
        return Quantiles(*[float(v) for v in values])


@dataclass(frozen=True, slots=True)
class ShapeCell:
    requests: int
    e2e_s: float
    decode_s: float


@dataclass(frozen=True, slots=True)
class PromptCell:
    requests: int
    ttft_s: float
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class Traffic:
    """One deployment's requests over the window, all its models together (query
    `findings.deployment_traffic`). Sums are seconds; `shape` keys are decode-share decile
    × 16 + output-token bucket, `prompts` keys prompt-token buckets (floor(log2(n + 1)))."""

    requests: int
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    queue_s: float = 0.0
    ttft_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    e2e_s: float = 0.0
    phased: int = 0
    ttft: Quantiles | None = None
    tpot: Quantiles | None = None
    queue: Quantiles | None = None
    shape: Mapping[int, ShapeCell] = field(default_factory=dict)
    prompts: Mapping[int, PromptCell] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    framework: str = ""
    rate_buckets: int = 0
    rate_mean: float = 0.0
    rate_cv: float = 0.0


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """One canonical engine metric of a deployment over the window (query
    `findings.engine_stats`). Gauges: mean and max. Counters: `increase`, summed over
    instances, resets handled. `saturated` counts instance-minutes at or above the KV
    saturation threshold (kv_cache_usage only) out of `minutes`."""

    mean: float | None = None
    max: float | None = None
    increase: float = 0.0
    minutes: int = 0
    saturated: int = 0
    instances: int = 0


@dataclass(frozen=True, slots=True)
class EngineStats:
    metrics: Mapping[str, MetricSummary] = field(default_factory=dict)

    def get(self, name: str) -> MetricSummary | None:
        return self.metrics.get(name)

    def mean(self, name: str) -> float | None:
        m = self.metrics.get(name)
        return m.mean if m else None

    def increase(self, name: str) -> float:
        m = self.metrics.get(name)
        return m.increase if m else 0.0

    @property
    def instances(self) -> int:
        return max((m.instances for m in self.metrics.values()), default=0)


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything known about one deployment over the window, joined per deployment by
    `api.findings.facts.deployments`. Per-GPU figures are the worst GPU's (peak memory,
    busiest bandwidth)."""

    cluster: str
    name: str
    gpu_name: str
    gpus: int
    gpu_hours: float
    usd_per_gpu_hour: float
    gpus_per_replica: int
    gpus_per_replica_source: str
    min_replicas: int
    ttft_p95_slo_s: float
    itl_p95_slo_s: float
    params_b: float | None = None
    params_source: str = ""
    weight_bits: int = 16
    mem_used_peak_bytes: int | None = None
    mem_total_bytes: int | None = None
    util_busy_mean_pct: float | None = None
    dram_bw_busy_mean_pct: float | None = None
    mem_util_busy_mean_pct: float | None = None
    has_gpm: bool = False
    concurrency: float | None = None
    concurrency_source: str = ""
    traffic: Traffic | None = None
    engine: EngineStats = field(default_factory=EngineStats)
    fleet: FleetSeries | None = None

    @property
    def replicas(self) -> float:
        """Mean replicas over the window: GPU-hours / (GPUs per replica × window hours) is
        what the caller knows; here, GPUs seen / GPUs per replica."""
        return self.gpus / self.gpus_per_replica
