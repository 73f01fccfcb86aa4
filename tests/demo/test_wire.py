"""The hand-written wire encoding parses, with the official OTLP classes, into exactly the
messages it stands for."""

from __future__ import annotations

import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from api.demo import wire

GPU = {"gpu.uuid": "GPU-8f1c0000-0000-0000-0000-000000000000", "gpu.index": 3, "gpu.name": "NVIDIA L4"}
RESOURCE = {"host.name": "node-1", "inferwatch.simulated": True, "inferwatch.gpu.uuids": ["GPU-a", "GPU-b"]}


def attributes(kvs: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in kvs:  # type: ignore[attr-defined]
        which = kv.value.WhichOneof("value")
        if which == "array_value":
            out[kv.key] = [v.string_value for v in kv.value.array_value.values]
        else:
            out[kv.key] = getattr(kv.value, which)
    return out


def test_gauges_and_sums_parse_with_their_points_attributes_and_values() -> None:
    times = np.array([1_700_000_000_000_000_000, 1_700_000_060_000_000_000], dtype=np.int64)
    util = wire.gauge("gpu.utilization", "%", wire.number_points(GPU, times, np.array([0, 97])))
    sm = wire.gauge("gpu.gpm.sm_activity", "%", wire.number_points(GPU, times, np.array([0.0, 61.25])))
    energy = wire.cumulative_sum(
        "gpu.energy.consumed",
        "mJ",
        wire.number_points(GPU, times, np.array([5, 2**40]), start_ns=1_600_000_000_000_000_000),
    )
    body = wire.metrics_request(
        [wire.resource_metrics(RESOURCE, ("inferwatch.collector", "0.1.0"), [util, sm, energy])]
    )
    request = ExportMetricsServiceRequest.FromString(body)
    (rm,) = request.resource_metrics
    assert attributes(rm.resource.attributes) == RESOURCE
    (sm_scope,) = rm.scope_metrics
    assert (sm_scope.scope.name, sm_scope.scope.version) == ("inferwatch.collector", "0.1.0")
    m_util, m_sm, m_energy = sm_scope.metrics
    assert (m_util.name, m_util.unit) == ("gpu.utilization", "%")
    assert [(p.time_unix_nano, p.as_int) for p in m_util.gauge.data_points] == [
        (1_700_000_000_000_000_000, 0),
        (1_700_000_060_000_000_000, 97),
    ]
    assert all(attributes(p.attributes) == GPU for p in m_util.gauge.data_points)
    assert [p.as_double for p in m_sm.gauge.data_points] == [0.0, 61.25]
    assert m_sm.gauge.data_points[0].WhichOneof("value") == "as_double"
    assert m_energy.sum.is_monotonic
    assert m_energy.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert [p.as_int for p in m_energy.sum.data_points] == [5, 2**40]
    assert {p.start_time_unix_nano for p in m_energy.sum.data_points} == {1_600_000_000_000_000_000}


def test_spans_parse_with_ids_times_names_and_typed_attributes() -> None:
    ids = bytes(range(24)) + bytes(range(100, 124))
    columns = wire.SpanColumns(
        ids=ids,
        start_ns=np.array([10**18, 10**18 + 5], dtype=np.int64),
        end_ns=np.array([10**18 + 2_500_000_000, 10**18 + 9], dtype=np.int64),
        names=["llm_request", "Req 64656667"],
        doubles={"gen_ai.latency.e2e": np.array([2.5, 4e-9])},
        ints={"gen_ai.usage.prompt_tokens": np.array([1, 300_000]), "neg": np.array([-1, 0])},
        strings={"gen_ai.response.finish_reasons": ['["stop"]', '["length"]']},
        constant={"gen_ai.request.n": 1, "gen_ai.request.temperature": 0.7},
    )
    body = wire.traces_request(RESOURCE, ("vllm.llm_engine", ""), wire.encode_spans(columns))
    request = ExportTraceServiceRequest.FromString(body)
    (rs,) = request.resource_spans
    assert attributes(rs.resource.attributes) == RESOURCE
    (ss,) = rs.scope_spans
    assert ss.scope.name == "vllm.llm_engine"
    first, second = ss.spans
    assert first.trace_id == bytes(range(16)) and first.span_id == bytes(range(16, 24))
    assert second.trace_id == bytes(range(100, 116)) and second.span_id == bytes(range(116, 124))
    assert (first.name, second.name) == ("llm_request", "Req 64656667")
    assert first.kind == second.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (10**18, 10**18 + 2_500_000_000)
    assert attributes(first.attributes) == {
        "gen_ai.latency.e2e": 2.5,
        "gen_ai.usage.prompt_tokens": 1,
        "neg": -1,
        "gen_ai.response.finish_reasons": '["stop"]',
        "gen_ai.request.n": 1,
        "gen_ai.request.temperature": 0.7,
    }
    second_attrs = attributes(second.attributes)
    assert second_attrs["gen_ai.usage.prompt_tokens"] == 300_000
    assert second_attrs["gen_ai.latency.e2e"] == 4e-9
    assert second.attributes[0].value.WhichOneof("value") == "double_value"


def test_varint_matches_protobuf_for_edge_values() -> None:
    for value in (0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)):
        point = metrics_pb2.NumberDataPoint(attributes=[])
        point.attributes.add(key="k").value.int_value = value
        assert wire.key_values(7, {"k": value}) == point.SerializeToString()
