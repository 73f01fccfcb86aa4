"""The shortcuts of the ingest hot loops give the answers of the plain code: attribute sets
remembered between GPU data points never leak into another GPU's or process's row, and the
inlined range checks accept and reject exactly at the limits. Pure functions, no store."""

from __future__ import annotations

import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from api.ingest.metrics import normalise_metrics
from api.ingest.spans import AttributeDecoder
from api.ingest.traces import COLUMNS, normalise_traces
from tests.otlp import NS, attributes, gauge, resource, span, traces_request

NOW = time.time_ns()
T = (NOW // NS - 600) * NS


def _gpu_request(
    points: dict[str, list[tuple[int, float | int, dict[str, object]]]],
) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(attributes(resource(host="h", deployment="d")))
    metrics = rm.scope_metrics.add().metrics
    for name, pts in points.items():
        gauge(metrics, name, "1", pts)
    return request


def test_gpus_taking_turns_keep_their_own_index_name_and_process() -> None:
    a = {"gpu.uuid": "GPU-a", "gpu.index": 0, "gpu.name": "H100"}
    b = {"gpu.uuid": "GPU-b", "gpu.index": 1, "gpu.name": "H200"}
    # The same GPU with two processes: same first attribute, different sets.
    a_p1, a_p2 = {**a, "process.pid": 11}, {**a, "process.pid": 22}
    request = _gpu_request(
        {
            "gpu.utilization": [(T, 10, a), (T, 20, b), (T + NS, 30, a), (T + NS, 40, b)],
            "gpu.process.memory.used": [(T, 1000, a_p1), (T, 2000, a_p2), (T + NS, 3000, a_p2)],
        }
    )
    batch = normalise_metrics(request, max_attribute_bytes=64, now_ns=NOW)
    table = batch.gpu_table().to_pylist()
    got = {(r["gpu_uuid"], r["time"].timestamp()): r for r in table}
    assert sorted((u, r["gpu_index"], r["gpu_name"], r["util_gpu_pct"]) for (u, _), r in got.items()) == [
        ("GPU-a", 0, "H100", 10),
        ("GPU-a", 0, "H100", 30),
        ("GPU-b", 1, "H200", 20),
        ("GPU-b", 1, "H200", 40),
    ]
    first, second = got[("GPU-a", T / NS)], got[("GPU-a", T / NS + 1)]
    assert (first["proc_pids"], first["proc_mem_bytes"]) == ([11, 22], [1000, 2000])
    assert (second["proc_pids"], second["proc_mem_bytes"]) == ([22], [3000])
    assert batch.rejected_count == 0 and batch.received == 7


def test_remembered_attributes_still_count_every_truncation() -> None:
    long_name = "x" * 100
    gpu = {"gpu.uuid": "GPU-a", "gpu.name": long_name}
    request = _gpu_request({"gpu.utilization": [(T, 1, gpu), (T + NS, 2, gpu), (T + 2 * NS, 3, gpu)]})
    batch = normalise_metrics(request, max_attribute_bytes=16, now_ns=NOW)
    assert [r["gpu_name"] for r in batch.gpu_table().to_pylist()] == ["x" * 16] * 3
    assert batch.truncated_attributes == 3  # one per data point, as if each were decoded


def test_decode_shared_equals_decode_for_sets_sharing_a_first_value() -> None:
    sets = [
        {"k": "same", "pid": 1},
        {"k": "same", "pid": 2},
        {"k": "same", "pid": 1, "extra": True},
        {"k": 7},  # not a string: the empty first value
        {"k": 8},
        {},
        {"k": "same", "pid": 1},
        {"k": "same", "name": "y" * 9},  # truncated to 8 characters on every use
        {"k": "same", "name": "y" * 9},
    ]
    keyed, plain = AttributeDecoder(8), AttributeDecoder(8)
    for values in sets * 3:
        kvs = attributes(values)
        container = ExportMetricsServiceRequest().resource_metrics.add().resource.attributes
        container.extend(kvs)
        expected = {k: v[:8] if isinstance(v, str) else v for k, v in values.items()}
        assert keyed.decode_shared(container) == plain.decode(container) == expected
    assert keyed.truncated == plain.truncated == 6  # counted per use, kept or decoded


def _one(
    attrs: dict[str, object], *, end: int | None = None
) -> tuple[list[tuple[object, ...]], dict[str, int]]:
    s = span("llm_request", T, end if end is not None else T + NS, attrs)
    batch = normalise_traces(traces_request([(resource(), [s])]), max_attribute_bytes=64, now_ns=NOW)
    return batch.rows, dict(batch.rejected)


def test_phase_and_count_limits_accept_and_reject_at_the_edge() -> None:
    edge = {"gen_ai.latency.e2e": 86_400.0, "gen_ai.request.n": 65_535, "gen_ai.latency.time_in_queue": -0.0}
    rows, rejected = _one(edge)
    assert rejected == {} and len(rows) == 1
    row = dict(zip(COLUMNS, rows[0], strict=True))
    assert (row["e2e_s"], row["n"], row["queue_s"]) == (86_400.0, 65_535, 0.0)
    assert _one({"gen_ai.latency.e2e": 86_400.5})[1] == {"e2e time is longer than a day": 1}
    assert _one({"gen_ai.latency.e2e": 2.0, "gen_ai.request.n": 65_536})[1] == {"n is too large": 1}
    assert _one({"gen_ai.latency.e2e": 2.0, "gen_ai.request.temperature": 3.5e38})[1] == {
        "temperature is not a finite number": 1
    }
    assert _one({"gen_ai.latency.e2e": 2.0, "gen_ai.usage.prompt_tokens": 2**32})[1] == {
        "prompt tokens is too large": 1
    }


def test_a_span_wrong_twice_is_rejected_for_the_first_check() -> None:
    # Negative queue time (checked first) and a NaN time to first token (checked after it).
    attrs = {"gen_ai.latency.e2e": 2.0, "gen_ai.latency.time_in_queue": -1.0}
    attrs["gen_ai.latency.time_to_first_token"] = float("nan")
    assert _one(attrs)[1] == {"queue time is negative": 1}
    del attrs["gen_ai.latency.time_in_queue"]
    assert _one(attrs)[1] == {"time to first token is not a finite number": 1}
    # No reported e2e: the span's own duration, limited the same way.
    assert _one({"gen_ai.usage.prompt_tokens": 5}, end=T + 86_401 * NS)[1] == {
        "span duration is longer than a day": 1
    }


def test_rows_columns_and_keys_agree() -> None:
    spans = [span("llm_request", T + i * NS, T + i * NS + NS, {"gen_ai.latency.e2e": 1.0}) for i in range(3)]
    batch = normalise_traces(traces_request([(resource(), spans)]), max_attribute_bytes=64, now_ns=NOW)
    table = batch.to_arrow()
    assert table.num_rows == batch.accepted == 3
    assert table.column("span_id").to_pylist() == batch.columns["span_id"] == [s.span_id.hex() for s in spans]
    assert batch.keys() == [s.trace_id.hex() + s.span_id.hex() for s in spans]
    empty = normalise_traces(traces_request([(resource(), [])]), max_attribute_bytes=64, now_ns=NOW)
    assert empty.to_arrow().num_rows == 0 and empty.columns["span_id"] == [] and empty.keys() == []
