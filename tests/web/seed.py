"""A small fleet sent through the real OTLP ingest path, with answers known by hand.

Three hours of one sample a minute, ending at the last whole minute before `now`:
- node-a / GPU-a0, GPU-a1: H100 80GB HBM3 serving `chat`; 60 % busy for two hours, then
  0 % for the last hour with the model still loaded (idle, memory held).
- node-b / GPU-b0: L4 with nothing on it (deployment ''), 0 % for all three hours (idle).
- node-b / GPU-b1: L4 serving `batch`, 90 % busy all three hours.
`chat` serves 120 vLLM requests (one a minute over the first two hours, on both a-GPUs);
`batch` serves 30 (one every six minutes on GPU-b1).
Prices: H100 SXM $2.99, L4 $0.70 per GPU-hour (the catalogue defaults).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.otlp import NS, gpu_metrics_request, post, resource, traces_request, vllm_span

MINUTES = 180
H100 = "NVIDIA H100 80GB HBM3"
L4 = "NVIDIA L4"
GPUS = {
    "GPU-a0": ("node-a", 0, H100, "chat"),
    "GPU-a1": ("node-a", 1, H100, "chat"),
    "GPU-b0": ("node-b", 0, L4, ""),
    "GPU-b1": ("node-b", 1, L4, "batch"),
}


def util(uuid: str, minute: int) -> int:
    if uuid in ("GPU-a0", "GPU-a1"):
        return 60 if minute < 120 else 0
    return 0 if uuid == "GPU-b0" else 90


def start_of(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES)


def seed(client: Any, now: datetime | None = None) -> datetime:
    """Post the fleet to `client` (TestClient or httpx); returns the first sample's time."""
    now = now or datetime.now(UTC)
    t0 = start_of(now)
    for host in ("node-a", "node-b"):
        for deployment in {GPUS[u][3] for u in GPUS if GPUS[u][0] == host}:
            samples = []
            for uuid, (h, index, name, dep) in GPUS.items():
                if h != host or dep != deployment:
                    continue
                for minute in range(MINUTES):
                    at = int((t0 + timedelta(minutes=minute)).timestamp()) * NS
                    loaded = dep != ""
                    samples.append(
                        {
                            "time_ns": at,
                            "uuid": uuid,
                            "index": index,
                            "name": name,
                            "util_gpu_pct": util(uuid, minute),
                            "mem_total_bytes": 80 * 2**30,
                            "mem_used_bytes": 60 * 2**30 if loaded else 0,
                            "power_mw": 300_000,
                            "procs": [(1000 + index, 60 * 2**30, util(uuid, minute))] if loaded else [],
                        }
                    )
            res = resource(host=host, deployment=deployment or "unknown", cluster="prod")
            reply = post(client, "/v1/metrics", gpu_metrics_request(res, samples))
            assert reply.status_code == 200, reply.text
    spans = []
    for i in range(120):
        at = int((t0 + timedelta(minutes=i, seconds=10)).timestamp()) * NS
        spans.append(
            vllm_span(
                at,
                queue=0.05,
                ttft=0.25,
                prefill=0.2,
                decode=2.0,
                e2e=2.25,
                prompt=800,
                output=201,
                request_id=f"chat-{i}",
                model="llama-70b",
            )
        )
    batch = []
    for i in range(30):
        at = int((t0 + timedelta(minutes=6 * i, seconds=5)).timestamp()) * NS
        batch.append(
            vllm_span(
                at,
                queue=1.0,
                ttft=1.5,
                prefill=0.5,
                decode=8.0,
                e2e=9.5,
                prompt=3000,
                output=401,
                request_id=f"batch-{i}",
                model="qwen-32b",
                finish="length" if i % 10 == 0 else "stop",
            )
        )
    groups = [
        (resource(host="node-a", deployment="chat", cluster="prod", gpus=["GPU-a0", "GPU-a1"]), spans),
        (resource(host="node-b", deployment="batch", cluster="prod", gpus=["GPU-b1"]), batch),
    ]
    reply = post(client, "/v1/traces", traces_request(groups))
    assert reply.status_code == 200, reply.text
    return t0
