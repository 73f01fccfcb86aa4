"""Telemetry for the alert and report tests: GPU samples and engine metrics through the real
OTLP ingest endpoints, request rows straight into the store."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from api.store import Store
from tests.otlp import NS, attributes, gauge, gpu_metrics_request, post, resource


def ns(t: datetime) -> int:
    return int(t.timestamp()) * NS


def gpu_minutes(
    client: Any,
    *,
    host: str,
    uuid: str,
    index: int,
    starts: Iterable[datetime],
    util: Iterable[int],
    sm: Iterable[float | None] | None = None,
    cluster: str = "prod",
    deployment: str = "chat",
) -> None:
    """One GPU sample in each minute starting at `starts` (10 s past), with these utilisations."""
    sm_values = list(sm) if sm is not None else None
    samples = []
    for i, (start, u) in enumerate(zip(starts, util, strict=True)):
        sample: dict[str, Any] = {
            "time_ns": ns(start) + 10 * NS,
            "uuid": uuid,
            "index": index,
            "name": "NVIDIA H100 80GB HBM3",
            "util_gpu_pct": u,
        }
        if sm_values is not None and sm_values[i] is not None:
            sample["sm_activity_pct"] = sm_values[i]
        samples.append(sample)
    res = resource(host=host, deployment=deployment, cluster=cluster)
    response = post(client, "/v1/metrics", gpu_metrics_request(res, samples))
    assert response.status_code == 200, response.text


# Request rows as the ingest path stores them, written straight to the `requests` table:
# the rollups (deployment_minute, inflight_minute) are filled by ClickHouse's own views.
_REQUESTS = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("end_time", pa.timestamp("us", tz="UTC")),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("cluster", pa.string()),
        ("host", pa.string()),
        ("deployment", pa.string()),
        ("model", pa.string()),
        ("framework", pa.string()),
        ("prompt_tokens", pa.uint32()),
        ("output_tokens", pa.uint32()),
        ("queue_s", pa.float64()),
        ("ttft_s", pa.float64()),
        ("prefill_s", pa.float64()),
        ("decode_s", pa.float64()),
        ("e2e_s", pa.float64()),
        ("gpu_uuids", pa.list_(pa.string())),
    ]
)


def requests_in(
    store: Store,
    *,
    host: str,
    deployment: str,
    starts: Iterable[datetime],
    per_minute: int,
    ttft: float,
    decode: float,
    output: int,
    gpus: tuple[str, ...] = (),
    cluster: str = "prod",
) -> None:
    """`per_minute` requests arriving 5 s into each minute; prefill = TTFT, e2e = TTFT + decode."""
    rows: list[dict[str, Any]] = []
    for start in starts:
        for _ in range(per_minute):
            arrival = start + timedelta(seconds=5)
            rows.append(
                {
                    "time": arrival,
                    "end_time": arrival + timedelta(seconds=ttft + decode),
                    "trace_id": uuid.uuid4().hex,
                    "span_id": uuid.uuid4().hex[:16],
                    "cluster": cluster,
                    "host": host,
                    "deployment": deployment,
                    "model": "llama",
                    "framework": "vllm",
                    "prompt_tokens": 100,
                    "output_tokens": output,
                    "queue_s": 0.0,
                    "ttft_s": ttft,
                    "prefill_s": ttft,
                    "decode_s": decode,
                    "e2e_s": ttft + decode,
                    "gpu_uuids": list(gpus),
                }
            )
    store.insert("requests", pa.Table.from_pylist(rows, schema=_REQUESTS))


def kv_usage(
    client: Any,
    *,
    host: str,
    instance: str,
    deployment: str,
    points: Iterable[tuple[datetime, float]],
    cluster: str = "prod",
) -> None:
    """vLLM's KV-cache gauge (0–1) scraped at these times."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(
        attributes(
            {**resource(host=host, deployment=deployment, cluster=cluster), "inferwatch.instance": instance}
        )
    )
    gauge(
        rm.scope_metrics.add().metrics,
        "vllm:kv_cache_usage_perc",
        "1",
        [(ns(t), value, {}) for t, value in points],
    )
    response = post(client, "/v1/metrics", request)
    assert response.status_code == 200, response.text
