"""The pure parts of scripts/gpu_e2e.py (the GPU end-to-end run): model sizes, the load
schedule, the vLLM-convention spans and /metrics it emits (read back by the real ingest
convention and the collector's Prometheus conversion), the predictions it compares with
measurements, and the evaluation of a hand-built run. Answers are computed by hand."""

from __future__ import annotations

import importlib.util
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.findings.speculative import speedup
from api.ingest.conventions import vllm
from api.ingest.engine_names import ENGINE_METRICS
from api.ingest.spans import Span
from collector.promconv import families_to_metrics, parse_families

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_e2e", ROOT / "scripts" / "gpu_e2e.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_e2e"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


e2e = _load()


def test_parameter_count_of_a_small_shape_by_hand():
    # head_dim 2; qkv 4 × (2 + 2·1) × 2 = 32, o 2·2·4 = 16, MLP 3·4·8 = 96, norms 8 → 152;
    # embedding and head 2 × 10 × 4 = 80, final norm 4 → 236; decode reads all but the
    # embedding table (40) → 196.
    shape = e2e.Shape(hidden=4, layers=1, heads=2, kv_heads=1, intermediate=8, vocab=10, max_len=16)
    assert shape.layer_params() == 152
    assert shape.params() == 236
    assert shape.decode_read_params() == 196


def test_the_target_model_is_seven_point_four_billion_parameters():
    # layer: 8192·10240 + 8192·8192 + 3·8192·28672 + 2·8192 = 855,654,400; × 8 layers
    # + 2 · 32000 · 8192 + 8192 = 7,369,531,392 (14.7 GB in bf16).
    assert e2e.TARGET.layer_params() == 855_654_400
    assert e2e.TARGET.params() == 7_369_531_392
    assert e2e.TARGET.decode_read_params() == 7_369_531_392 - 262_144_000


def test_schedule_is_busy_idle_bursts_then_decode_heavy():
    phases = e2e.schedule(150)
    assert [(p.name, p.kind) for p in phases] == [
        ("busy", "closed"),
        ("idle", "idle"),
        ("bursts", "burst"),
        ("decode_heavy", "closed"),
    ]
    busy, idle, bursts, heavy = phases
    assert (busy.clients, busy.prompt, busy.output, busy.seconds) == (8, 512, 128, 60)
    assert idle.seconds == 150
    assert (bursts.clients, bursts.bursts, bursts.every, bursts.prompt) == (16, 3, 15, 1024)
    # decode-heavy: one request at a time, 512 output tokens after a 128-token prompt
    assert (heavy.clients, heavy.prompt, heavy.output, heavy.seconds) == (1, 128, 512, 120)
    tiny = e2e.schedule(5, scale=0.1, token_div=8)
    assert (tiny[0].seconds, tiny[0].prompt, tiny[0].output, tiny[2].every) == (6, 64, 16, 1.5)


def test_batches_are_padded_to_the_next_captured_size():
    assert [e2e.padded_batch(n) for n in (1, 2, 3, 5, 8, 9, 16)] == [1, 2, 4, 8, 8, 16, 16]
    with pytest.raises(ValueError, match="17"):
        e2e.padded_batch(17)


def _timing():
    return e2e.Timing(
        "req-1",
        arrival_ns=1_000_000_000_000,
        queue_s=0.5,
        prefill_s=0.25,
        decode_s=2.0,
        prompt_tokens=512,
        output_tokens=128,
    )


def test_span_attributes_are_read_back_by_the_vllm_convention():
    t = _timing()
    assert t.e2e_s == 2.75
    assert t.end_ns == 1_002_750_000_000
    span = Span(
        trace_id=b"t" * 16,
        span_id=b"s" * 8,
        parent_span_id=b"",
        name="llm_request",
        kind=2,
        start_ns=t.arrival_ns,
        end_ns=t.end_ns,
        attrs=e2e.span_attributes(t),
        status_code=0,
        status_message="",
    )
    assert vllm.claims(span)
    f = vllm.read(span)
    assert (f.queue_s, f.prefill_s, f.decode_s, f.e2e_s) == (0.5, 0.25, 2.0, 2.75)
    assert f.ttft_s == 0.75  # queue + prefill
    assert (f.prompt_tokens, f.output_tokens, f.request_id, f.model) == (512, 128, "req-1", "random-llama")
    assert f.finish_reason == "length"


def test_metrics_text_is_vllm_exposition_the_collector_converts():
    state = e2e.EngineState(
        running=3, waiting=5, kv_usage=0.25, prompt_tokens=1536, generation_tokens=384, requests=3
    )
    text = e2e.metrics_text(state)
    assert 'vllm:num_requests_running{engine="0",model_name="random-llama"} 3.0' in text
    assert 'vllm:prompt_tokens_total{engine="0",model_name="random-llama"} 1536.0' in text
    metrics = {m.name: m for m in families_to_metrics(parse_families(text), 2_000, 1_000)}
    # counters lose `_total` and become monotonic sums; gauges stay gauges
    assert metrics["vllm:prompt_tokens"].sum.is_monotonic
    assert metrics["vllm:prompt_tokens"].sum.data_points[0].as_double == 1536
    assert metrics["vllm:num_requests_waiting"].gauge.data_points[0].as_double == 5
    assert metrics["vllm:kv_cache_usage_perc"].gauge.data_points[0].as_double == 0.25
    # every series is one the server maps to a canonical engine metric
    assert set(metrics) <= set(ENGINE_METRICS)
    assert len(metrics) == 7


