"""Spans shaped as each engine sends them, exported by the real OpenTelemetry SDK over
OTLP/HTTP (protobuf and JSON) to a live server, read back from /api/v1/requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtoSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

NS = 1_000_000_000
RESOURCE = {
    "host.name": "gpu-node-3",
    "inferwatch.cluster": "prod",
    "inferwatch.deployment": "chat-70b",
    "inferwatch.gpu.uuids": ["GPU-aaaa", "GPU-bbbb"],
}


@pytest.fixture(params=["protobuf", "json"])
def tracer_provider(request: pytest.FixtureRequest, live_server: Any) -> Iterator[TracerProvider]:
    exporter_type = ProtoSpanExporter if request.param == "protobuf" else JsonSpanExporter
    exporter = exporter_type(endpoint=f"{live_server.url}/v1/traces")
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def fetch(live_server: Any, **params: Any) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{live_server.url}/api/v1/requests", params={"since": "2000-01-01T00:00:00Z", **params}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["items"]


def test_vllm_span_becomes_a_row_with_every_phase(tracer_provider: TracerProvider, live_server: Any) -> None:
    tracer = tracer_provider.get_tracer("vllm.tracing")
    start = time.time_ns() - 60 * NS
    span = tracer.start_span(
        "llm_request",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={
            "gen_ai.response.model": "meta-llama/Llama-3.1-70B",
            "gen_ai.request.id": "cmpl-7f3a",
            "gen_ai.request.max_tokens": 512,
            "gen_ai.request.n": 1,
            "gen_ai.request.temperature": 0.7,
            "gen_ai.usage.prompt_tokens": 1200,
            "gen_ai.usage.completion_tokens": 300,
            "gen_ai.latency.time_in_queue": 0.25,
            "gen_ai.latency.time_to_first_token": 0.61,
            "gen_ai.latency.e2e": 6.36,
            "gen_ai.latency.time_in_model_prefill": 0.36,
            "gen_ai.latency.time_in_model_decode": 5.75,
            "gen_ai.latency.time_in_model_inference": 6.11,
            "gen_ai.response.finish_reasons": '["length"]',
        },
    )
    span.end(end_time=start + int(6.36 * NS))
    (row,) = fetch(live_server)
    assert row["framework"] == "vllm"
    assert row["span_id"] == format(span.get_span_context().span_id, "016x")
    assert row["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert row["request_id"] == "cmpl-7f3a"
    assert (row["cluster"], row["host"], row["deployment"]) == ("prod", "gpu-node-3", "chat-70b")
    assert row["model"] == "meta-llama/Llama-3.1-70B"
    assert (row["prompt_tokens"], row["output_tokens"], row["max_tokens"], row["n"]) == (1200, 300, 512, 1)
    assert row["temperature"] == pytest.approx(0.7)
    assert (row["queue_s"], row["ttft_s"], row["prefill_s"], row["decode_s"], row["e2e_s"]) == pytest.approx(
        (0.25, 0.61, 0.36, 5.75, 6.36)
    )
    assert row["finish_reason"] == "length"
    assert row["error"] == ""
    assert row["gpu_uuids"] == ["GPU-aaaa", "GPU-bbbb"]


def test_sglang_prefill_excludes_the_time_queued(tracer_provider: TracerProvider, live_server: Any) -> None:
    tracer = tracer_provider.get_tracer("sglang")
    start = time.time_ns() - 30 * NS
    root = tracer.start_span(
        "prefill Req 9c1d2e3f",
        start_time=start,
        attributes={
            "gen_ai.usage.prompt_tokens": 800,
            "gen_ai.usage.completion_tokens": 40,
            "gen_ai.latency.time_in_queue": 0.5,
            # SGLang's prefill runs from dispatch to first token: 0.5 s queued + 0.2 s compute.
            "gen_ai.latency.time_in_model_prefill": 0.7,
            "gen_ai.latency.time_to_first_token": 0.72,
            "gen_ai.latency.time_in_model_decode": 1.1,
            "gen_ai.latency.e2e": 1.82,
        },
    )
    root.end(end_time=start + int(1.82 * NS))
    (row,) = fetch(live_server)
    assert row["framework"] == "sglang"
    assert row["prefill_s"] == pytest.approx(0.7 - 0.5)
    assert row["queue_s"] == pytest.approx(0.5)
    assert row["decode_s"] == pytest.approx(1.1)
    assert row["request_id"] == "9c1d2e3f"


def test_tgi_duration_strings_and_child_spans(tracer_provider: TracerProvider, live_server: Any) -> None:
    from opentelemetry import trace

    tracer = tracer_provider.get_tracer("text_generation_router")
    t0 = time.time_ns() - 20 * NS
    root = tracer.start_span(
        "generate",
        start_time=t0,
        attributes={
            "total_time": "2.5s",
            "validation_time": "1.2ms",
            "queue_time": "300ms",
            "inference_time": "2.1988s",
            "time_per_token": "21.988ms",
            "generated_tokens": 100,
            "input_length": 42,
        },
    )
    ctx = trace.set_span_in_context(root)
    queued = tracer.start_span("queued", context=ctx, start_time=t0 + int(0.0012 * NS))
    queued.end(end_time=t0 + int(0.3012 * NS))
    prefill = tracer.start_span("prefill", context=ctx, start_time=t0 + int(0.3012 * NS))
    prefill.end(end_time=t0 + int(0.4512 * NS))  # 150 ms
    decode = tracer.start_span("decode", context=ctx, start_time=t0 + int(0.4512 * NS))
    decode.end(end_time=t0 + int(2.5 * NS))  # 2.0488 s
    root.end(end_time=t0 + int(2.5 * NS))
    # SimpleSpanProcessor exports each span as it ends: the children arrive before their
    # parent, in requests of their own, and are then ignored as stage spans without a parent
    # in the batch. So TGI's phases come from the root's own duration fields here.
    rows = fetch(live_server)
    assert len(rows) == 1
    (row,) = rows
    assert row["framework"] == "tgi"
    assert row["e2e_s"] == pytest.approx(2.5)
    assert row["queue_s"] == pytest.approx(0.3)
    assert (row["prompt_tokens"], row["output_tokens"]) == (42, 100)


def test_genai_semantic_convention_span(tracer_provider: TracerProvider, live_server: Any) -> None:
    tracer = tracer_provider.get_tracer("openai-instrumentation")
    start = time.time_ns() - 10 * NS
    span = tracer.start_span(
        "chat gpt-oss-20b",
        kind=SpanKind.CLIENT,
        start_time=start,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-oss-20b",
            "gen_ai.usage.input_tokens": 2048,
            "gen_ai.usage.output_tokens": 128,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "gen_ai.response.finish_reasons": ["stop"],
        },
    )
    span.set_status(Status(StatusCode.OK))
    span.end(end_time=start + int(3.2 * NS))
    (row,) = fetch(live_server)
    assert row["framework"] == "genai"
    assert row["model"] == "gpt-oss-20b"
    assert (row["prompt_tokens"], row["cached_tokens"], row["output_tokens"]) == (2048, 1024, 128)
    assert row["e2e_s"] == pytest.approx(3.2)
    # The GenAI conventions carry no phases: they stay null, never invented.
    assert (row["queue_s"], row["ttft_s"], row["prefill_s"], row["decode_s"]) == (None, None, None, None)
    assert row["finish_reason"] == "stop"


def test_error_status_is_recorded(tracer_provider: TracerProvider, live_server: Any) -> None:
    tracer = tracer_provider.get_tracer("vllm.tracing")
    start = time.time_ns() - 5 * NS
    span = tracer.start_span(
        "llm_request",
        start_time=start,
        attributes={
            "gen_ai.usage.prompt_tokens": 10,
            "gen_ai.usage.completion_tokens": 0,
            "gen_ai.latency.e2e": 0.05,
        },
    )
    span.set_status(Status(StatusCode.ERROR, "CUDA out of memory"))
    span.end(end_time=start + int(0.05 * NS))
    (row,) = fetch(live_server)
    assert row["error"] == "CUDA out of memory"
