"""What the simulated fleet sends, in the shapes docs/telemetry.md describes: GPU and engine
metrics as an inferwatch collector ships them, request spans as vLLM and SGLang emit them
(with the attributes the collector adds to their resource).

Everything carries the simulated labels of `api.demo`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from api import __version__
from api.demo import SIMULATED_ATTRIBUTE, SIMULATED_CLUSTER, wire
from api.demo.fleet import BatchJobs, Gpu, Host, Replica
from api.demo.gpus import GpuReadings
from api.demo.simulate import FINISH_REASONS, ReplicaState, Requests, spec_step_tokens

IntArray = npt.NDArray[np.int64]

COLLECTOR_SCOPE = ("inferwatch.collector", __version__)

# (metric, unit, GpuReadings field, cumulative sum), in the collector's order. The
# collector also sends gpu.clock.sm, gpu.power.limit, gpu.energy.consumed,
# gpu.gpm.sm_occupancy and gpu.gpm.tensor_activity; no page, finding or alert reads them,
# so the demo leaves them out (29 % fewer GPU data points to feed) and its GPU rows have no
# values for them.
GPU_METRICS: tuple[tuple[str, str, str, bool], ...] = (
    ("gpu.utilization", "%", "util_gpu_pct", False),
    ("gpu.memory.utilization", "%", "util_mem_pct", False),
    ("gpu.memory.used", "By", "mem_used_bytes", False),
    ("gpu.memory.total", "By", "mem_total_bytes", False),
    ("gpu.power.draw", "mW", "power_mw", False),
    ("gpu.temperature", "Cel", "temperature_c", False),
    ("gpu.gpm.sm_activity", "%", "sm_activity_pct", False),
    ("gpu.gpm.dram_bandwidth", "%", "dram_bw_pct", False),
)


def collector_resource(host: Host, replica: Replica | None, gpus: Sequence[Gpu]) -> dict[str, Any]:
    """The resource of what a collector produces itself (GPU and engine metrics)."""
    attrs: dict[str, Any] = {
        "host.name": host.name,
        "inferwatch.cluster": SIMULATED_CLUSTER,
        "inferwatch.instance": replica.instance if replica else host.name,
        "inferwatch.collector.version": __version__,
    }
    if replica is not None:
        attrs["service.name"] = "inferwatch-collector"
        attrs["inferwatch.deployment"] = replica.deployment.name
        attrs["inferwatch.model"] = replica.deployment.model
    # Without a deployment the server would fall back to service.name and file the GPUs under
    # "inferwatch-collector"; the node's collector leaves it out so they show as unassigned.
    attrs["inferwatch.gpu.uuids"] = [g.uuid for g in gpus]
    attrs[SIMULATED_ATTRIBUTE] = True
    return attrs


def engine_resource(replica: Replica, gpus: Sequence[Gpu]) -> dict[str, Any]:
    """The resource of an engine's spans after the collector added who it is."""
    return {
        "service.name": replica.deployment.framework,
        **{k: v for k, v in collector_resource(replica.host, replica, gpus).items() if k != "service.name"},
    }


# --- GPU metrics ---------------------------------------------------------------------------


def gpu_metrics(
    gpus: Sequence[Gpu], readings: Mapping[str, GpuReadings], times_ns: IntArray, rows: slice
) -> tuple[list[bytes], int]:
    """Every GPU field of `gpus` for the minutes in `rows`: one encoded Metric per field, and
    the number of data points."""
    metrics = []
    count = 0
    for name, unit, field, cumulative in GPU_METRICS:
        points = b""
        for gpu in gpus:
            values = getattr(readings[gpu.uuid], field)
            if values is not None:
                points += wire.number_points(_gpu_attrs(gpu), times_ns[rows], values[rows])
                count += len(times_ns[rows])
        if points:
            metrics.append((wire.cumulative_sum if cumulative else wire.gauge)(name, unit, points))
    points = b""
    for gpu in gpus:
        r = readings[gpu.uuid]
        if r.process_pid is not None and r.process_mem_bytes is not None:
            attrs = {**_gpu_attrs(gpu), "process.pid": r.process_pid}
            points += wire.number_points(attrs, times_ns[rows], r.process_mem_bytes[rows])
            count += len(times_ns[rows])
    if points:
        metrics.append(wire.gauge("gpu.process.memory.used", "By", points))
    return metrics, count


def _gpu_attrs(gpu: Gpu) -> dict[str, Any]:
    return {"gpu.uuid": gpu.uuid, "gpu.index": gpu.index, "gpu.name": gpu.host.gpu.name}


# --- engine metrics ------------------------------------------------------------------------


