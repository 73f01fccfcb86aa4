"""The whole path with real parts: the OpenTelemetry SDK as the engine, the collector, and a
live inferwatch server on chDB; rows are read back from the server's API and store."""

from __future__ import annotations

import time
from typing import Any

import httpx
from opentelemetry.trace import SpanKind

from api.store import Query, Store
from tests.collector.conftest import (
    PROM_FIXTURES,
    engine_tracer,
    needs_no_nvidia_driver,
    replay_nvml,
    running,
    test_config,
    wait_until,
)

NS = 1_000_000_000


def vllm_span(tracer: Any, request_id: str, start_ns: int) -> Any:
    span = tracer.start_span(
        "llm_request",
        kind=SpanKind.SERVER,
        start_time=start_ns,
        attributes={
            "gen_ai.request.id": request_id,
            "gen_ai.usage.prompt_tokens": 100,
            "gen_ai.usage.completion_tokens": 20,
            "gen_ai.latency.time_in_queue": 0.01,
            "gen_ai.latency.time_to_first_token": 0.05,
            "gen_ai.latency.e2e": 0.5,
        },
    )
    span.end(end_time=start_ns + NS // 2)
    return span


def requests_rows(server_url: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{server_url}/api/v1/requests", params={"since": "2000-01-01T00:00:00Z", "limit": 1000}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["items"]


def test_engine_spans_reach_the_store_stamped_with_the_collectors_identity(
    live_server: Any, tmp_path: Any
) -> None:
    config = test_config(live_server.url, tmp_path / "spool")
    with running(config) as collector, engine_tracer(collector, {"service.name": "vllm"}) as provider:
        tracer = provider.get_tracer("vllm")
        start = time.time_ns() - 60 * NS
        spans = [vllm_span(tracer, f"req-{i}", start + i * NS) for i in range(3)]
        provider.force_flush()
        rows = wait_until(
            lambda: len(requests_rows(live_server.url)) == 3 and requests_rows(live_server.url),
            "three request rows",
        )
    by_id = {r["request_id"]: r for r in rows}
    assert set(by_id) == {"req-0", "req-1", "req-2"}
    for span in spans:
        row = by_id[span.attributes["gen_ai.request.id"]]
        assert row["span_id"] == format(span.get_span_context().span_id, "016x")
        assert (row["cluster"], row["host"], row["deployment"]) == ("test-cluster", "node-a", "chat-test")


class MetricsEndpoint:
    """A real HTTP server exposing a fixture file as an engine's Prometheus /metrics."""

    def __init__(self, text: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_gpu_samples_recorded_on_an_h200_become_gpu_rows_with_the_collectors_identity(
    live_server: Any, store: Store, tmp_path: Any
) -> None:
    nvml, clock = replay_nvml("load")
    config = test_config(live_server.url, tmp_path / "spool", no_gpu=False)
    query = Query("test.gpu", "SELECT * FROM gpu_samples FINAL ORDER BY time")
    with running(config, nvml=nvml, gpu_clock=clock):
        rows = wait_until(lambda: len(store.rows(query)) >= 4 and store.rows(query), "four GPU rows")
    for row in rows:
        assert (row["cluster"], row["host"], row["deployment"]) == ("test-cluster", "node-a", "chat-test")
        assert (row["gpu_uuid"], row["gpu_index"], row["gpu_name"]) == (
            "GPU-f6e49fd3-0d60-a1ab-173b-e421086f0bbc",
            0,
            "NVIDIA H200",
        )
        assert row["mem_total_bytes"] == 150_754_820_096
        assert row["util_gpu_pct"] in (99, 100)  # every tick of load.json read 99 or 100
        assert row["power_limit_mw"] == 700_000
        assert row["proc_pids"] == [447]
    # the tape's GPM readings were 95.9-96.5 % SM activity; the store keeps whole percent
    assert {row["sm_activity_pct"] for row in rows[1:]} <= {95, 96, 97}


def test_vllm_metrics_scraped_from_its_endpoint_are_stored_under_canonical_names(
    live_server: Any, store: Store, tmp_path: Any
) -> None:
    endpoint = MetricsEndpoint((PROM_FIXTURES / "vllm_v1.txt").read_text())
    config = test_config(
        live_server.url, tmp_path / "spool", engine_metrics=endpoint.url, scrape_interval=0.2
    )
    query = Query(
        "test.engine",
        "SELECT metric, engine, instance, host, value FROM engine_metrics WHERE metric = 'kv_cache_usage'",
    )
    try:
        with running(config) as collector:
            rows = wait_until(lambda: store.rows(query), "kv_cache_usage rows")
            assert (
                collector.metrics.value(
                    "inferwatch_collector_received_items_total", {"kind": "metrics", "source": "engine"}
                )
                > 0
            )
    finally:
        endpoint.close()
    assert {(r["engine"], r["instance"], r["host"], r["value"]) for r in rows} == {
        ("vllm", "node-a-0", "node-a", 0.4125)
    }


@needs_no_nvidia_driver
def test_without_a_gpu_driver_the_collector_still_relays_spans(live_server: Any, tmp_path: Any) -> None:
    # no_gpu=False: the collector tries the real NVML, which this machine does not have.
    config = test_config(live_server.url, tmp_path / "spool", no_gpu=False)
    with running(config) as collector, engine_tracer(collector, {"service.name": "vllm"}) as provider:
        vllm_span(provider.get_tracer("vllm"), "no-driver", time.time_ns() - 10 * NS)
        provider.force_flush()
        (row,) = wait_until(lambda: requests_rows(live_server.url), "the span's row")
        assert collector.metrics.value("inferwatch_collector_gpus") == 0
    assert (row["request_id"], row["gpu_uuids"]) == ("no-driver", [])
