"""The runner: query the rollups, build the inputs, call every finding function.

`run_findings` is the only place findings touch the store (with the rows the overview
shares, `hour_rows`); everything it calls after the queries is pure (`compute_findings`,
and the row-to-input modules `facts`, `gpu_hours`, `engine_hours`), so tests can feed it
hand-built inputs."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from api.findings import facts
from api.findings.catalogue import PriceBook
from api.findings.engine_hours import engine_stats
from api.findings.fleet import fleet_findings
from api.findings.gpu_hours import fleet_facts, gpu_facts
from api.findings.hour_rows import HourRows, as_gpu_hours
from api.findings.idle import idle_findings
from api.findings.inputs import Deployment, GpuUsage
from api.findings.model import Finding, sort_findings
from api.findings.quantisation import quantisation_findings
from api.findings.spans import Spans, align, split
from api.findings.speculative import speculative_findings
from api.findings.unit_cost import CostBy, CostLine, ModelTraffic, cost_lines
from api.findings.workload import workload_findings
from api.settings import Settings
from api.store import Query, Store
from api.store.sql import cost as cost_sql
from api.store.sql import findings as sql
from api.timewindow import Window

__all__ = ["Inputs", "align", "compute_findings", "load_inputs", "run_cost", "run_findings", "window_spans"]

_NO_RATE = {"rate_buckets": 0, "rate_s1": 0.0, "rate_s2": 0.0, "rate_first": 0, "rate_last": 0}


@dataclass(frozen=True, slots=True)
class Inputs:
    gpus: Sequence[GpuUsage]
    deployments: Sequence[Deployment]


def rollups_since(store: Store) -> datetime | None:
    """When the hourly and daily findings rollups began to be filled (None: never)."""
    seconds = store.scalar(sql.ROLLUPS_SINCE, version=sql.ROLLUPS_MIGRATION)
    return None if seconds is None else datetime.fromtimestamp(int(seconds), tz=UTC)


def window_spans(store: Store, window: Window) -> Spans:
    """`window` cut into the parts the daily, hourly and minute rollups answer."""
    return split(window, rollups_since(store))


def _parts(spans: Spans, hourly: Query, minutes: Query, **params: Any) -> list[tuple[Query, dict[str, Any]]]:
    """The queries that read the spans' whole hours from `hourly` and the rest from `minutes`,
    with their parameters, leaving out a query whose part is empty."""
    params |= spans.params()
    parts = []
    if not spans.minutes_only:
        parts.append((hourly, params))
    if spans.has_minutes:
        parts.append((minutes, params))
    return parts


def _done(futures: Sequence[Future[pa.Table]]) -> list[pa.Table]:
    return [f.result() for f in futures]


def _shared_hours(spans: Spans, thresholds: dict[str, Any], shared: HourRows | None) -> HourRows | None:
    """`shared` where it holds the spans' whole hours at these thresholds and the overview's
    fleet claimed it (`api.findings.hour_rows`: then reading them costs nothing more)."""
    if shared is None or spans.minutes_only:
        return None
    if not shared.covers(spans.hours.start, spans.hours.end, **thresholds):
        return None
    return shared if shared.claimed() else None


def load_inputs(
    store: Store,
    settings: Settings,
    window: Window,
    *,
    spans: Spans | None = None,
    hour_rows: HourRows | None = None,
) -> Inputs:
    """Run the findings queries over `window` and build the inputs of the finding functions.
    `spans`: which rollups answer which part of the window (default: `window_spans`).
    `hour_rows`: the hourly GPU rollup's rows as the overview shares them: the whole hours
    come from them where its fleet read them (`api.findings.hour_rows`).

    This thread reads the whole hours per GPU, the costliest query, while every other query
    is queued at once on one worker thread: the store answers two at a time (it holds two
    connections), and the next while this thread turns the last answer into inputs (chDB
    releases the GIL while it runs a query)."""
    f = settings.findings
    spans = spans or window_spans(store, window)
    thresholds = {"idle_pct": f.idle_threshold_pct, "held_mib": f.held_memory_mib}
    shared = _shared_hours(spans, thresholds, hour_rows)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="findings-read") as pool:

        def read(parts: list[tuple[Query, dict[str, Any]]]) -> list[Future[pa.Table]]:
            return [pool.submit(store.arrow, query, **params) for query, params in parts]

        gpu_parts = _parts(spans, sql.GPU_HOURS, sql.GPU_MINUTES, **thresholds)
        gpu_minutes = read([(q, p) for q, p in gpu_parts if q is not sql.GPU_HOURS])
        bucket_rows = read(_parts(spans, sql.FLEET_5M, sql.FLEET_MINUTES))
        traffic_table = pool.submit(store.arrow, sql.DEPLOYMENT_TRAFFIC, **spans.params())
        engine_rows = read(
            _parts(
                spans,
                sql.ENGINE_HOURS,
                sql.ENGINE_MINUTES,
                kv_saturation=f.kv_saturation,
                metrics=list(sql.ENGINE_METRICS),
            )
        )
        try:
            hours = spans.hours
            if shared is not None:
                gpu_hours = [as_gpu_hours(shared.table(), hours.start, hours.end)]
            else:
                gpu_hours = [store.arrow(q, **p) for q, p in gpu_parts if q is sql.GPU_HOURS]
            per_gpu = gpu_facts(
                gpu_hours + _done(gpu_minutes), tz=f.timezone, streak_min=f.streak_min_minutes
            )
            fleet = fleet_facts(per_gpu.rows, _done(bucket_rows), window, f.bucket_minutes)
            traffic_rows = traffic_table.result().to_pylist()
            for row in traffic_rows:
                rate = fleet.rates.get((row["cluster"], row["deployment_name"]))
                row.update(rate.as_fields() if rate else _NO_RATE)
            engine = engine_stats(_done(engine_rows))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    deps = facts.deployments(
        per_gpu.gpus,
        fleet.series,
        facts.traffic(traffic_rows, f.bucket_minutes),
        engine,
        [h.as_row() for h in per_gpu.hosts],
        f,
        PriceBook(settings.cost),
    )
    return Inputs(per_gpu.gpus, deps)


def compute_findings(inputs: Inputs, settings: Settings, window: Window) -> list[Finding]:
    """Every finding kind over the inputs, most severe and most expensive first."""
    f = settings.findings
    prices = PriceBook(settings.cost)
    findings: list[Finding] = []
    findings += idle_findings(inputs.gpus, window, f, prices)
    findings += fleet_findings(inputs.deployments, window, f, prices)
    findings += speculative_findings(inputs.deployments, window, f)
    findings += quantisation_findings(inputs.deployments, window, f)
    findings += workload_findings(inputs.deployments, window, f)
    return sort_findings(findings)


def run_findings(
    store: Store, settings: Settings, window: Window, *, hour_rows: HourRows | None = None
) -> list[Finding]:
    """All findings over `window` (cut by `align`: a day or more to whole hours, a shorter
    window to whole minutes), read from the rollups (the hourly GPU rows from `hour_rows`
    where they hold them)."""
    window = align(window)
    return compute_findings(load_inputs(store, settings, window, hour_rows=hour_rows), settings, window)


def run_cost(store: Store, settings: Settings, window: Window, by: CostBy) -> list[CostLine]:
    """What the fleet cost over `window` (cut by `align`), grouped `by` deployment, model,
    GPU model or host."""
    window = align(window)
    f = settings.findings
    spans = window_spans(store, window)
    thresholds = {"idle_pct": f.idle_threshold_pct, "held_mib": f.held_memory_mib}
    parts = _parts(spans, sql.GPU_HOURS, sql.GPU_MINUTES, **thresholds)
    # The traffic on a worker while this thread reads the GPU-hours: the store runs both.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cost-read") as pool:
        by_model = by in (CostBy.DEPLOYMENT, CostBy.MODEL)
        traffic_rows = pool.submit(store.rows, cost_sql.MODEL_TRAFFIC, **spans.params()) if by_model else None
        tables = [store.arrow(query, **params) for query, params in parts]
        gpus = gpu_facts(tables, tz="UTC", streak_min=0).cost
        traffic = [
            ModelTraffic(
                cluster=r["cluster"],
                deployment=r["deployment_name"],
                model=r["model_name"],
                requests=int(r["n_requests"]),
                output_tokens=int(r["n_output_tokens"]),
                e2e_s=float(r["e2e_total"]),
            )
            for r in (traffic_rows.result() if traffic_rows is not None else [])
        ]
    return cost_lines(gpus, traffic, by, window, PriceBook(settings.cost))
