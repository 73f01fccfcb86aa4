"""The finding functions on hand-built inputs, answers worked out by hand. These are also
the worked examples of docs/findings.md (same numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from api.findings.catalogue import PriceBook, lookup
from api.findings.fleet import oversized, simulate, undersized, wrong_gpu_type
from api.findings.idle import daily_idle_periods, idle_findings
from api.findings.inputs import (
    Deployment,
    EngineStats,
    FleetSeries,
    GpuUsage,
    MetricSummary,
    PromptCell,
    Quantiles,
    ShapeCell,
    Traffic,
)
from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity
from api.findings.quantisation import decode_floor_s, params_from_name, quantisation_finding
from api.findings.settings import CostSettings, FindingsSettings
from api.findings.speculative import speculative_finding, speedup
from api.findings.unit_cost import CostBy, GpuHours, ModelTraffic, cost_lines
from api.findings.workload import deployment_workload
from api.timewindow import Window

END = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, 00:00
WEEK = Window(END - timedelta(days=7), END)
S = FindingsSettings()
PRICES = PriceBook(CostSettings())


# --- catalogue and prices --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nvml_name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA A10G", "a10g"),
        ("Tesla T4", "t4"),
    ],
)
def test_nvml_product_names_resolve_to_the_catalogue(nvml_name: str, key: str) -> None:
    match = lookup(nvml_name)
    assert match is not None and match.spec.key == key


def test_unknown_gpu_is_not_guessed() -> None:
    assert lookup("Quadro RTX 6000") is None
    assert PRICES.per_hour("Quadro RTX 6000") == CostSettings().unknown_gpu_price


def test_host_price_beats_gpu_override_beats_catalogue_and_mig_pays_its_share() -> None:
    prices = PriceBook(CostSettings(gpu_prices={"h100-sxm": 2.0}, host_prices={"spot-*": 1.0, "spot-7": 0.5}))
    assert prices.per_hour("NVIDIA H100 80GB HBM3", "node-1") == 2.0
    assert prices.per_hour("NVIDIA H100 80GB HBM3", "spot-3") == 1.0
    assert prices.per_hour("NVIDIA H100 80GB HBM3", "spot-7") == 0.5
    assert prices.per_hour("NVIDIA L4", "node-1") == 0.70
    assert prices.per_hour("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "node-1") == pytest.approx(2.0 / 7)


# --- Finding -------------------------------------------------------------------------------------------


def test_a_finding_without_evidence_is_refused_and_its_id_is_stable() -> None:
    scope = Scope(ScopeKind.DEPLOYMENT, "chat", "prod")
    kw = {
        "kind": "idle_held",
        "severity": Severity.LOW,
        "scope": scope,
        "window": WEEK,
        "title": "t",
        "query": "q",
        "weekly_usd": 1.0,
        "effect": Effect.SAVING,
        "recommendation": "r",
    }
    with pytest.raises(ValueError, match="evidence"):
        Finding(evidence={}, **kw)  # type: ignore[arg-type]
    a = Finding(evidence={"x": 1}, **kw)  # type: ignore[arg-type]
    other_window = Window(WEEK.start - timedelta(days=1), WEEK.end)
    b = Finding(evidence={"x": 2}, **{**kw, "window": other_window})  # type: ignore[arg-type]
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != Finding(evidence={"x": 1}, **{**kw, "kind": "idle_empty"}).fingerprint  # type: ignore[arg-type]


# --- idle --------------------------------------------------------------------------------------------


def night_gpu(uuid: str, idle_hours: range, days: range = range(7), held: bool = True) -> GpuUsage:
    """A GPU reporting every minute of a week, idle in `idle_hours` on `days`."""
    reported = {d * 24 + h: 60 for d in range(7) for h in range(24)}
    idle = {d * 24 + h: 60 for d in days for h in idle_hours}
    minutes_idle = sum(idle.values())
    return GpuUsage(
        cluster="prod",
        host="node-1",
        gpu_uuid=uuid,
        gpu_name="NVIDIA H100 80GB HBM3",
        deployment="chat",
        minutes=7 * 1440,
        idle_minutes=minutes_idle,
        idle_held_minutes=minutes_idle if held else 0,
        idle_cells=idle,
        reported_cells=reported,
    )


def test_idle_pattern_every_night_is_priced_per_week() -> None:
    gpus = [night_gpu(f"g{i}", range(1, 7)) for i in range(3)] + [night_gpu("busy", range(0))]
    findings = idle_findings(gpus, WEEK, S, PRICES)
    (pattern,) = [f for f in findings if f.kind == "idle_pattern"]
    assert pattern.title == "idle 01:00–07:00 every day: 3 GPUs, $377/week"
    assert pattern.weekly_usd == pytest.approx(3 * 6 * 7 * 2.99)  # 376.74
    (held,) = [f for f in findings if f.kind == "idle_held"]
    assert held.evidence["idle_gpu_hours"] == pytest.approx(126)
    assert held.evidence["idle_share"] == pytest.approx(126 / (4 * 168))


def test_weekday_only_idle_is_reported_as_a_weekday_pattern() -> None:
    gpu = night_gpu("g", range(22, 24), days=range(5))  # 22:00–24:00 Monday to Friday
    periods = daily_idle_periods(gpu, S)
    assert [(p.days, p.start, p.hours) for p in periods] == [("on weekdays", 22, 2)]
    assert periods[0].label == "22:00–24:00 on weekdays"


def test_idle_below_the_minimum_share_is_not_reported() -> None:
    gpu = night_gpu("g", range(0, 1), days=range(1))  # one idle hour in a week: 0.6 %
    assert [f for f in idle_findings([gpu], WEEK, S, PRICES) if f.kind == "idle_held"] == []


def test_empty_gpus_are_reported_apart_from_held_ones() -> None:
    gpu = night_gpu("g", range(0, 12), held=False)
    kinds = {f.kind for f in idle_findings([gpu], WEEK, S, PRICES)}
    assert "idle_empty" in kinds and "idle_held" not in kinds


# --- fleet ------------------------------------------------------------------------------------------


def deployment(**kw: object) -> Deployment:
    base: dict[str, object] = {
        "cluster": "prod",
        "name": "chat",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "gpus": 6,
        "gpu_hours": 12.0,
        "usd_per_gpu_hour": 2.99,
        "gpus_per_replica": 1,
        "gpus_per_replica_source": "default",
        "min_replicas": 1,
        "ttft_p95_slo_s": 2.0,
        "itl_p95_slo_s": 0.1,
    }
    base.update(kw)
    return Deployment(**base)  # type: ignore[arg-type]


def test_scale_down_waits_for_the_delay_and_scale_up_is_immediate() -> None:
    busy = np.array([0.5, 0.5, 2.5, 0.5, 0.5, 0.5, 0.5, 0.5])  # needed: 1 1 4 1 1 1 1 1
    series = FleetSeries(5, np.full(8, 6.0), busy)
    sizing = simulate(
        series, gpus_per_replica=1, target_util_pct=70, min_replicas=1, scale_down_delay_minutes=15
    )
    assert sizing.needed.tolist() == [1, 1, 4, 1, 1, 1, 1, 1]
    assert sizing.simulated.tolist() == [1, 1, 4, 4, 4, 4, 1, 1]
    # spare replicas: 5 5 2 2 2 2 5 5 = 28 replica-buckets × 1/12 h
    assert sizing.saved_gpu_hours == pytest.approx(28 / 12)
    assert sizing.static_replicas == 4


def test_six_replicas_needing_two_save_four_gpus() -> None:
    series = FleetSeries(5, np.full(24, 6.0), np.full(24, 1.2))  # 2 hours, 20 % each
    window = Window(END - timedelta(hours=2), END)
    finding = oversized(deployment(fleet=series), window, S)
    assert finding is not None
    assert finding.evidence["saved_gpu_hours"] == pytest.approx(8)  # (6 − 2) × 2 h
    assert finding.weekly_usd == pytest.approx(8 * 2.99 * 84)  # 2,009.28: a 2-hour window × 84 = a week


def test_kv_saturation_and_preemptions_ask_for_more_replicas() -> None:
    engine = EngineStats(
        {
            "kv_cache_usage": MetricSummary(mean=0.98, max=0.98, minutes=120, saturated=120, instances=2),
            "preemptions": MetricSummary(increase=478, instances=2),
            "requests_running": MetricSummary(mean=16, max=16, instances=2),
            "requests_waiting": MetricSummary(mean=8, max=8, instances=2),
        }
    )
    finding = undersized(deployment(gpus=2, engine=engine, traffic=Traffic(requests=300)), WEEK, S)
    assert finding is not None
    assert finding.evidence["replicas_needed"] == 5  # ceil(2 × 24/16 / 0.7) = ceil(4.29)
    assert finding.weekly_usd == pytest.approx(3 * 2.99 * 168)  # 1,506.96
    assert finding.effect is Effect.COST


def test_requests_waiting_with_kv_cache_to_spare_ask_for_a_larger_batch_not_replicas() -> None:
    # 2 replicas, 8 running + 8 waiting each, KV cache 30 % full (never saturated), no
    # preemptions, queue p95 1.5 s: the batch limit is full, not the GPUs. Measured on an H100
    # and an H200 (docs/gpu-e2e.md): 16 requests in flight cost +3.6 % per decode step over 1.
    engine = EngineStats(
        {
            "kv_cache_usage": MetricSummary(mean=0.3, max=0.5, minutes=120, saturated=0, instances=2),
            "preemptions": MetricSummary(increase=0, instances=2),
            "requests_running": MetricSummary(mean=8, max=8, instances=2),
            "requests_waiting": MetricSummary(mean=8, max=8, instances=2),
        }
    )
    traffic = Traffic(requests=300, queue=Quantiles(0.2, 1.0, 1.5, 2.0))
    finding = undersized(deployment(gpus=2, engine=engine, traffic=traffic), WEEK, S)
    assert finding is not None
    assert finding.title.startswith("chat is batch-limited: queue p95 1.50 s while the KV cache has room")
    assert finding.evidence["batch_limited"] is True
    assert finding.evidence["batch_limit_needed"] == 16  # 8 running + 8 waiting
    assert finding.evidence["replicas_needed"] == 2  # no more replicas
    assert (finding.weekly_usd, finding.effect) == (0.0, Effect.NONE)
    assert finding.severity is Severity.HIGH  # the queue breaches its limit
    # the same deployment with its KV cache full asks for replicas: ceil(2 × 16/8 / 0.7) = 6
    full = EngineStats(
        {
            **engine.metrics,
            "kv_cache_usage": MetricSummary(mean=0.97, max=0.99, minutes=120, saturated=120, instances=2),
        }
    )
    finding = undersized(deployment(gpus=2, engine=full, traffic=traffic), WEEK, S)
    assert finding is not None and finding.evidence["batch_limited"] is False
    assert finding.evidence["replicas_needed"] == 6
    assert finding.weekly_usd == pytest.approx(4 * 2.99 * 168)


def test_a_latency_slo_breach_alone_is_under_sized() -> None:
    traffic = Traffic(requests=100, ttft=Quantiles(0.5, 1.5, 2.5, 4.0))
    finding = undersized(deployment(gpus=4, traffic=traffic), WEEK, S)
    assert finding is not None and "TTFT p95 2.50 s > SLO 2 s" in finding.title
    assert finding.evidence["replicas_needed"] == 6  # ceil(4 / 0.7)


def test_a_small_model_on_an_h100_fits_a_cheaper_gpu() -> None:
    # 1 GPU per replica, 18 GB used, 10 % busy compute, 20 % memory bandwidth while busy.
    dep = deployment(
        gpus=2, gpu_hours=336, mem_used_peak_bytes=18e9, util_busy_mean_pct=10, mem_util_busy_mean_pct=20
    )
    finding = wrong_gpu_type(dep, WEEK, S, PRICES)
    assert finding is not None
    # need: 18 GB; 0.2 × 3350 / 0.7 = 957 GB/s; 0.1 × 989.5 / 0.7 = 141 TFLOPS.
    # per replica: A100 40GB 1 × $1.29; A10 2 × $0.75 = $1.50; L40S (864 GB/s) 2 × $1.25; L4 4 × $0.70;
    # A10G 2 × 70 TFLOPS < 141 → 3 × $1.01; T4 3 × 320 = 960 GB/s, 3 × 65 TFLOPS → 3 × $0.35 = $1.05.
    assert finding.evidence["candidate"] == "t4"
    assert finding.evidence["candidate_gpus_per_replica"] == 3
    assert finding.weekly_usd == pytest.approx(336 * (2.99 - 3 * 0.35))


# --- speculative ----------------------------------------------------------------------------------------


def test_leviathan_speedup() -> None:
    assert speedup(0.6, 4, 0.05) == pytest.approx(0.92224 / 0.48)  # 1.9213
    assert speedup(0.2, 4, 0.3) == pytest.approx((1 - 0.2**5) / (0.8 * 2.2))  # 0.568: slower


def chat_traffic(decile: int, bucket: int, n: int = 100) -> Traffic:
    return Traffic(requests=n, shape={decile * 16 + bucket: ShapeCell(n, 3.0 * n, 2.8 * n)})


def test_decode_bound_low_concurrency_chat_is_a_candidate() -> None:
    dep = deployment(traffic=chat_traffic(9, 8), concurrency=1.0)
    finding = speculative_finding(dep, WEEK, S)
    assert finding is not None and finding.kind == "speculative_candidate"
    assert finding.evidence["e2e_mean_after_s"] == pytest.approx(3.0 - 2.8 * (1 - 0.48 / 0.92224), abs=1e-4)


def test_short_outputs_or_high_concurrency_are_not_candidates() -> None:
    assert speculative_finding(deployment(traffic=chat_traffic(9, 5), concurrency=1.0), WEEK, S) is None
    assert speculative_finding(deployment(traffic=chat_traffic(9, 8), concurrency=12.0), WEEK, S) is None


def test_speculative_decoding_that_slows_down_is_turned_off() -> None:
    engine = EngineStats(
        {
            "spec_draft_tokens": MetricSummary(increase=10_000),
            "spec_accepted_tokens": MetricSummary(increase=2_000),  # α = 0.2
            "spec_drafts": MetricSummary(increase=2_500),  # γ = 4
        }
    )
    settings = FindingsSettings(spec_draft_cost_ratio=0.3)
    finding = speculative_finding(
        deployment(traffic=chat_traffic(9, 8), concurrency=2.0, engine=engine), WEEK, settings
    )
    assert finding is not None and finding.kind == "speculative_off"
    assert finding.evidence["speedup"] == pytest.approx((1 - 0.2**5) / (0.8 * 2.2), abs=1e-4)


# --- quantisation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", 70),
        ("Qwen2.5-0.5B", 0.5),
        ("Mixtral-8x7B-v0.1", 56),
        ("openai/gpt-oss-120b", 120),
        ("mistral-large-instruct", None),
    ],
)
def test_parameter_count_from_the_model_name(model: str, params: float | None) -> None:
    assert params_from_name(model) == params


def test_70b_on_four_h100s_near_the_floor_gains_from_fp8() -> None:
    spec = lookup("NVIDIA H100 80GB HBM3")
    assert spec is not None
    floor = decode_floor_s(70, 16, 4, spec.spec)
    assert floor == pytest.approx(140e9 / (4 * 3.35e12))  # 10.45 ms
    dep = deployment(
        gpus=8,
        gpus_per_replica=4,
        gpu_hours=8 * 168,
        params_b=70,
        weight_bits=16,
        mem_used_peak_bytes=72e9,
        mem_total_bytes=80e9,
        traffic=Traffic(requests=10, tpot=Quantiles(0.015, 0.016, 0.017, 0.02)),
    )
    finding = quantisation_finding(dep, WEEK, S)
    assert finding is not None
    fp8, int4 = finding.evidence["options"]
    assert fp8["tpot_s"] == pytest.approx(0.015 - floor / 2, abs=1e-6)  # evidence keeps µs
    assert int4["tpot_s"] == pytest.approx(0.015 - floor * 3 / 4, abs=1e-6)
    assert fp8["freed_gb_per_replica"] == pytest.approx(70)
    # KV in use: 4 × 72 GB − 140 GB = 148 GB; FP8 weights 70 GB → 218 GB → ceil(218 / 72) = 4 GPUs;
    # INT4 35 GB → 183 GB → 3 GPUs: one GPU per replica saved, 2 replicas × 168 h × $2.99.
    assert int4["gpus_per_replica"] == 3 and fp8["gpus_per_replica"] == 4
    assert finding.weekly_usd == pytest.approx(8 * 168 * (1 - 3 / 4) * 2.99)
    assert any("quality" in c for c in finding.caveats)


# --- workload --------------------------------------------------------------------------------------------


def test_long_uncached_prompts_suggest_prefix_caching_and_spikes_chunked_prefill() -> None:
    # 40 requests of 4,000-token prompts (bucket 11), 60 of 100 tokens (bucket 6).
    traffic = Traffic(
        requests=100,
        prompt_tokens=40 * 4000 + 60 * 100,
        cached_tokens=1000,
        prompts={11: PromptCell(40, 40 * 2.0, 0), 6: PromptCell(60, 60 * 0.1, 1000)},
        ttft=Quantiles(0.12, 1.5, 2.0, 2.5),
    )
    kinds = {f.kind: f for f in deployment_workload(deployment(traffic=traffic), WEEK, S)}
    assert kinds["workload_prefix_caching"].evidence["long_prompt_share"] == pytest.approx(0.4)
    assert kinds["workload_chunked_prefill"].evidence["ttft_long_mean_s"] == pytest.approx(2.0)
    assert kinds["workload_mixed"].evidence["workload_class"] == "mixed"  # 40 % long and 60 % short


def test_prefill_heavy_needs_prefill_above_decode() -> None:
    heavy = Traffic(requests=10, phased=10, prefill_s=30.0, decode_s=20.0)
    light = Traffic(requests=10, phased=10, prefill_s=10.0, decode_s=20.0)
    assert [f.kind for f in deployment_workload(deployment(traffic=heavy), WEEK, S)] == [
        "workload_prefill_heavy"
    ]
    assert deployment_workload(deployment(traffic=light), WEEK, S) == []


# --- unit cost --------------------------------------------------------------------------------------------


def test_dollars_per_million_output_tokens_by_deployment_and_model() -> None:
    gpus = [
        GpuHours("prod", "n1", f"g{i}", "NVIDIA H100 80GB HBM3", "chat", 7 * 1440, 50.0) for i in range(2)
    ]
    traffic = [
        ModelTraffic("prod", "chat", "llama-70b", 1000, 2_000_000, 3000.0),
        ModelTraffic("prod", "chat", "llama-8b", 3000, 1_000_000, 1000.0),
    ]
    (line,) = cost_lines(gpus, traffic, CostBy.DEPLOYMENT, WEEK, PRICES)
    usd = 2 * 168 * 2.99  # 1,004.64
    assert line.usd == pytest.approx(usd)
    assert line.usd_per_1m_output_tokens == pytest.approx(usd / 3)
    assert line.usd_per_request == pytest.approx(usd / 4000)
    by_model = {x.key: x for x in cost_lines(gpus, traffic, CostBy.MODEL, WEEK, PRICES)}
    assert by_model["llama-70b"].usd == pytest.approx(usd * 0.75)  # 3,000 of 4,000 request-seconds
    assert by_model["llama-8b"].usd_per_1m_output_tokens == pytest.approx(usd * 0.25)