def test_idle_run_is_the_longest_stretch_below_the_threshold():
    samples = [(0, 90), (1, 3), (2, 0), (3, 4), (4, 50), (5, 0), (6, None), (7, 0)]
    assert e2e.idle_run_seconds(samples, 1.0) == 3.0  # t = 1, 2, 3
    assert e2e.idle_run_seconds(reversed(samples), 0.5) == 1.5  # order does not matter
    assert e2e.idle_run_seconds([(0, 5), (1, 6)], 1.0) == 0  # 5 % is not below 5 %


def test_whole_minutes_inside_an_interval():
    def at(h, m, s):
        return datetime(2026, 11, 27, h, m, s, tzinfo=UTC)

    assert e2e.whole_minutes(at(12, 0, 30), at(12, 3, 10)) == 2  # 12:01 and 12:02
    assert e2e.whole_minutes(at(12, 0, 0), at(12, 2, 0)) == 2
    assert e2e.whole_minutes(at(12, 0, 30), at(12, 0, 50)) == 0
    assert e2e.whole_minutes(at(12, 0, 30), at(12, 1, 59)) == 0


def test_predictions_by_hand():
    # docs/findings.md §4: an 8B model at 7.0 ms/token, floor 4.78 ms → FP8 7.0 − 2.39 = 4.61 ms
    assert e2e.quant_prediction(7.0, 4.78, 16, 8) == pytest.approx(4.61)
    assert e2e.quant_prediction(7.0, 4.78, 16, 4) == pytest.approx(7.0 - 4.78 * 0.75)
    # α 0.6, γ 4: (1 − 0.6⁵) / 0.4 = 0.92224 / 0.4 = 2.3056 tokens per round
    assert e2e.expected_tokens_per_round(0.6, 4) == pytest.approx(2.3056)
    assert e2e.accepted_drafts([0.1, 0.5, 0.7, 0.2], 0.6, 4) == 2
    assert e2e.accepted_drafts([0.1, 0.1, 0.1, 0.1, 0.1], 0.6, 4) == 4
    assert e2e.accepted_drafts([0.6], 0.6, 4) == 0
    assert e2e.capacity_from_util(100.0, 50.0) == 200.0
    assert e2e.capacity_from_util(100.0, 0.0) == math.inf
    assert e2e.error_pct(110.0, 100.0) == pytest.approx(10.0)
    # verification costing one target step is Leviathan's formula; 1.2 steps: 2.3056 / 1.4
    assert e2e.speedup_with_verify(0.6, 4, 0.05, 1.0) == pytest.approx(speedup(0.6, 4, 0.05))
    assert e2e.speedup_with_verify(0.6, 4, 0.05, 1.2) == pytest.approx(2.3056 / 1.4)


def test_results_table_is_markdown():
    rows = [
        e2e.Row("a", "H100", "1 ms", "2 ms", "-50.0 %", False),
        e2e.Row("b", "H100", "x", "x", "", True),
        e2e.Row("c", "-", "1", "1", "", None),
    ]
    lines = e2e.results_table(rows).splitlines()
    assert lines[0] == "| check | hardware | predicted | measured | error | |"
    assert lines[2] == "| a | H100 | 1 ms | 2 ms | -50.0 % | **off** |"
    assert lines[3] == "| b | H100 | x | x |  | ok |"
    assert lines[4] == "| c | - | 1 | 1 |  |  |"


def _run(result=None):
    """Two GPUs, the engine (pid 42) on A: busy from t = 30 to 90, idle from 90 to 210
    (00:01:30–00:03:30 UTC, holding the whole minute 00:02), then busy again to 240."""
    samples = []
    for t in range(20, 240):
        idle = 90 <= t < 210
        samples.append(
            {"gpu_uuid": "GPU-aaaaaaaa", "t": float(t), "util": 0 if idle else 80, "sm": 0 if idle else 60,
             "dram": 0 if idle else 70, "mem": 20 * 2**30, "pids": [42]}
        )  # fmt: skip
        samples.append(
            {"gpu_uuid": "GPU-bbbbbbbb", "t": float(t), "util": 0, "sm": 0, "dram": 0, "mem": 0, "pids": []}
        )
    return {
        "interval_s": 1.0,
        "engine": {"pid": 42, "gpu": ["NVIDIA H100 80GB HBM3"], "params": 7e9, "decode_read_params": 6.7e9},
        "events": [
            {"phase": "busy", "start": 30.0, "end": 90.0},
            {"phase": "idle", "start": 90.0, "end": 210.0},
            {"phase": "decode_heavy", "start": 210.0, "end": 240.0},
        ],
        "store": {
            "samples": samples,
            "requests": [{"gpu_uuids": ["GPU-aaaaaaaa"]}, {"gpu_uuids": ["GPU-aaaaaaaa"]}],
        },
        "findings": [
            {
                "kind": "idle_held",
                "scope": {"id": "e2e"},
                "evidence": {"by_gpu": [{"gpu_uuid": "GPU-aaaaaaaa", "idle_gpu_hours": 0.02}]},
            },
            {"kind": "speculative_candidate", "scope": {"id": "e2e"}, "evidence": {"concurrency": 1.0}},
        ],
        "findings_decode_heavy": [{"kind": "idle_held", "scope": {"id": "e2e"}, "evidence": {}}],
        "result": result or {},
    }