class EngineSeries:
    """One replica's scraped engine metrics for the whole window, as Prometheus would show
    them: gauges read at the scrape, counters cumulative since the engine started."""

    def __init__(
        self,
        replica: Replica,
        state: ReplicaState,
        requests: Requests,
        rng: np.random.Generator,
        started_ns: int,
    ) -> None:
        self.replica = replica
        self.started_ns = started_ns
        n = len(state.active)
        running = _scrape(rng, state.running, closed_loop=isinstance(replica.deployment.traffic, BatchJobs))
        waiting = _scrape(rng, state.waiting, closed_loop=isinstance(replica.deployment.traffic, BatchJobs))
        kv = np.clip(state.kv_usage * rng.normal(1.0, 0.05, n), 0.0, 1.0)
        deployment = replica.deployment
        self.gauges: list[tuple[str, npt.NDArray[np.float64]]]
        self.counters: list[tuple[str, npt.NDArray[np.float64]]]
        if deployment.framework == "sglang":
            self.gauges = [
                ("sglang:num_running_reqs", running),
                ("sglang:num_queue_reqs", waiting),
                ("sglang:token_usage", kv),
                # The shared instruction prefix would hit, but the radix cache is off.
                ("sglang:cache_hit_rate", np.zeros(n)),
            ]
            self.counters = [("sglang:gpu_execution_seconds", np.cumsum(state.active * 60.0))]
            self.labels = {"model_name": deployment.model}
            return
        self.gauges = [
            ("vllm:num_requests_running", running),
            ("vllm:num_requests_waiting", waiting),
            ("vllm:kv_cache_usage_perc", kv),
        ]
        self.counters = [
            ("vllm:num_preemptions", np.cumsum(rng.poisson(state.preemptions)).astype(np.float64))
        ]
        if deployment.spec is not None:
            generated = np.bincount(requests.minute, weights=requests.output_tokens, minlength=n)
            drafts = np.cumsum(np.rint(generated / spec_step_tokens(deployment)))
            gamma = deployment.spec.draft_tokens
            self.counters += [
                ("vllm:spec_decode_num_drafts", drafts),
                ("vllm:spec_decode_num_draft_tokens", drafts * gamma),
                (
                    "vllm:spec_decode_num_accepted_tokens",
                    np.rint(drafts * (spec_step_tokens(deployment) - 1)),
                ),
            ]
        self.labels = {"engine": "0", "model_name": deployment.model}

    @property
    def series(self) -> int:
        return len(self.gauges) + len(self.counters)

    def metrics(self, times_ns: IntArray, rows: slice) -> list[bytes]:
        out = [
            wire.gauge(name, "", wire.number_points(self.labels, times_ns[rows], values[rows]))
            for name, values in self.gauges
        ]
        out += [
            wire.cumulative_sum(
                name,
                "",
                wire.number_points(self.labels, times_ns[rows], values[rows], start_ns=self.started_ns),
            )
            for name, values in self.counters
        ]
        return out


def _scrape(
    rng: np.random.Generator, mean: npt.NDArray[np.float64], *, closed_loop: bool
) -> npt.NDArray[np.float64]:
    """A count read at one instant around `mean`: Poisson for independent arrivals; for a
    closed loop (a bulk client keeping a fixed number outstanding) bounded by its ceiling."""
    if not closed_loop:
        return rng.poisson(mean).astype(np.float64)
    cap = int(np.ceil(mean.max())) if len(mean) else 0
    if cap == 0:
        return np.zeros(len(mean))
    return rng.binomial(cap, np.clip(mean / cap, 0.0, 1.0)).astype(np.float64)


# --- spans -----------------------------------------------------------------------------------


def request_spans(replica: Replica, requests: Requests, rows: slice, ids: bytes) -> list[bytes]:
    """One encoded root span per request in `rows`, in the shape the replica's engine sends.

    vLLM: `llm_request` with `gen_ai.latency.*` seconds, token usage, the request id, and the
    request parameters it sets only when truthy. SGLang: `Req <id[:8]>` with the same keys,
    its prefill time counted from dispatch (so including the wait). `ids` holds 24 random
    bytes per row: the trace id, then the span id."""
    deployment = replica.deployment
    sglang = deployment.framework == "sglang"
    n = rows.stop - rows.start
    hexes = ids.hex()
    rids = [hexes[48 * i : 48 * i + 32] for i in range(n)]
    queue = requests.queue_s[rows]
    prefill = requests.prefill_s[rows]
    decode = requests.decode_s[rows]
    arrival = requests.arrival_ns[rows]
    constant: dict[str, Any] = {"gen_ai.request.max_tokens": deployment.output.high, "gen_ai.request.n": 1}
    if deployment.temperature:  # vLLM sets it only when truthy
        constant["gen_ai.request.temperature"] = deployment.temperature
    columns = wire.SpanColumns(
        ids=ids,
        start_ns=arrival,
        end_ns=arrival + np.rint(requests.e2e_s[rows] * 1e9).astype(np.int64),
        names=[f"Req {rid[:8]}" for rid in rids] if sglang else ["llm_request"] * n,
        doubles={
            "gen_ai.latency.time_in_queue": queue,
            "gen_ai.latency.time_to_first_token": requests.ttft_s[rows],
            "gen_ai.latency.time_in_model_prefill": prefill + queue if sglang else prefill,
            "gen_ai.latency.time_in_model_decode": decode,
            "gen_ai.latency.time_in_model_inference": prefill + decode,
            "gen_ai.latency.e2e": requests.e2e_s[rows],
        },
        ints={
            "gen_ai.usage.prompt_tokens": requests.prompt_tokens[rows],
            "gen_ai.usage.completion_tokens": requests.output_tokens[rows],
        },
        strings={
            "gen_ai.request.id": rids if sglang else [f"chatcmpl-{rid}" for rid in rids],
            "gen_ai.response.finish_reasons": [_FINISH_JSON[f] for f in requests.finish[rows].tolist()],
        },
        constant=constant,
    )
    return wire.encode_spans(columns)


_FINISH_JSON = tuple(json.dumps([reason]) for reason in FINISH_REASONS)


def span_scope(replica: Replica) -> tuple[str, str]:
    return ("sglang", "") if replica.deployment.framework == "sglang" else ("vllm.llm_engine", "")
