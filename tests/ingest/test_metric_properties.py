"""Property: any structurally valid OTLP metrics request becomes rows or reasoned
rejections — never an exception — and the counts add up."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from api.ingest.metrics import GPU_FIELDS, PROCESS_FIELDS, normalise_metrics
from tests.otlp import attributes

NOW_NS = 1_800_000_000 * 10**9

names = st.sampled_from(
    [
        *GPU_FIELDS,
        *PROCESS_FIELDS,
        "vllm:num_requests_running",
        "vllm:cache_config_info",
        "tgi_batch_inference_duration",
        "nv_trt_llm_request_metrics",
        "sglang:token_usage",
        "unknown_metric",
        "",
    ]
)
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.booleans(),
)
attr_maps = st.dictionaries(
    st.sampled_from(
        [
            "gpu.uuid",
            "gpu.index",
            "gpu.name",
            "process.pid",
            "method",
            "request_type",
            "block_size",
            "num_gpu_blocks",
            "x",
        ]
    ),
    scalars,
    max_size=6,
)
times = st.one_of(st.just(0), st.integers(min_value=0, max_value=2**63 - 1), st.just(NOW_NS))


@st.composite
def requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rm = request.resource_metrics.add()
        rm.resource.attributes.extend(
            attributes(
                draw(
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "host.name",
                                "inferwatch.cluster",
                                "inferwatch.deployment",
                                "inferwatch.gpu.uuids",
                            ]
                        ),
                        scalars,
                        max_size=4,
                    )
                )
            )
        )
        metrics = rm.scope_metrics.add().metrics
        for _ in range(draw(st.integers(0, 5))):
            m = metrics.add(name=draw(names))
            kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary", "none"]))
            for _ in range(draw(st.integers(0, 4))):
                if kind in ("gauge", "sum"):
                    p = getattr(m, kind).data_points.add(time_unix_nano=draw(times))
                    value = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.none()))
                    if isinstance(value, int):
                        p.as_int = value
                    elif isinstance(value, float):
                        p.as_double = value
                elif kind == "histogram":
                    p = m.histogram.data_points.add(
                        time_unix_nano=draw(times), count=draw(st.integers(0, 2**32))
                    )
                    p.explicit_bounds.extend(draw(st.lists(st.floats(), max_size=4)))
                    p.bucket_counts.extend(draw(st.lists(st.integers(0, 2**40), max_size=5)))
                    if draw(st.booleans()):
                        p.sum = draw(st.floats())
                elif kind == "summary":
                    p = m.summary.data_points.add(time_unix_nano=draw(times))
                else:
                    continue
                p.attributes.extend(attributes(draw(attr_maps)))
    return request


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_any_metrics_request_gives_rows_or_reasoned_rejections(request: ExportMetricsServiceRequest) -> None:
    batch = normalise_metrics(request, max_attribute_bytes=64, now_ns=NOW_NS)
    assert batch.accepted + batch.ignored + batch.rejected_count == batch.received
    assert all(reason for reason in batch.rejected)
    gpu = batch.gpu_table()  # building the Arrow tables must succeed for whatever was accepted
    engine = batch.engine_table()
    assert gpu.num_rows == len(batch.gpu_rows)
    assert engine.num_rows == len(batch.engine_rows)
    for value in engine.column("value").to_pylist():
        assert math.isfinite(value)
