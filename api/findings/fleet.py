"""Mis-sized fleets (DESIGN §4.2): over-sized deployments (what a scale-to-demand policy
and a static right-size would save), under-sized ones (SLO breaches, queueing, KV-cache
saturation, preemptions, and the replicas needed), and deployments on a GPU type that a
cheaper catalogue GPU would serve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from api.findings.catalogue import CATALOGUE, GpuSpec, PriceBook, lookup
from api.findings.inputs import Deployment, FleetSeries
from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity, per_week, severity_for, usd
from api.findings.settings import FindingsSettings
from api.timewindow import Window

QUERY_FLEET = "findings.fleet_buckets"
QUERY_TRAFFIC = "findings.deployment_traffic"
QUERY_GPU = "findings.gpu_usage"
_EPS = 1e-9
HOURS_PER_WEEK = 168.0


def fleet_findings(
    deployments: Sequence[Deployment], window: Window, settings: FindingsSettings, prices: PriceBook
) -> list[Finding]:
    findings: list[Finding] = []
    for dep in deployments:
        if dep.gpus == 0:  # requests without GPU telemetry: replicas and prices unknown
            continue
        under = undersized(dep, window, settings)
        if under is not None:
            findings.append(under)
        else:
            over = oversized(dep, window, settings)
            if over is not None:
                findings.append(over)
        wrong = wrong_gpu_type(dep, window, settings, prices)
        if wrong is not None:
            findings.append(wrong)
    return findings


def _scope(dep: Deployment) -> Scope:
    return Scope(ScopeKind.DEPLOYMENT, dep.name, dep.cluster)


# --- over-sized ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizing:
    """The scale-to-demand simulation of one deployment, in replicas per bucket."""

    provisioned: np.ndarray
    needed: np.ndarray
    simulated: np.ndarray
    static_replicas: int
    bucket_hours: float
    gpus_per_replica: int

    def gpu_hours(self, replicas: np.ndarray) -> float:
        return float(np.sum(replicas)) * self.gpus_per_replica * self.bucket_hours

    @property
    def saved_gpu_hours(self) -> float:
        return self.gpu_hours(np.maximum(self.provisioned - self.simulated, 0))

    @property
    def static_saved_gpu_hours(self) -> float:
        return self.gpu_hours(np.maximum(self.provisioned - self.static_replicas, 0))


def simulate(
    series: FleetSeries,
    *,
    gpus_per_replica: int,
    target_util_pct: float,
    min_replicas: int,
    scale_down_delay_minutes: int,
) -> Sizing:
    """needed[i] = ceil(busy_gpus[i] / (target × GPUs per replica)); the simulated autoscaler
    adds replicas at once and removes one only when demand stayed lower for the delay:
    simulated[i] = max(min_replicas, max(needed[i-k..i])), k = ceil(delay / bucket). Buckets in
    which the deployment had no GPU are not simulated (0). Static right-size = max(min_replicas,
    max needed)."""
    provisioned = series.gpus / gpus_per_replica
    needed = np.ceil(series.busy_gpus / (target_util_pct / 100 * gpus_per_replica) - _EPS).clip(min=0)
    k = math.ceil(scale_down_delay_minutes / series.bucket_minutes)
    held = needed.copy()
    for lag in range(1, k + 1):
        held[lag:] = np.maximum(held[lag:], needed[:-lag])
    simulated = np.where(series.gpus > 0, np.maximum(held, min_replicas), 0)
    active = needed[series.gpus > 0]
    static = max(min_replicas, int(active.max()) if active.size else 0)
    return Sizing(provisioned, needed, simulated, static, series.bucket_minutes / 60, gpus_per_replica)


def oversized(dep: Deployment, window: Window, settings: FindingsSettings) -> Finding | None:
    """GPU-hours a scale-to-demand policy would have saved, priced per week."""
    if dep.fleet is None or not np.any(dep.fleet.gpus > 0):
        return None
    sizing = simulate(
        dep.fleet,
        gpus_per_replica=dep.gpus_per_replica,
        target_util_pct=settings.target_util_pct,
        min_replicas=dep.min_replicas,
        scale_down_delay_minutes=settings.scale_down_delay_minutes,
    )
    saved = sizing.saved_gpu_hours
    weekly = per_week(saved * dep.usd_per_gpu_hour, window)
    if weekly < settings.min_weekly_usd:
        return None
    active = dep.fleet.gpus > 0
    provisioned_h = sizing.gpu_hours(sizing.provisioned)
    peak_needed = int(sizing.needed[active].max())
    mean_prov = float(sizing.provisioned[active].mean())
    title = (
        f"{dep.name}: {mean_prov:.3g} replicas provisioned, demand needed at most {peak_needed} — "
        f"scaling to demand saves {saved:,.0f} GPU-hours ({saved / provisioned_h:.0%}), {usd(weekly)}/week"
    )
    evidence = {
        "gpu_name": dep.gpu_name,
        "gpus_per_replica": dep.gpus_per_replica,
        "gpus_per_replica_source": dep.gpus_per_replica_source,
        "provisioned_replicas_mean": round(mean_prov, 3),
        "needed_replicas_p50": float(np.percentile(sizing.needed[active], 50)),
        "needed_replicas_p95": float(np.percentile(sizing.needed[active], 95)),
        "needed_replicas_max": peak_needed,
        "busy_gpu_hours": round(float(np.sum(dep.fleet.busy_gpus)) * sizing.bucket_hours, 2),
        "provisioned_gpu_hours": round(provisioned_h, 2),
        "simulated_gpu_hours": round(sizing.gpu_hours(sizing.simulated), 2),
        "saved_gpu_hours": round(saved, 2),
        "static_replicas": sizing.static_replicas,
        "static_saved_gpu_hours": round(sizing.static_saved_gpu_hours, 2),
        "static_usd_per_week": round(
            per_week(sizing.static_saved_gpu_hours * dep.usd_per_gpu_hour, window), 2
        ),
        "usd_per_gpu_hour": round(dep.usd_per_gpu_hour, 4),
        "usd_per_week": round(weekly, 2),
        "target_util_pct": settings.target_util_pct,
        "min_replicas": dep.min_replicas,
        "scale_down_delay_minutes": settings.scale_down_delay_minutes,
        "bucket_minutes": dep.fleet.bucket_minutes,
        "buckets": int(active.sum()),
    }
    return Finding(
        kind="fleet_oversized",
        severity=severity_for(weekly, settings),
        scope=_scope(dep),
        window=window,
        title=title,
        evidence=evidence,
        query=QUERY_FLEET,
        weekly_usd=weekly,
        effect=Effect.SAVING,
        recommendation=(
            f"Autoscale on load with at least {dep.min_replicas} replica(s) and a "
            f"{settings.scale_down_delay_minutes}-minute scale-down delay, or at minimum run "
            f"{sizing.static_replicas} replica(s) instead of {mean_prov:.3g}."
        ),
        caveats=(
            "Demand is measured as GPU utilisation (SM activity where GPM reports it, else NVML "
            "utilisation, which overstates work): the saving is a lower bound when NVML is the source.",
            "Scale-up is assumed instant; allow for model load time (often minutes) in the minimum.",
        ),
    )


# --- under-sized ---------------------------------------------------------------------------------


def undersized(dep: Deployment, window: Window, settings: FindingsSettings) -> Finding | None:
    """SLO breaches (TTFT / ITL p95), queueing, KV-cache saturation and preemptions. Replicas
    needed = ceil(replicas × load / target), load = (running + waiting) / running from the
    engine (1 without engine metrics): a saturated replica is at full capacity. Requests
    waiting while the KV cache has room and nothing is preempted mean the engine's batch limit
    is full, not the replica: then the finding asks for a larger batch, not replicas."""
    traffic = dep.traffic
    reasons: list[str] = []
    evidence: dict[str, object] = {}
    latency_breach = False
    if traffic is not None and traffic.requests > 0:
        if traffic.ttft is not None:
            evidence["ttft_p95_s"] = round(traffic.ttft.p95, 4)
            evidence["ttft_p95_slo_s"] = dep.ttft_p95_slo_s
            if traffic.ttft.p95 > dep.ttft_p95_slo_s:
                reasons.append(f"TTFT p95 {traffic.ttft.p95:.2f} s > SLO {dep.ttft_p95_slo_s:g} s")
                latency_breach = True
        if traffic.tpot is not None:
            evidence["itl_p95_s"] = round(traffic.tpot.p95, 5)
            evidence["itl_p95_slo_s"] = dep.itl_p95_slo_s
            if traffic.tpot.p95 > dep.itl_p95_slo_s:
                reasons.append(
                    f"ITL p95 {traffic.tpot.p95 * 1000:.0f} ms > SLO {dep.itl_p95_slo_s * 1000:g} ms"
                )
                latency_breach = True
        if traffic.queue is not None:
            evidence["queue_p95_s"] = round(traffic.queue.p95, 4)
            if traffic.queue.p95 > settings.queue_p95_max_s:
                reasons.append(f"queue p95 {traffic.queue.p95:.2f} s")
                latency_breach = True
    kv = dep.engine.get("kv_cache_usage")
    if kv is not None and kv.minutes > 0:
        share = kv.saturated / kv.minutes
        evidence["kv_saturated_share"] = round(share, 4)
        evidence["kv_cache_usage_mean"] = round(kv.mean or 0.0, 4)
        if share >= settings.kv_saturated_min_share:
            reasons.append(f"KV cache ≥ {settings.kv_saturation:.0%} full in {share:.0%} of replica-minutes")
    preemptions = dep.engine.increase("preemptions")
    if dep.engine.get("preemptions") is not None:
        evidence["preemptions"] = preemptions
        if preemptions > 0:
            reasons.append(f"{preemptions:,.0f} preemptions")
    if not reasons:
        return None
    running = dep.engine.mean("requests_running")
    waiting = dep.engine.mean("requests_waiting") or 0.0
    replicas = dep.replicas
    # Requests wait while the KV cache has room and nothing is preempted: the engine's batch
    # limit, not the GPU, is full. Decode is bound by reading the weights, so a larger batch
    # costs little per step (+3.6 % from 1 to 16 requests, measured: docs/gpu-e2e.md).
    kv_bound = bool(
        kv is not None and kv.minutes > 0 and kv.saturated / kv.minutes >= settings.kv_saturated_min_share
    )
    batch_limited = bool(
        running and waiting > 0 and kv is not None and kv.minutes > 0 and not kv_bound and preemptions == 0
    )
    if batch_limited:
        load, needed = 1.0, math.ceil(replicas)
        batch_limit = math.ceil((running or 0.0) + waiting - _EPS)
    else:
        load = (running + waiting) / running if running else 1.0
        needed = max(
            math.ceil(replicas * load / (settings.target_util_pct / 100) - _EPS), math.ceil(replicas) + 1
        )
    extra_gpus = max(0.0, (needed - replicas) * dep.gpus_per_replica)
    weekly = extra_gpus * dep.usd_per_gpu_hour * HOURS_PER_WEEK
    evidence.update(
        {
            "requests": traffic.requests if traffic else 0,
            "replicas": round(replicas, 3),
            "gpus_per_replica": dep.gpus_per_replica,
            "requests_running_mean": None if running is None else round(running, 3),
            "requests_waiting_mean": round(waiting, 3),
            "load_ratio": round(load, 4),
            "target_util_pct": settings.target_util_pct,
            "replicas_needed": needed,
            "extra_gpus": round(extra_gpus, 3),
            "usd_per_gpu_hour": round(dep.usd_per_gpu_hour, 4),
            "usd_per_week": round(weekly, 2),
            "batch_limited": batch_limited,
        }
    )
    if batch_limited:
        evidence["batch_limit_needed"] = batch_limit
        return Finding(
            kind="fleet_undersized",
            severity=Severity.HIGH if latency_breach else Severity.MEDIUM,
            scope=_scope(dep),
            window=window,
            title=(
                f"{dep.name} is batch-limited: {'; '.join(reasons)} while the KV cache has room — raise the "
                f"engine's batch limit to ≥ {batch_limit} requests before adding replicas"
            ),
            evidence=evidence,
            query=QUERY_TRAFFIC,
            weekly_usd=0.0,
            effect=Effect.NONE,
            recommendation=(
                f"Raise the batch limit (vLLM --max-num-seqs, SGLang --max-running-requests, TGI "
                f"--max-batch-size) to at least {batch_limit}: {waiting:.1f} requests wait on average "
                f"while {running:.1f} run and the KV cache is not full. Add replicas only if latency still "
                "breaches."
            ),
            caveats=(
                "Decode reads every weight once per step whatever the batch, so per-token time grows "
                "little with batch size until compute or KV cache runs out (docs/gpu-e2e.md).",
                "Prefill-heavy traffic gains less: long prompts are compute-bound.",
            ),
        )
    title = f"{dep.name} is under-sized: {'; '.join(reasons)} — needs {needed} replicas, has {replicas:.3g}"
    return Finding(
        kind="fleet_undersized",
        severity=Severity.HIGH if latency_breach or preemptions > 0 else Severity.MEDIUM,
        scope=_scope(dep),
        window=window,
        title=title,
        evidence=evidence,
        query=QUERY_TRAFFIC,
        weekly_usd=weekly,
        effect=Effect.COST,
        recommendation=(
            f"Run {needed} replicas (or autoscale on queue length / KV-cache use); where memory is the "
            "limit, quantised weights or a larger-memory GPU also free KV cache (see quantisation)."
        ),
        caveats=(
            "Replicas needed assume throughput scales linearly with replicas behind a balanced balancer.",
            "ITL is measured per request as decode time / (output tokens − 1).",
        ),
    )


# --- wrong GPU type ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Need:
    """What one replica needs: bytes of memory, bytes/s of bandwidth, TFLOPS, at the target."""

    memory_bytes: float
    bandwidth_bytes_s: float
    tflops: float


def replica_need(dep: Deployment, spec: GpuSpec, settings: FindingsSettings) -> Need | None:
    """Memory: weights + the KV cache actually used when the parameter count and KV-cache
    usage are known (engines pre-allocate most free memory), else peak memory used. Bandwidth
    and compute: the busy-time share used × the current GPU's figure, scaled to the target."""
    if dep.mem_used_peak_bytes is None:
        return None
    bw_pct = (
        dep.dram_bw_busy_mean_pct if dep.dram_bw_busy_mean_pct is not None else dep.mem_util_busy_mean_pct
    )
    if bw_pct is None or dep.util_busy_mean_pct is None:
        return None
    used = dep.mem_used_peak_bytes * dep.gpus_per_replica
    kv = dep.engine.get("kv_cache_usage")
    memory = float(used)
    if dep.params_b is not None and kv is not None and kv.max is not None:
        weights = dep.params_b * 1e9 * dep.weight_bits / 8
        memory = weights + max(0.0, used - weights) * kv.max
    scale = dep.gpus_per_replica / (settings.target_util_pct / 100)
    return Need(
        memory_bytes=memory,
        bandwidth_bytes_s=bw_pct / 100 * spec.bandwidth_bytes_s * scale,
        tflops=dep.util_busy_mean_pct / 100 * spec.bf16_tflops * scale,
    )


