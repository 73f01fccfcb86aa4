"""Scenario builders: GPU samples, request spans and engine metrics posted through the real
OTLP ingest endpoints (tests/otlp.py), so the findings read what ingest and the rollups made."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from api.store import Query, Store
from api.store.sql.findings import ROLLUPS_MIGRATION
from tests.otlp import NS, attributes, gpu_metrics_request, post, resource, traces_request, vllm_span

H100 = "NVIDIA H100 80GB HBM3"
H100_PRICE = 2.99  # the catalogue's default $/GPU-hour for h100-sxm, restated here on purpose
GB = 1_000_000_000


def ns(t: datetime) -> int:
    return int(t.timestamp()) * NS


def post_ok(client: TestClient, path: str, message: Any) -> None:
    response = post(client, path, message)
    assert response.status_code == 200, response.text


def feed_gpus(
    client: TestClient,
    *,
    host: str,
    deployment: str,
    gpus: Sequence[str],
    start: datetime,
    minutes: int,
    util: Callable[[int, int], int],
    mem_used: Callable[[int, int], int],
    name: str = H100,
    procs: Callable[[int, int], int] | None = None,
    chunk_minutes: int = 1440,
) -> None:
    """One sample per GPU per minute (at second 30) for `minutes` from `start`.
    `util(gpu_index, minute)` → NVML utilisation %, `mem_used(gpu_index, minute)` → bytes."""
    t0 = ns(start)
    for first in range(0, minutes, chunk_minutes):
        samples = []
        for m in range(first, min(minutes, first + chunk_minutes)):
            for i, uuid in enumerate(gpus):
                sample: dict[str, Any] = {
                    "time_ns": t0 + (m * 60 + 30) * NS,
                    "uuid": uuid,
                    "index": i,
                    "name": name,
                    "util_gpu_pct": util(i, m),
                    "mem_used_bytes": mem_used(i, m),
                    "mem_total_bytes": 80 * GB,
                }
                if procs is not None and procs(i, m):
                    sample["procs"] = [(1000 + i, mem_used(i, m), util(i, m))]
                samples.append(sample)
        post_ok(
            client, "/v1/metrics", gpu_metrics_request(resource(host=host, deployment=deployment), samples)
        )


def feed_requests(
    client: TestClient,
    *,
    host: str,
    deployment: str,
    gpus: Sequence[str],
    model: str,
    starts_s: Iterable[float],
    start: datetime,
    **phases: Any,
) -> None:
    """vLLM-shaped spans, one per start offset (seconds after `start`), all alike."""
    t0 = ns(start)
    spans = [
        vllm_span(t0 + int(offset * NS), request_id=f"r{i}", model=model, **phases)
        for i, offset in enumerate(starts_s)
    ]
    res = resource(host=host, deployment=deployment, gpus=gpus, model=model)
    for i in range(0, len(spans), 2000):
        post_ok(client, "/v1/traces", traces_request([(res, spans[i : i + 2000])]))


def feed_engine(
    client: TestClient,
    *,
    host: str,
    deployment: str,
    instance: str,
    start: datetime,
    minutes: int,
    every_s: int,
    gauges: dict[str, float | Callable[[int], float]],
    counters: dict[str, Callable[[int], int]],
) -> None:
    """vLLM /metrics as the collector relays them: gauges constant or, like counters, a
    function of the sample number k."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(
        attributes(resource(host=host, deployment=deployment) | {"inferwatch.instance": instance})
    )
    metrics = rm.scope_metrics.add().metrics
    times = [ns(start) + s * NS for s in range(0, minutes * 60, every_s)]
    for name, value in gauges.items():
        m = metrics.add(name=name)
        for k, t in enumerate(times):
            m.gauge.data_points.add(time_unix_nano=t, as_double=value(k) if callable(value) else value)
    for name, fn in counters.items():
        m = metrics.add(name=name)
        m.sum.is_monotonic = True
        for k, t in enumerate(times):
            m.sum.data_points.add(time_unix_nano=t, as_int=fn(k))
    post_ok(client, "/v1/metrics", request)


def rollups_cover_everything(store: Store) -> None:
    """Record the migration that made the hourly and daily findings rollups as run long ago,
    as if every row had passed through their views: the findings then read whole hours and
    days from them, where before (the migration ran as the test began, after the data's
    hours) they read the minute rollups."""
    store.execute(
        Query(
            "test.rollups_since",
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES ({version:UInt32}, 'findings', 'test', toDateTime('2000-01-01 00:00:00', 'UTC'))",
        ),
        version=ROLLUPS_MIGRATION,
    )
