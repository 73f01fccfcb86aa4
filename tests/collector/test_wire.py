"""The hand-written encoder of GPU samples, read back with the official OTLP classes."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

from collector.otlp import gpu_metrics_request
from collector.samples import GpuSample, ProcessUsage
from collector.wire import varint

T = 1_764_000_000_123_456_789


def decode(samples: list[GpuSample]) -> ExportMetricsServiceRequest:
    body = gpu_metrics_request(samples, {"host.name": "n1", "inferwatch.gpu.uuids": ["GPU-1", "GPU-2"]})
    return ExportMetricsServiceRequest.FromString(body)


def attrs(point: object) -> dict[str, object]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in point.attributes}  # type: ignore[attr-defined]


def test_every_field_arrives_under_its_contract_name_unit_and_type() -> None:
    sample = GpuSample(
        time_ns=T,
        index=3,
        uuid="GPU-1",
        name="NVIDIA H200",
        util_gpu_pct=99,
        util_mem_pct=24,
        mem_used_bytes=1_704_853_504,
        mem_total_bytes=150_754_820_096,
        power_mw=692_689,
        power_limit_mw=700_000,
        energy_mj=9_201_081,
        sm_clock_mhz=1455,
        temperature_c=60,
        sm_activity_pct=96.25,
        sm_occupancy_pct=14.5,
        dram_bw_pct=17.5,
        tensor_active_pct=93.375,
        processes=(ProcessUsage(447, 1_050_673_152, 99), ProcessUsage(2**31 + 5, None, 3)),
    )
    request = decode([sample])
    (rm,) = request.resource_metrics
    assert {kv.key for kv in rm.resource.attributes} == {"host.name", "inferwatch.gpu.uuids"}
    (sm,) = rm.scope_metrics
    assert sm.scope.name == "inferwatch.collector"
    metrics = {m.name: m for m in sm.metrics}
    expected = {
        "gpu.utilization": ("%", 99),
        "gpu.memory.utilization": ("%", 24),
        "gpu.memory.used": ("By", 1_704_853_504),
        "gpu.memory.total": ("By", 150_754_820_096),
        "gpu.power.draw": ("mW", 692_689),
        "gpu.power.limit": ("mW", 700_000),
        "gpu.clock.sm": ("MHz", 1455),
        "gpu.temperature": ("Cel", 60),
    }
    for name, (unit, value) in expected.items():
        (point,) = metrics[name].gauge.data_points
        assert (metrics[name].unit, point.WhichOneof("value"), point.as_int) == (unit, "as_int", value), name
        assert point.time_unix_nano == T
        assert attrs(point) == {"gpu.uuid": "GPU-1", "gpu.index": 3, "gpu.name": "NVIDIA H200"}
    gpm: dict[str, float] = {
        "gpu.gpm.sm_activity": 96.25,
        "gpu.gpm.sm_occupancy": 14.5,
        "gpu.gpm.dram_bandwidth": 17.5,
        "gpu.gpm.tensor_activity": 93.375,
    }
    for name, share in gpm.items():
        (point,) = metrics[name].gauge.data_points
        assert (metrics[name].unit, point.as_double) == ("%", share)
    energy = metrics["gpu.energy.consumed"]
    assert energy.unit == "mJ" and energy.sum.is_monotonic
    assert energy.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    assert energy.sum.data_points[0].as_int == 9_201_081
    memory = metrics["gpu.process.memory.used"].gauge.data_points
    assert [(attrs(p)["process.pid"], p.as_int) for p in memory] == [(447, 1_050_673_152)]
    shares = metrics["gpu.process.sm_utilization"].gauge.data_points
    assert [(attrs(p)["process.pid"], p.as_int) for p in shares] == [(447, 99), (2**31 + 5, 3)]
    assert attrs(shares[1])["gpu.uuid"] == "GPU-1"


def test_fields_a_gpu_lacks_are_absent_not_zero() -> None:
    full = GpuSample(time_ns=T, index=0, uuid="GPU-1", name="A", util_gpu_pct=5, power_mw=100)
    bare = GpuSample(time_ns=T, index=1, uuid="GPU-2", name="B", util_gpu_pct=0)
    metrics = {m.name: m for m in decode([full, bare]).resource_metrics[0].scope_metrics[0].metrics}
    assert set(metrics) == {"gpu.utilization", "gpu.power.draw"}
    assert [attrs(p)["gpu.uuid"] for p in metrics["gpu.utilization"].gauge.data_points] == ["GPU-1", "GPU-2"]
    assert [attrs(p)["gpu.uuid"] for p in metrics["gpu.power.draw"].gauge.data_points] == ["GPU-1"]


def test_varints_match_the_protobuf_encoding() -> None:
    assert varint(0) == b"\x00"
    assert varint(300) == b"\xac\x02"
    assert varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1, as protobuf writes it