def gpus_for(need: Need, candidate: GpuSpec, headroom: float, most: int = 8) -> int | None:
    for k in range(1, most + 1):
        if (
            k * candidate.memory_bytes * (1 - headroom) >= need.memory_bytes
            and k * candidate.bandwidth_bytes_s >= need.bandwidth_bytes_s
            and k * candidate.bf16_tflops >= need.tflops
        ):
            return k
    return None


def wrong_gpu_type(
    dep: Deployment, window: Window, settings: FindingsSettings, prices: PriceBook
) -> Finding | None:
    """The cheapest catalogue GPU (count k ≤ 8 per replica) that meets one replica's memory,
    bandwidth and compute need, when it costs less per replica than the GPUs it runs on."""
    match = lookup(dep.gpu_name)
    if match is None or match.fraction != 1.0:
        return None
    need = replica_need(dep, match.spec, settings)
    if need is None:
        return None
    current = dep.gpus_per_replica * dep.usd_per_gpu_hour
    best: tuple[float, GpuSpec, int] | None = None
    for cand in CATALOGUE:
        if cand.key == match.spec.key:
            continue
        k = gpus_for(need, cand, settings.wrong_type_headroom)
        if k is None:
            continue
        cost = k * prices.per_hour_of(cand)
        if cost < current and (best is None or cost < best[0]):
            best = (cost, cand, k)
    if best is None:
        return None
    cost, cand, k = best
    replica_hours = dep.gpu_hours / dep.gpus_per_replica
    weekly = per_week(replica_hours * (current - cost), window)
    if weekly < settings.min_weekly_usd:
        return None
    title = (
        f"{dep.name}: {k}× {cand.label} per replica would meet its memory and bandwidth need at "
        f"{usd(cost)}/h instead of {usd(current)}/h on {dep.gpus_per_replica}× {match.spec.label} — "
        f"{usd(weekly)}/week"
    )
    evidence = {
        "gpu_name": dep.gpu_name,
        "gpus_per_replica": dep.gpus_per_replica,
        "memory_need_gb": round(need.memory_bytes / 1e9, 2),
        "bandwidth_need_gbs": round(need.bandwidth_bytes_s / 1e9, 1),
        "tflops_need": round(need.tflops, 1),
        "bandwidth_source": "gpm_dram_bw" if dep.dram_bw_busy_mean_pct is not None else "nvml_memory_util",
        "util_busy_mean_pct": dep.util_busy_mean_pct,
        "candidate": cand.key,
        "candidate_gpus_per_replica": k,
        "usd_per_replica_hour_now": round(current, 4),
        "usd_per_replica_hour_candidate": round(cost, 4),
        "replica_hours": round(replica_hours, 2),
        "usd_per_week": round(weekly, 2),
        "headroom": settings.wrong_type_headroom,
        "target_util_pct": settings.target_util_pct,
    }
    return Finding(
        kind="fleet_wrong_gpu_type",
        severity=severity_for(weekly, settings),
        scope=_scope(dep),
        window=window,
        title=title,
        evidence=evidence,
        query=QUERY_GPU,
        weekly_usd=weekly,
        effect=Effect.SAVING,
        recommendation=f"Benchmark {dep.name} on {k}× {cand.label} and move it if latency holds.",
        caveats=(
            "Memory need counts weights and the KV cache in use; longer contexts or batches need more.",
            "Multi-GPU replicas need a fast interconnect (NVLink); PCIe cards split tensors more slowly.",
            "Bandwidth from NVML's memory utilisation (no GPM) is a coarse proxy.",
        ),
    )
