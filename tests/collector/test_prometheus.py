"""Engine /metrics exposition -> OTLP metrics, and DCGM exporter series -> GPU samples.

The fixture texts under tests/fixtures/prometheus use the metric and label names of vLLM
(v1 and the older v0 engine), SGLang, TGI, Triton with TensorRT-LLM, trtllm-serve and
dcgm-exporter, as those projects' sources define them."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE, Metric

from collector.dcgm import dcgm_samples
from collector.promconv import count_points, families_to_metrics, parse_families
from tests.collector.conftest import PROM_FIXTURES

NOW = 1_764_000_100 * 10**9
START = 1_763_999_000 * 10**9
MIB = 2**20


def convert(name: str) -> dict[str, Metric]:
    families = parse_families((PROM_FIXTURES / name).read_text())
    return {m.name: m for m in families_to_metrics(families, NOW, START)}


def attrs(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def test_vllm_counters_lose_total_and_start_at_their_created_time() -> None:
    metrics = convert("vllm_v1.txt")
    preemptions = metrics["vllm:num_preemptions"]
    assert preemptions.WhichOneof("data") == "sum"
    assert preemptions.sum.is_monotonic
    assert preemptions.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    (point,) = preemptions.sum.data_points
    assert point.as_double == 4.0
    assert point.start_time_unix_nano == 1_764_000_000 * 10**9  # vllm:num_preemptions_created
    assert point.time_unix_nano == NOW
    assert attrs(point) == {"engine": "0", "model_name": "meta-llama/Llama-3.1-8B-Instruct"}
    # no _created series of its own: the scraper's start time
    assert metrics["vllm:prefix_cache_hits"].sum.data_points[0].start_time_unix_nano == START
    assert not [n for n in metrics if n.endswith(("_total", "_created"))]


def test_vllm_request_success_keeps_one_point_per_finish_reason() -> None:
    points = convert("vllm_v1.txt")["vllm:request_success"].sum.data_points
    assert {attrs(p)["finished_reason"]: p.as_double for p in points} == {
        "stop": 38.0,
        "length": 3.0,
        "abort": 0.0,
    }


def test_vllm_gauges_and_cache_config_labels() -> None:
    metrics = convert("vllm_v1.txt")
    assert metrics["vllm:kv_cache_usage_perc"].gauge.data_points[0].as_double == 0.4125
    assert metrics["vllm:num_requests_running"].gauge.data_points[0].as_double == 3.0
    (info,) = metrics["vllm:cache_config_info"].gauge.data_points
    assert (attrs(info)["num_gpu_blocks"], attrs(info)["block_size"], info.as_double) == ("27865", "16", 1.0)


def test_a_prometheus_histogram_becomes_an_otlp_histogram_with_per_bucket_counts() -> None:
    (point,) = convert("vllm_v1.txt")["vllm:request_decode_time_seconds"].histogram.data_points
    # cumulative le=0.3:1, 0.5:2, 0.8:2, 1.0:10, 2.5:39, +Inf:41 -> per bucket 1, 1, 0, 8, 29, 2
    assert list(point.explicit_bounds) == [0.3, 0.5, 0.8, 1.0, 2.5]
    assert list(point.bucket_counts) == [1, 1, 0, 8, 29, 2]
    assert (point.count, point.sum) == (41, 70.4)
    assert attrs(point) == {"engine": "0", "model_name": "meta-llama/Llama-3.1-8B-Instruct"}
    ttft = convert("vllm_v1.txt")["vllm:time_to_first_token_seconds"].histogram.data_points[0]
    assert ttft.start_time_unix_nano == 1_764_000_000 * 10**9


def test_only_engine_families_are_sent_not_the_process_and_http_noise() -> None:
    names = set(convert("vllm_v1.txt"))
    assert not {n for n in names if not n.startswith("vllm:")}
    assert {
        "vllm:num_requests_waiting",
        "vllm:prefix_cache_queries",
        "vllm:spec_decode_num_accepted_tokens",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_prefill_time_seconds",
    } <= names


def test_old_vllm_names_pass_through_unchanged_for_the_server_to_map() -> None:
    metrics = convert("vllm_v0.txt")
    assert metrics["vllm:gpu_cache_usage_perc"].gauge.data_points[0].as_double == 0.0775
    tpot = metrics["vllm:time_per_output_token_seconds"].histogram.data_points[0]
    assert list(tpot.bucket_counts) == [0, 1520, 80, 3]
    assert attrs(tpot) == {"model_name": "mistralai/Mistral-7B-Instruct-v0.2"}


def test_sglang_busy_clock_is_a_counter_per_category_and_nan_gauges_are_left_out() -> None:
    metrics = convert("sglang.txt")
    busy = metrics["sglang:gpu_execution_seconds"].sum.data_points
    assert {attrs(p)["category"]: p.as_double for p in busy} == {
        "forward_extend": 12.5,
        "forward_decode": 301.25,
    }
    assert metrics["sglang:token_usage"].gauge.data_points[0].as_double == 0.06
    assert "sglang:spec_accept_rate" not in metrics  # its only sample is NaN
    assert metrics["sglang:spec_accept_length"].gauge.data_points[0].as_double == 2.8
    ttft = metrics["sglang:time_to_first_token_seconds"].histogram.data_points[0]
    assert (list(ttft.bucket_counts), ttft.count) == ([150, 30, 19, 1], 200)


def test_tgi_counters_without_total_and_histograms_split_by_method() -> None:
    metrics = convert("tgi.txt")
    assert metrics["tgi_request_success"].sum.data_points[0].as_double == 11
    assert metrics["tgi_queue_size"].gauge.data_points[0].as_double == 4
    by_method = {attrs(p)["method"]: p for p in metrics["tgi_batch_inference_duration"].histogram.data_points}
    assert list(by_method["prefill"].bucket_counts) == [1, 8, 2]
    assert (by_method["decode"].count, by_method["decode"].sum) == (812, 6.5)
    assert attrs(metrics["tgi_request_failure"].sum.data_points[0]) == {"err": "validation"}


def test_triton_trtllm_request_and_kv_block_gauges_keep_their_type_labels() -> None:
    metrics = convert("triton_trtllm.txt")
    requests = {
        attrs(p)["request_type"]: p.as_double for p in metrics["nv_trt_llm_request_metrics"].gauge.data_points
    }
    assert (requests["active"], requests["waiting"], requests["max"]) == (6, 3, 64)
    blocks = metrics["nv_trt_llm_kv_cache_block_metrics"].gauge.data_points
    assert {attrs(p)["kv_cache_block_type"]: p.as_double for p in blocks}["used"] == 120
    success = {
        attrs(p)["model"]: p.as_double for p in metrics["nv_inference_request_success"].sum.data_points
    }
    assert success == {"tensorrt_llm": 640, "ensemble": 640}


def test_trtllm_serve_names() -> None:
    metrics = convert("trtllm_serve.txt")
    assert metrics["trtllm_kv_cache_utilization"].gauge.data_points[0].as_double == 0.62
    assert metrics["trtllm_num_requests_running"].gauge.data_points[0].as_double == 9
    assert metrics["trtllm_request_success"].sum.data_points[0].as_double == 77


def test_points_are_counted_as_items() -> None:
    metrics = list(convert("tgi.txt").values())
    # request_count, success, failure, queue_size, batch size, max tokens: 1 each; 3 histogram points
    assert count_points(metrics) == 9


def test_text_that_is_not_prometheus_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_families('vllm:num_requests_running{engine="0" 3\n')


def test_dcgm_series_become_gpu_samples_in_our_units() -> None:
    families = parse_families((PROM_FIXTURES / "dcgm.txt").read_text())
    busy, idle = dcgm_samples(families, NOW)
    assert (busy.uuid, busy.index, busy.name, busy.time_ns) == (
        "GPU-5a1b2c3d-0000-1111-2222-333344445555",
        0,
        "NVIDIA A100-SXM4-80GB",
        NOW,
    )
    assert (busy.util_gpu_pct, busy.util_mem_pct) == (97, 38)
    assert busy.mem_used_bytes == 75_037 * MIB
    assert busy.mem_total_bytes == (75_037 + 6_012) * MIB
    assert busy.power_mw == 312_456  # 312.456 W
    assert busy.energy_mj == 9_876_543_210
    assert (busy.sm_clock_mhz, busy.temperature_c) == (1410, 61)
    assert busy.sm_activity_pct == pytest.approx(73.4)
    assert busy.tensor_active_pct == pytest.approx(41.5)
    assert busy.dram_bw_pct == pytest.approx(51.25)
    assert busy.sm_occupancy_pct is None  # not exported by this exporter config
    assert (idle.index, idle.util_gpu_pct, idle.power_mw, idle.tensor_active_pct) == (1, 0, 61_200, None)


def test_dcgm_mig_series_are_skipped() -> None:
    families = parse_families((PROM_FIXTURES / "dcgm.txt").read_text())
    uuids = {s.uuid for s in dcgm_samples(families, NOW)}
    assert "GPU-7c3d4e5f-0000-1111-2222-333344445555" not in uuids
    assert len(uuids) == 2


def test_histogram_without_an_inf_bucket_gets_one_from_the_count() -> None:
    text = '# TYPE x histogram\nx_bucket{le="1"} 2\nx_bucket{le="5"} 3\nx_sum 9\nx_count 7\n'
    (metric,) = families_to_metrics(parse_families(text), NOW, START, keep=lambda _: True)
    point = metric.histogram.data_points[0]
    assert (list(point.explicit_bounds), list(point.bucket_counts), point.count) == ([1.0, 5.0], [2, 1, 4], 7)
    assert not math.isnan(point.sum)
