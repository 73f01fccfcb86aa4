"""From query rows to the dataclasses the finding functions read, and the per-deployment
join (`deployments`). Pure: rows in, dataclasses out; `api.findings.engine` runs the SQL.
Per-GPU and per-fleet figures come from `api.findings.gpu_hours`, engine figures from
`api.findings.engine_hours`."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from api.findings.catalogue import PriceBook
from api.findings.inputs import (
    Deployment,
    EngineStats,
    FleetSeries,
    GpuUsage,
    PromptCell,
    Quantiles,
    ShapeCell,
    Traffic,
)
from api.findings.quantisation import params_from_name
from api.findings.settings import FindingsSettings

Row = Mapping[str, Any]
Key = tuple[str, str]  # (cluster, deployment)


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _map(struct: Mapping[str, list[Any]]) -> list[tuple[Any, ...]]:
    keys = struct["1"]
    return list(zip(keys, *(struct[str(i)] for i in range(2, len(struct) + 1)), strict=True))


def traffic(rows: Iterable[Row], bucket_minutes: int) -> dict[Key, Traffic]:
    out = {}
    for r in rows:
        n_buckets = 0
        cv = mean = 0.0
        if r["rate_buckets"]:
            n_buckets = (int(r["rate_last"]) - int(r["rate_first"])) // (bucket_minutes * 60) + 1
            mean = r["rate_s1"] / n_buckets
            var = max(0.0, r["rate_s2"] / n_buckets - mean * mean)
            cv = math.sqrt(var) / mean if mean > 0 else 0.0
        requests = int(r["n_requests"])
        out[(r["cluster"], r["deployment_name"])] = Traffic(
            requests=requests,
            errors=int(r["n_errors"]),
            prompt_tokens=int(r["prompt_tokens"]),
            cached_tokens=int(r["cached_tokens"]),
            output_tokens=int(r["output_tokens"]),
            queue_s=float(r["queue_s"]),
            ttft_s=float(r["ttft_s"]),
            prefill_s=float(r["prefill_s"]),
            decode_s=float(r["decode_s"]),
            e2e_s=float(r["e2e_s"]),
            phased=int(r["n_phased"]),
            ttft=Quantiles.of(r["ttft_quantiles"]) if r["ttft_s"] > 0 else None,
            tpot=Quantiles.of(r["tpot_quantiles"]) if r["n_phased"] > 0 else None,
            queue=Quantiles.of(r["queue_quantiles"]) if r["queue_s"] > 0 else None,
            shape={int(k): ShapeCell(int(n), float(e), float(d)) for k, n, e, d in _map(r["shape"])},
            prompts={int(k): PromptCell(int(n), float(t), int(c)) for k, n, t, c in _map(r["prompts"])},
            models=tuple(r["models"]),
            framework=r["framework_name"],
            rate_buckets=n_buckets,
            rate_mean=mean,
            rate_cv=cv,
        )
    return out


def deployments(
    gpus: Sequence[GpuUsage],
    fleet: Mapping[Key, FleetSeries],
    traffic_by: Mapping[Key, Traffic],
    engine_by: Mapping[Key, EngineStats],
    host_inflight: Iterable[Row],
    settings: FindingsSettings,
    prices: PriceBook,
) -> list[Deployment]:
    """One `Deployment` per deployment seen in GPU telemetry or requests. Per-GPU figures
    are the deployment's worst GPU (peak memory) or mean over its GPUs (utilisation while
    busy); price is the GPU-minute-weighted mean of its GPUs' prices."""
    by_dep: dict[Key, list[GpuUsage]] = defaultdict(list)
    for g in gpus:
        if g.deployment:
            by_dep[(g.cluster, g.deployment)].append(g)
    inflight: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for g in gpus:
        if g.deployment:
            acc = inflight[(g.cluster, g.deployment)]
            acc[0] += g.inflight_busy_s
            acc[1] += g.inflight_minutes
    for r in host_inflight:
        acc = inflight[(r["cluster"], r["deployment_name"])]
        acc[0] += float(r["busy_total"])
        acc[1] += float(r["minutes_in_flight"])
    out = []
    for key in sorted(set(by_dep) | set(traffic_by)):
        cluster, name = key
        members = by_dep.get(key, [])
        profile = settings.profile(name)
        engine = engine_by.get(key, EngineStats())
        minutes = sum(g.minutes for g in members)
        usd_h = (
            sum(prices.per_hour(g.gpu_name, g.host) * g.minutes for g in members) / minutes
            if minutes
            else 0.0
        )
        n_gpus = len(members)
        if profile.gpus_per_replica:
            gpr, gpr_source = profile.gpus_per_replica, "setting"
        elif engine.instances and n_gpus >= engine.instances:
            gpr, gpr_source = max(1, round(n_gpus / engine.instances)), "GPUs / engine instances"
        else:
            gpr, gpr_source = 1, "default"
        running = engine.mean("requests_running")
        busy_s, busy_min = inflight.get(key, [0.0, 0.0])
        if running is not None:
            concurrency, conc_source = running, "engine requests_running"
        elif busy_min > 0:
            concurrency, conc_source = busy_s / (60 * busy_min), "request spans in flight"
        else:
            concurrency, conc_source = None, ""
        t = traffic_by.get(key)
        params, params_source = profile.params_b, "setting" if profile.params_b else ""
        if params is None and t is not None:
            for model in t.models:
                params = params_from_name(model)
                if params is not None:
                    params_source = "model name"
                    break
        out.append(
            Deployment(
                cluster=cluster,
                name=name,
                gpu_name=Counter(g.gpu_name for g in members).most_common(1)[0][0] if members else "",
                gpus=n_gpus,
                gpu_hours=minutes / 60,
                usd_per_gpu_hour=usd_h,
                gpus_per_replica=gpr,
                gpus_per_replica_source=gpr_source,
                min_replicas=profile.min_replicas
                if profile.min_replicas is not None
                else settings.min_replicas,
                ttft_p95_slo_s=profile.ttft_p95_slo_s or settings.ttft_p95_slo_s,
                itl_p95_slo_s=profile.itl_p95_slo_s or settings.itl_p95_slo_s,
                params_b=params,
                params_source=params_source,
                weight_bits=profile.weight_bits or settings.default_weight_bits,
                mem_used_peak_bytes=max(
                    (g.mem_used_peak_bytes for g in members if g.mem_used_peak_bytes), default=None
                ),
                mem_total_bytes=max((g.mem_total_bytes for g in members if g.mem_total_bytes), default=None),
                util_busy_mean_pct=_mean(g.util_busy_mean_pct for g in members),
                dram_bw_busy_mean_pct=_mean(g.dram_bw_busy_mean_pct for g in members),
                mem_util_busy_mean_pct=_mean(g.mem_util_busy_mean_pct for g in members),
                has_gpm=bool(members) and all(g.has_gpm for g in members),
                concurrency=concurrency,
                concurrency_source=conc_source,
                traffic=t,
                engine=engine,
                fleet=fleet.get(key) if members else None,
            )
        )
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
