"""`GET /api/v1/deployments` and `/api/v1/deployments/{cluster}/{name}`: latency percentiles
(TTFT, inter-token, end-to-end, queue), the prefill/decode split, load and concurrency,
KV-cache use, and cost per million output tokens, per deployment over a window.

The read functions are what the web pages render too. Windows longer than a day and a
half read the daily rollup for their whole days and the hourly one for the hours around
them (series points: hours only); shorter ones the minute rollups. GPU-hours and cost come
from the fleet's GPU-hours (`api.routes.fleet_rows`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import get_store
from api.errors import NotFound
from api.findings.catalogue import PriceBook
from api.routes.fleet_rows import GpuHours, by_deployment
from api.routes.gpus import (
    GpuOut,
    WindowOut,
    as_utc,
    configured_settings,
    offset_of,
    parse_window,
    read_fleet_hours,
    read_gpu_hours,
    series_step_s,
    time_buckets,
)
from api.settings import Settings
from api.store import Store
from api.store.sql.deployments import (
    DEPLOYMENT_SERIES,
    DEPLOYMENT_SUMMARY,
    ENGINE_SERIES,
    ENGINE_SUMMARY,
)
from api.timewindow import Window

router = APIRouter(tags=["deployments"])

_HOURLY_FROM_S = 36 * 3600


def resolution(window: Window) -> str:
    """Which rollup a window reads: "hour" past a day and a half, else "minute"."""
    return "hour" if window.seconds > _HOURLY_FROM_S else "minute"


def day_span(window: Window, *, days: bool = True) -> dict[str, datetime]:
    """The whole UTC days of a long window that the daily rollup answers (`days_from`,
    `days_to`); the hourly one answers the hours around them, from the hour `window`
    starts in. `days=False` (or no whole day inside): an empty span, every hour from the
    hourly rollup."""
    first_hour = window.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    midnight = first_hour.replace(hour=0)
    day_from = midnight if midnight == first_hour else midnight + timedelta(days=1)
    day_to = window.end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if not days or day_from >= day_to:
        day_from = day_to = first_hour
    return {"days_from": day_from, "days_to": day_to}


class Percentiles(BaseModel):
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class SloOut(BaseModel):
    ttft_p95_s: float | None = Field(description="TTFT p95 objective, seconds (settings → deployments)")
    itl_p95_s: float | None = Field(description="Inter-token latency p95 objective, seconds")
    ttft_met: bool | None = Field(description="Whether the window's TTFT p95 is within the objective")
    itl_met: bool | None


class EngineOut(BaseModel):
    running_mean: float | None = Field(
        description="Mean requests running, summed over instances (engine metrics)"
    )
    waiting_mean: float | None = Field(description="Mean requests waiting in the engine's queue, summed")
    waiting_max: float | None = Field(description="Most requests one instance had waiting")
    kv_cache_mean: float | None = Field(description="Mean KV-cache use, 0–1, averaged over instances")
    kv_cache_max: float | None = Field(description="Peak KV-cache use of any instance, 0–1")


class DeploymentOut(BaseModel):
    cluster: str
    deployment: str
    models: list[str]
    framework: str = Field(description="Span convention: vllm, sglang, tgi, genai, generic")
    requests: int
    errors: int
    error_rate: float | None = Field(description="errors / requests, 0–1")
    requests_per_s: float = Field(description="Mean arrival rate over the window, requests per second")
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    output_tokens_per_s: float = Field(description="Mean output tokens per second over the window")
    ttft_s: Percentiles = Field(description="Time to first token, seconds")
    itl_s: Percentiles = Field(description="Inter-token latency (decode time / (output tokens − 1)), seconds")
    e2e_s: Percentiles = Field(description="End-to-end latency, seconds")
    queue_s: Percentiles = Field(description="Time waiting in the engine's queue, seconds")
    prefill_s_mean: float | None = Field(description="Mean prefill time per request with phases, seconds")
    decode_s_mean: float | None = Field(description="Mean decode time per request with phases, seconds")
    prefill_share: float | None = Field(description="prefill / (prefill + decode) time, 0–1")
    concurrency_mean: float = Field(
        description="Mean requests in flight (Little's law: summed end-to-end seconds / window seconds)"
    )
    engine: EngineOut
    hosts: int = Field(description="Distinct hosts that served requests")
    gpus: int = Field(description="GPUs that reported for this deployment")
    gpu_hours: float
    cost_usd: float = Field(description="The deployment's GPU-hours at their price, dollars")
    cost_usd_per_week: float
    usd_per_1m_output_tokens: float | None = Field(description="cost_usd / output tokens × 10⁶")
    usd_per_request: float | None
    slo: SloOut


class DeploymentPage(BaseModel):
    window: WindowOut
    total: int
    items: list[DeploymentOut]
    next_cursor: str | None


class DeploymentSeries(BaseModel):
    times: list[datetime]
    requests: list[int] = Field(description="Requests that arrived in each bucket")
    requests_per_s: list[float | None]
    output_tokens_per_s: list[float | None]
    error_rate: list[float | None]
    ttft_p50_s: list[float | None]
    ttft_p95_s: list[float | None]
    itl_p50_s: list[float | None]
    itl_p95_s: list[float | None]
    e2e_p50_s: list[float | None]
    e2e_p95_s: list[float | None]
    queue_p95_s: list[float | None]
    prefill_s_mean: list[float | None] = Field(description="Mean prefill seconds per request")
    decode_s_mean: list[float | None] = Field(description="Mean decode seconds per request")
    concurrency_mean: list[float | None] = Field(description="Mean requests in flight (Little's law)")
    engine_running: list[float | None]
    engine_waiting: list[float | None]
    kv_cache_mean: list[float | None]
    kv_cache_max: list[float | None]


class DeploymentDetailOut(BaseModel):
    window: WindowOut
    deployment: DeploymentOut
    series: DeploymentSeries
    gpus: list[GpuOut]


def _pct(values: Any) -> Percentiles:
    v = [None if x is None or x != x else round(float(x), 4) for x in (values or [])]
    v += [None] * (4 - len(v))
    return Percentiles(p50=v[0], p90=v[1], p95=v[2], p99=v[3])


def _safe(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


def read_deployments(
    store: Store, settings: Settings, window: Window, *, deployment: str = "", hours: GpuHours | None = None
) -> list[DeploymentOut]:
    """Every deployment with traffic or GPUs in the window (or just `deployment`). `hours`:
    the fleet's GPU-hours over the window when the caller has read them already."""
    res = resolution(window)
    params = {"start": window.start, "end": window.end, "deployment": deployment, **day_span(window)}
    rows = store.rows(DEPLOYMENT_SUMMARY[res], **params)
    engine: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in store.rows(ENGINE_SUMMARY[res], **params):
        engine[(r["cluster"], r["deployment"])][r["metric"]] = r
    if hours is None:
        hours = read_gpu_hours(store, settings, window, deployment=deployment)
    gpu_time = by_deployment(hours, PriceBook(settings.cost).per_hour)
    cost = {
        key: {"gpus": t.gpus, "hours": t.hours, "usd": t.usd}
        for key, t in gpu_time.items()
        if not deployment or key[1] == deployment
    }
    seconds = window.seconds
    by_key = {(r["cluster"], r["deployment"]): r for r in rows}
    out = []
    for key in sorted(set(by_key) | set(cost)):
        r = by_key.get(key) or {}
        c = cost.get(key) or {"gpus": 0, "hours": 0.0, "usd": 0.0}
        e = engine.get(key, {})
        requests = int(r.get("requests") or 0)
        output = int(r.get("output_tokens") or 0)
        phased = int(r.get("phased") or 0)
        prefill, decode = float(r.get("prefill_s") or 0), float(r.get("decode_s") or 0)
        ttft, itl = _pct(r.get("ttft_q")), _pct(r.get("tpot_q"))
        profile = settings.findings.deployments.get(key[1])
        slo_ttft = profile.ttft_p95_slo_s if profile else None
        slo_itl = profile.itl_p95_slo_s if profile else None
        out.append(
            DeploymentOut(
                cluster=key[0],
                deployment=key[1],
                models=sorted(r.get("models") or []),
                framework=r.get("framework") or "",
                requests=requests,
                errors=int(r.get("errors") or 0),
                error_rate=_safe(r.get("errors") or 0, requests),
                requests_per_s=round(requests / seconds, 4),
                prompt_tokens=int(r.get("prompt_tokens") or 0),
                cached_tokens=int(r.get("cached_tokens") or 0),
                output_tokens=output,
                output_tokens_per_s=round(output / seconds, 3),
                ttft_s=ttft,
                itl_s=itl,
                e2e_s=_pct(r.get("e2e_q")),
                queue_s=_pct(r.get("queue_q")),
                prefill_s_mean=_safe(prefill, phased),
                decode_s_mean=_safe(decode, phased),
                prefill_share=_safe(prefill, prefill + decode),
                concurrency_mean=round(float(r.get("e2e_s") or 0) / seconds, 3),
                engine=EngineOut(
                    running_mean=_metric(e, "requests_running", "mean_value"),
                    waiting_mean=_metric(e, "requests_waiting", "mean_value"),
                    waiting_max=_metric(e, "requests_waiting", "max_value"),
                    kv_cache_mean=_metric(e, "kv_cache_usage", "mean_value"),
                    kv_cache_max=_metric(e, "kv_cache_usage", "max_value"),
                ),
                hosts=int(r.get("hosts") or 0),
                gpus=int(c["gpus"]),
                gpu_hours=round(c["hours"], 2),
                cost_usd=round(c["usd"], 2),
                cost_usd_per_week=round(c["usd"] / window.weeks, 2),
                usd_per_1m_output_tokens=_safe(c["usd"] * 1e6, output, 4),
                usd_per_request=_safe(c["usd"], requests, 6),
                slo=SloOut(
                    ttft_p95_s=slo_ttft,
                    itl_p95_s=slo_itl,
                    ttft_met=None if slo_ttft is None or ttft.p95 is None else ttft.p95 <= slo_ttft,
                    itl_met=None if slo_itl is None or itl.p95 is None else itl.p95 <= slo_itl,
                ),
            )
        )
    return out