def test_evaluate_checks_idle_attribution_and_the_speculative_flag():
    rows = {r.check: r for r in e2e.evaluate(_run())}
    idle = rows["idle phase seen in 1 s samples (aaaaaaaa)"]
    assert (idle.predicted, idle.measured, idle.ok) == ("120.0 s", "120.0 s", True)
    minutes = rows["idle_held finding, whole idle minutes (aaaaaaaa)"]
    assert (minutes.predicted, minutes.measured, minutes.ok) == ("1 min", "1 min", True)
    assert rows["requests attributed to the engine's GPUs"].ok
    assert rows["busy phase on aaaaaaaa: util / SM / pid"].ok
    other = rows["busy phase on bbbbbbbb: util / SM / pid"]
    assert (other.predicted, other.ok) == ("idle, no pid", True)
    whole = rows["speculative_candidate flagged (whole run)"]
    assert (whole.measured, whole.ok) == ("flagged, 1.0 in flight", True)
    heavy = rows["speculative_candidate flagged (decode-heavy minutes only)"]
    assert (heavy.measured, heavy.ok) == ("not flagged (idle_held)", False)


def test_evaluate_flags_requests_attributed_to_a_gpu_the_engine_does_not_use():
    run = _run()
    run["store"]["requests"].append({"gpu_uuids": ["GPU-bbbbbbbb"]})
    run["findings"] = run["findings"][:1]
    del run["findings_decode_heavy"]
    rows = {r.check: r for r in e2e.evaluate(run)}
    assert rows["requests attributed to the engine's GPUs"].ok is False
    assert rows["speculative_candidate flagged (whole run)"].ok is False


def test_evaluate_compares_measurements_with_the_predictions():
    window = {"start": 100.0, "end": 110.0}  # inside the idle phase: util 0 there
    result = {
        "decode": {
            "1": {**window, "s_per_call": 0.005},
            "16": {**window, "s_per_call": 0.0064},
        },
        "decode_b1_synced": {"s_per_call": 0.005},
        "fp8_decode_b1": {"s_per_call": 0.003},
        "copy_gbs": 3000.0,
        "draft_step": {"s_per_call": 0.0002},
        "verify_step": {"s_per_call": 0.0055},
        "spec": {"0.6": {"gamma": 4, "tokens": 2306, "rounds": 1000, "s_per_token": 0.0025}},
    }
    rows = {r.check: r for r in e2e.evaluate(_run(result))}
    # floor = 7e9 × 2 B / 3.35 TB/s = 4.179 ms; measured 5 ms is 1.20× it
    floor = rows["decode ms/token at batch 1 vs the finding's floor (params × 2 B / catalogue BW)"]
    assert (floor.predicted, floor.measured) == ("≥ 4.18 ms", "5.00 ms (1.20× floor)")
    assert floor.ok
    # read bytes 6.7e9 × 2 / 3,000 GB/s = 4.467 ms
    assert rows["same, bytes read per step / measured copy BW"].predicted == "4.47 ms"
    # FP8: 5 − 4.179 / 2 = 2.910 ms against 3 ms measured: −3.0 %
    fp8 = rows["FP8 weights: decode ms/token at batch 1 (tpot − floor/2)"]
    assert (fp8.predicted, fp8.measured, fp8.error, fp8.ok) == ("2.91 ms", "3.00 ms", "-3.0 %", True)
    # c = 0.2 / 5 = 0.04; verify 1.1 steps; measured S = 5 / 2.5 = 2.0
    s_default = rows["speculative S, α = 0.6, γ = 4, c = 0.05 (setting)"]
    assert (s_default.predicted, s_default.measured) == ("1.92×", "2.00×")
    s_measured = rows["speculative S, α = 0.6, γ = 4, measured c = 0.040"]
    assert s_measured.predicted == f"{speedup(0.6, 4, 0.04):.2f}×"
    s_verify = rows["speculative S, α = 0.6: measured c and verify cost (1.10 steps)"]
    assert s_verify.predicted == f"{2.3056 / (0.16 + 1.1):.2f}×"  # 1.83
    assert rows["tokens per round, α = 0.6"].measured == "2.306"
