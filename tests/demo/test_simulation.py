"""The simulated week has the shapes the demo promises, derived from its output (GPU readings
and request timings), with thresholds written down here rather than read from the code."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from api.demo.fleet import ASSISTANT, BATCH, CHAT, EVAL, RAG, SUPPORT, Deployment
from api.demo.simulate import Requests, Window
from api.demo.week import SimulatedWeek
from tests.demo.common import MONDAY, SEED

MINUTES = np.arange(7 * 1440)
HOUR = (MINUTES % 1440) / 60  # the window starts at Monday 00:00 UTC
WEEKDAY = MINUTES // 1440  # 0 = Monday
NIGHT = (HOUR >= 1) & (HOUR < 7)


def requests_of(week: SimulatedWeek, deployment: Deployment) -> Requests:
    parts = [week.requests[r.instance] for r in week.fleet.replicas_of(deployment)]
    return Requests(*(np.concatenate([getattr(p, f) for p in parts]) for f in Requests.__slots__))


def gpu_uuids(week: SimulatedWeek, deployment: Deployment) -> list[str]:
    return [g.uuid for r in week.fleet.replicas_of(deployment) for g in week.fleet.gpus_of(r)]


def digest(week: SimulatedWeek) -> str:
    h = hashlib.sha256()
    for batch in week.batches():
        h.update(batch.path.encode())
        h.update(batch.body)
    return h.hexdigest()


def test_the_fleet_is_24_to_32_gpus_of_h100_a100_and_l4_on_hosts_of_8_or_4(week: SimulatedWeek) -> None:
    fleet = week.fleet
    assert 24 <= len(fleet.gpus) <= 32
    names = Counter(g.host.gpu.name for g in fleet.gpus)
    assert set(names) == {"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L4"}
    assert {h.gpu_count for h in fleet.hosts} <= {4, 8}
    assert len({g.uuid for g in fleet.gpus}) == len(fleet.gpus)
    used = [(r.host.name, i) for r in fleet.replicas for i in r.gpu_indices]
    assert len(used) == len(set(used)), "a GPU serves two replicas"
    assert len(fleet.replicas_of(RAG)) == 6


def test_the_same_seed_and_window_give_the_same_bytes() -> None:
    window = Window(MONDAY + 18 * 3600, 120)
    first, again = SimulatedWeek(SEED, window), SimulatedWeek(SEED, window)
    assert digest(first) == digest(again)
    assert digest(SimulatedWeek(SEED + 1, window)) != digest(first)


@pytest.mark.parametrize("deployment", [ASSISTANT, RAG, BATCH], ids=lambda d: d.name)
def test_night_deployments_get_no_requests_and_their_gpus_idle_from_01_to_07(
    week: SimulatedWeek, deployment: Deployment
) -> None:
    requests = requests_of(week, deployment)
    assert len(requests) > 1000
    assert not NIGHT[requests.minute].any()
    for uuid in gpu_uuids(week, deployment):
        reading = week.gpus[uuid]
        assert (reading.util_gpu_pct[NIGHT] == 0).all()
        # the engine is loaded all the while: memory held, not computing
        assert (reading.mem_used_bytes[NIGHT] > 0.8 * reading.mem_total_bytes[NIGHT]).all()


def test_the_over_provisioned_deployment_never_needs_more_than_two_of_its_six_replicas(
    week: SimulatedWeek,
) -> None:
    busy = np.sum([week.gpus[u].util_gpu_pct / 100 for u in gpu_uuids(week, RAG)], axis=0)
    needed_at_70_percent = busy / 0.7
    assert needed_at_70_percent.max() <= 2.0
    assert needed_at_70_percent.max() > 0.5  # it does serve a real load by day


def test_the_eval_gpu_holds_memory_all_week_and_never_computes(week: SimulatedWeek) -> None:
    (uuid,) = gpu_uuids(week, EVAL)
    reading = week.gpus[uuid]
    assert (reading.mem_used_bytes > 0.85 * reading.mem_total_bytes).all()
    assert (reading.util_gpu_pct == 0).all()
    assert reading.sm_activity_pct is not None and (reading.sm_activity_pct == 0).all()
    assert reading.process_pid is not None
    assert len(week.requests[week.fleet.replicas_of(EVAL)[0].instance]) == 0


def test_the_spare_gpu_has_nothing_loaded(week: SimulatedWeek) -> None:
    spare = [g for g in week.fleet.gpus if g.replica is None]
    assert len(spare) == 1
    reading = week.gpus[spare[0].uuid]
    assert (reading.mem_used_bytes < 64 * 2**20).all()
    assert reading.process_pid is None and (reading.util_gpu_pct == 0).all()


def test_chat_ttft_p95_passes_its_slo_at_the_weekday_peak_and_not_at_night(week: SimulatedWeek) -> None:
    requests = requests_of(week, CHAT)
    hour, weekday = HOUR[requests.minute], WEEKDAY[requests.minute]
    peak = (hour >= 13) & (hour < 16) & (weekday < 5)
    night = (hour >= 2) & (hour < 5)
    slo = 2.0
    assert np.percentile(requests.ttft_s[peak], 95) > slo
    assert np.percentile(requests.ttft_s[night], 95) < slo


def test_chat_load_is_diurnal_and_never_idle(week: SimulatedWeek) -> None:
    util = np.mean([week.gpus[u].util_gpu_pct for u in gpu_uuids(week, CHAT)], axis=0)
    peak = (HOUR >= 13) & (HOUR < 16) & (WEEKDAY < 5)
    assert util[peak].mean() > util[NIGHT].mean() + 40
    assert (util[NIGHT] > 0).mean() > 0.95


def test_request_timings_add_up(week: SimulatedWeek) -> None:
    for deployment in (CHAT, ASSISTANT, BATCH, RAG, SUPPORT):
        r = requests_of(week, deployment)
        assert (r.queue_s >= 0).all() and (r.prefill_s > 0).all() and (r.decode_s >= 0).all()
        np.testing.assert_allclose(r.ttft_s, r.queue_s + r.prefill_s)
        assert (r.e2e_s >= r.ttft_s + r.decode_s).all()
        assert (r.e2e_s <= r.ttft_s + r.decode_s + 0.02).all()
        for replica in week.fleet.replicas_of(deployment):
            assert (np.diff(week.requests[replica.instance].arrival_ns) >= 0).all()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_prefill_grows_with_prompt_and_decode_with_output_tokens(week: SimulatedWeek) -> None:
    r = requests_of(week, CHAT)
    assert rank_correlation(r.prompt_tokens, r.prefill_s) > 0.9
    assert rank_correlation(r.output_tokens, r.decode_s) > 0.9


def test_time_per_output_token_rises_with_the_batch(week: SimulatedWeek) -> None:
    r = requests_of(week, CHAT)
    long = r.output_tokens > 50
    per_token = r.decode_s[long] / (r.output_tokens[long] - 1)
    running = np.mean([week.states[x.instance].running for x in week.fleet.replicas_of(CHAT)], axis=0)
    batch = running[r.minute[long]]
    busy, quiet = batch > np.percentile(batch, 90), batch < np.percentile(batch, 10)
    assert np.median(per_token[busy]) > 1.1 * np.median(per_token[quiet])


def test_the_assistant_is_decode_heavy_at_low_concurrency(week: SimulatedWeek) -> None:
    r = requests_of(week, ASSISTANT)
    assert np.median(r.decode_s / r.e2e_s) > 0.9
    assert np.median(r.output_tokens) >= 64
    for replica in week.fleet.replicas_of(ASSISTANT):
        assert week.states[replica.instance].running.max() < 4


def test_the_batch_deployment_runs_flat_out_on_long_prompts_then_idles(week: SimulatedWeek) -> None:
    r = requests_of(week, BATCH)
    assert np.median(r.prompt_tokens) > 8000
    util = np.mean([week.gpus[u].util_gpu_pct for u in gpu_uuids(week, BATCH)], axis=0)
    assert (util >= 95).mean() > 0.05
    assert (util == 0).mean() > 0.6


def test_speculative_decoding_counters_match_the_configured_acceptance(week: SimulatedWeek) -> None:
    spec = SUPPORT.spec
    assert spec is not None
    for replica in week.fleet.replicas_of(SUPPORT):
        counters = dict(week.engines[replica.instance].counters)
        drafts = counters["vllm:spec_decode_num_drafts"]
        draft_tokens = counters["vllm:spec_decode_num_draft_tokens"]
        accepted = counters["vllm:spec_decode_num_accepted_tokens"]
        assert (np.diff(drafts) >= 0).all() and (np.diff(accepted) >= 0).all()
        # per-token acceptance α with γ drafts: accepted per draft = α + α² + … + α^γ
        a = spec.acceptance
        expected = sum(a**k for k in range(1, spec.draft_tokens + 1)) / spec.draft_tokens
        assert accepted[-1] / draft_tokens[-1] == pytest.approx(expected, rel=0.01)


def test_gpm_fields_only_on_hopper(week: SimulatedWeek) -> None:
    for gpu in week.fleet.gpus:
        reading = week.gpus[gpu.uuid]
        hopper = gpu.host.gpu.name.startswith("NVIDIA H100")
        assert (reading.sm_activity_pct is not None) is hopper
        assert (reading.power_mw <= reading.power_limit_mw).all()
        assert (np.diff(reading.energy_mj) > 0).all()