def _metric(engine: dict[str, dict[str, Any]], metric: str, field: str) -> float | None:
    row = engine.get(metric)
    return None if row is None or row[field] is None else round(float(row[field]), 4)


def read_deployment(
    store: Store, settings: Settings, window: Window, cluster: str, name: str
) -> DeploymentDetailOut:
    """One deployment: its summary, its series and its GPUs. NotFound when it neither served
    a request nor had a GPU in the window."""
    fleet = read_fleet_hours(store, settings, window, cluster=cluster, deployment=name)
    found = [
        d
        for d in read_deployments(store, settings, window, deployment=name, hours=fleet.hours)
        if d.cluster == cluster
    ]
    if not found:
        raise NotFound(
            f"deployment {name!r} in cluster {cluster!r} has no requests or GPUs in this window; "
            "try a longer window"
        )
    res = resolution(window)
    step = max(series_step_s(window), 3600) if res == "hour" else series_step_s(window)
    params = {
        "start": window.start,
        "end": window.end,
        "deployment": name,
        "cluster": cluster,
        "step_s": step,
        # Series points are hours or less: no daily rows.
        **day_span(window, days=False),
    }
    rows = {int(as_utc(r["bucket"]).timestamp()): r for r in store.rows(DEPLOYMENT_SERIES[res], **params)}
    eng: dict[int, dict[str, Any]] = defaultdict(dict)
    for er in store.rows(ENGINE_SERIES[res], **params):
        eng[int(as_utc(er["bucket"]).timestamp())][er["metric"]] = er
    times = time_buckets(window, step)
    s: dict[str, list[Any]] = defaultdict(list)
    for t in times:
        key = int(t.timestamp())
        r = rows.get(key)
        e = eng.get(key, {})
        n = int(r["requests"]) if r else 0
        ttft, itl, e2e, queue = (
            _pct(r[q]) if r and n else _pct(None) for q in ("ttft_q", "tpot_q", "e2e_q", "queue_q")
        )
        s["requests"].append(n)
        s["requests_per_s"].append(round(n / step, 6) if r else None)
        s["output_tokens_per_s"].append(round(r["output_tokens"] / step, 3) if r else None)
        s["error_rate"].append(_safe(r["errors"], n) if r else None)
        s["ttft_p50_s"].append(ttft.p50)
        s["ttft_p95_s"].append(ttft.p95)
        s["itl_p50_s"].append(itl.p50)
        s["itl_p95_s"].append(itl.p95)
        s["e2e_p50_s"].append(e2e.p50)
        s["e2e_p95_s"].append(e2e.p95)
        s["queue_p95_s"].append(queue.p95)
        s["prefill_s_mean"].append(_safe(r["prefill_s"], n) if r else None)
        s["decode_s_mean"].append(_safe(r["decode_s"], n) if r else None)
        s["concurrency_mean"].append(round(r["e2e_s"] / step, 3) if r else None)
        s["engine_running"].append(_metric(e, "requests_running", "value"))
        s["engine_waiting"].append(_metric(e, "requests_waiting", "value"))
        s["kv_cache_mean"].append(_metric(e, "kv_cache_usage", "value"))
        s["kv_cache_max"].append(_metric(e, "kv_cache_usage", "max_value"))
    return DeploymentDetailOut(
        window=WindowOut(start=window.start, end=window.end, step_s=step),
        deployment=found[0],
        series=DeploymentSeries(times=times, **s),
        gpus=[g for g in fleet.gpus if g.deployment == name],
    )


