"""The runner: query the rollups, build the inputs, call every finding function.

`run_findings` is the only place findings touch the store; everything it calls after the
queries is pure (`compute_findings`), so tests can feed it hand-built inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.findings import facts
from api.findings.catalogue import PriceBook
from api.findings.fleet import fleet_findings
from api.findings.idle import idle_findings
from api.findings.inputs import Deployment, GpuUsage
from api.findings.model import Finding, sort_findings
from api.findings.quantisation import quantisation_findings
from api.findings.speculative import speculative_findings
from api.findings.unit_cost import CostBy, CostLine, GpuHours, ModelTraffic, cost_lines
from api.findings.workload import workload_findings
from api.settings import Settings
from api.store import Store
from api.store.sql import cost as cost_sql
from api.store.sql import findings as sql
from api.timewindow import Window


@dataclass(frozen=True, slots=True)
class Inputs:
    gpus: Sequence[GpuUsage]
    deployments: Sequence[Deployment]


def _window_params(window: Window) -> dict[str, Any]:
    return {"start": window.start, "end": window.end}


def align(window: Window) -> Window:
    """The window on whole minutes (the rollups' resolution): both ends floored."""
    return Window(window.start.replace(second=0, microsecond=0), window.end.replace(second=0, microsecond=0))


def load_inputs(store: Store, settings: Settings, window: Window) -> Inputs:
    """Run the findings queries over `window` and build the inputs of the finding functions."""
    f = settings.findings
    w = _window_params(window)
    gpu_rows = store.rows(
        sql.GPU_USAGE,
        **w,
        idle_pct=f.idle_threshold_pct,
        held_bytes=f.held_memory_mib * 1024 * 1024,
        streak_min=f.streak_min_minutes,
    )
    host_rows = store.rows(sql.HOST_INFLIGHT, **w)
    fleet_rows = store.rows(sql.FLEET_BUCKETS, **w, bucket_minutes=f.bucket_minutes)
    traffic_rows = store.rows(sql.DEPLOYMENT_TRAFFIC, **w, bucket_minutes=f.bucket_minutes)
    engine_rows = store.rows(
        sql.ENGINE_STATS, **w, kv_saturation=f.kv_saturation, metrics=list(sql.ENGINE_METRICS)
    )
    prices = PriceBook(settings.cost)
    gpus = facts.gpu_usage(gpu_rows, f.timezone)
    deps = facts.deployments(
        gpus,
        facts.fleet_series(fleet_rows, window, f.bucket_minutes),
        facts.traffic(traffic_rows, f.bucket_minutes),
        facts.engine_stats(engine_rows),
        host_rows,
        f,
        prices,
    )
    return Inputs(gpus, deps)


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


def run_findings(store: Store, settings: Settings, window: Window) -> list[Finding]:
    """All findings over `window` (floored to whole minutes), read from the rollups."""
    window = align(window)
    return compute_findings(load_inputs(store, settings, window), settings, window)


def run_cost(store: Store, settings: Settings, window: Window, by: CostBy) -> list[CostLine]:
    """What the fleet cost over `window`, grouped `by` deployment, model, GPU model or host."""
    window = align(window)
    w = _window_params(window)
    gpus = [
        GpuHours(
            cluster=r["cluster"],
            host=r["host"],
            gpu_uuid=r["gpu_uuid"],
            gpu_name=r["gpu_name_"],
            deployment=r["deployment_"],
            minutes=int(r["minutes_"]),
            util_mean_pct=r["util_mean_"],
        )
        for r in store.rows(cost_sql.GPU_HOURS, **w)
    ]
    traffic = []
    if by in (CostBy.DEPLOYMENT, CostBy.MODEL):
        traffic = [
            ModelTraffic(
                cluster=r["cluster"],
                deployment=r["deployment_name"],
                model=r["model_name"],
                requests=int(r["n_requests"]),
                output_tokens=int(r["n_output_tokens"]),
                e2e_s=float(r["e2e_total"]),
            )
            for r in store.rows(cost_sql.MODEL_TRAFFIC, **w)
        ]
    return cost_lines(gpus, traffic, by, window, PriceBook(settings.cost))