_WINDOW = Query("7d", max_length=16, description="Window length ending at `end`: 1h, 24h, 7d, 30d, …")
_END = Query(None, description="End of the window (ISO 8601, UTC if no zone); default now")


@router.get(
    "/api/v1/deployments",
    response_model=DeploymentPage,
    summary="Every deployment: latency percentiles, phase split, load, cost per 1M tokens",
)
async def list_deployments(
    request: Request,
    window: str = _WINDOW,
    end: datetime | None = _END,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=16),
    store: Store = Depends(get_store),
) -> DeploymentPage:
    w = parse_window(window, end)
    settings = await run_in_threadpool(configured_settings, request)
    items = await run_in_threadpool(read_deployments, store, settings, w)
    offset = offset_of(cursor)
    return DeploymentPage(
        window=WindowOut(start=w.start, end=w.end, step_s=series_step_s(w)),
        total=len(items),
        items=items[offset : offset + limit],
        next_cursor=str(offset + limit) if offset + limit < len(items) else None,
    )


@router.get(
    "/api/v1/deployments/{cluster}/{name}",
    response_model=DeploymentDetailOut,
    summary="One deployment: summary, series over the window, its GPUs",
)
async def get_deployment(
    request: Request,
    cluster: str,
    name: str,
    window: str = _WINDOW,
    end: datetime | None = _END,
    store: Store = Depends(get_store),
) -> DeploymentDetailOut:
    w = parse_window(window, end)
    settings = await run_in_threadpool(configured_settings, request)
    return await run_in_threadpool(read_deployment, store, settings, w, cluster, name)
