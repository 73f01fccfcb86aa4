"""The simulated fleet: GPU models, hosts, deployments and their replicas.

Each deployment is there to show one thing a team would want to find (its `story`). The
figures are plausible for the hardware (prefill throughput from FLOPs at a realistic
utilisation, decode time per token from weight bytes over memory bandwidth), not
measurements.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GpuModel:
    name: str
    """NVML product name."""
    mem_total_bytes: int
    power_limit_mw: int
    idle_power_mw: int
    max_sm_clock_mhz: int
    idle_sm_clock_mhz: int
    gpm: bool
    """NVML GPM (SM activity, occupancy, DRAM bandwidth, tensor activity): Hopper and newer."""


H100 = GpuModel("NVIDIA H100 80GB HBM3", 81559 * MIB, 700_000, 71_000, 1980, 345, gpm=True)
A100 = GpuModel("NVIDIA A100-SXM4-80GB", 81920 * MIB, 400_000, 57_000, 1410, 210, gpm=False)
L4 = GpuModel("NVIDIA L4", 23034 * MIB, 72_000, 16_000, 2040, 210, gpm=False)


@dataclass(frozen=True, slots=True)
class Tokens:
    """A log-normal token count, clipped to [low, high]."""

    median: float
    sigma: float
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Perf:
    """How fast one replica serves."""

    prefill_tps: float
    """Prompt tokens per second it prefills."""
    tpot_s: float
    """Seconds per output token with one sequence in the batch."""
    tpot_per_seq_s: float
    """Seconds added to each decode step per further sequence in the batch."""
    kv_tokens: int
    """KV-cache capacity in tokens."""
    mem_fraction: float
    """Share of each GPU's memory the engine reserves at start (weights + KV cache)."""


@dataclass(frozen=True, slots=True)
class SpecDecode:
    """Speculative decoding as configured: γ draft tokens per step, per-token acceptance α,
    draft/target cost ratio c."""

    draft_tokens: int
    acceptance: float
    draft_cost: float


@dataclass(frozen=True, slots=True)
class Traffic:
    """Open-loop arrivals: `peak_rps` requests per second (whole deployment) at the top of
    `shape` (see `api.demo.load`)."""

    shape: str
    peak_rps: float


@dataclass(frozen=True, slots=True)
class BatchJobs:
    """Closed-loop bulk jobs: a client submits `requests` and keeps `in_flight_per_replica`
    outstanding until done, so the deployment runs flat out and then falls idle."""

    nightly_hour: float
    nightly_requests: int
    weekend_requests: int
    adhoc_weekdays: tuple[int, ...]
    adhoc_hour: float
    adhoc_requests: int
    in_flight_per_replica: int


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    model: str
    framework: str
    """vllm or sglang: decides the span and engine-metric shapes."""
    gpu: GpuModel
    tp: int
    """GPUs per replica (tensor parallel)."""
    prompt: Tokens
    output: Tokens
    temperature: float
    perf: Perf
    traffic: Traffic | BatchJobs | None
    """None: the engine is loaded and serves nothing."""
    spec: SpecDecode | None = None
    slo_ttft_s: float | None = None
    slo_itl_s: float | None = None
    story: str = ""


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    gpu: GpuModel
    gpu_count: int


@dataclass(frozen=True, slots=True)
class Replica:
    deployment: Deployment
    index: int
    host: Host
    gpu_indices: tuple[int, ...]
    pid: int

    @property
    def instance(self) -> str:
        return f"{self.deployment.name}-{self.index}"


@dataclass(frozen=True, slots=True)
class Gpu:
    host: Host
    index: int
    uuid: str
    replica: Replica | None


@dataclass(frozen=True, slots=True)
class Fleet:
    hosts: tuple[Host, ...]
    deployments: tuple[Deployment, ...]
    replicas: tuple[Replica, ...]
    gpus: tuple[Gpu, ...]
    _by_replica: dict[str, tuple[Gpu, ...]] = field(default_factory=dict, compare=False, repr=False)

    def gpus_of(self, replica: Replica) -> tuple[Gpu, ...]:
        return self._by_replica[replica.instance]

    def gpus_on(self, host: Host) -> tuple[Gpu, ...]:
        return tuple(g for g in self.gpus if g.host == host)

    def replicas_of(self, deployment: Deployment) -> tuple[Replica, ...]:
        return tuple(r for r in self.replicas if r.deployment == deployment)


LLAMA_70B = "meta-llama/Llama-3.3-70B-Instruct"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
QWEN_32B = "Qwen/Qwen2.5-32B-Instruct"

CHAT = Deployment(
    name="chat-llama-70b",
    model=LLAMA_70B,
    framework="vllm",
    gpu=H100,
    tp=4,
    # Chat with retrieved context: most prompts a few thousand tokens, a long tail of long ones.
    prompt=Tokens(median=2400, sigma=1.0, low=60, high=64_000),
    output=Tokens(median=240, sigma=0.7, low=4, high=2048),
    temperature=0.7,
    perf=Perf(prefill_tps=7500, tpot_s=0.021, tpot_per_seq_s=0.0006, kv_tokens=380_000, mem_fraction=0.9),
    traffic=Traffic(shape="chat", peak_rps=0.6),
    slo_ttft_s=2.0,
    slo_itl_s=0.05,
    story="interactive chat with a diurnal load; TTFT p95 passes its 2 s SLO at the weekday peak",
)

ASSISTANT = Deployment(
    name="code-assistant-8b",
    model=LLAMA_8B,
    framework="vllm",
    gpu=H100,
    tp=1,
    prompt=Tokens(median=650, sigma=0.6, low=30, high=12_000),
    output=Tokens(median=420, sigma=0.5, low=16, high=2048),
    temperature=0.2,
    perf=Perf(prefill_tps=45_000, tpot_s=0.0062, tpot_per_seq_s=0.00015, kv_tokens=450_000, mem_fraction=0.9),
    traffic=Traffic(shape="workday", peak_rps=0.2),
    slo_itl_s=0.03,
    story="decode-heavy answers at low concurrency: a speculative-decoding candidate; idle at night",
)

EVAL = Deployment(
    name="eval-llama-8b",
    model=LLAMA_8B,
    framework="vllm",
    gpu=H100,
    tp=1,
    prompt=Tokens(median=500, sigma=0.5, low=10, high=4000),
    output=Tokens(median=100, sigma=0.5, low=1, high=512),
    temperature=0.0,
    perf=Perf(prefill_tps=45_000, tpot_s=0.0062, tpot_per_seq_s=0.00015, kv_tokens=450_000, mem_fraction=0.9),
    traffic=None,
    story="a forgotten evaluation server: GPU memory held all week, no compute",
)

BATCH = Deployment(
    name="batch-summarize",
    model=QWEN_32B,
    framework="sglang",
    gpu=A100,
    tp=2,
    # Documents behind one long shared instruction prefix, run with the radix cache off.
    prompt=Tokens(median=11_000, sigma=0.35, low=3000, high=30_000),
    output=Tokens(median=300, sigma=0.35, low=32, high=1024),
    temperature=0.0,
    perf=Perf(prefill_tps=3900, tpot_s=0.026, tpot_per_seq_s=0.0011, kv_tokens=150_000, mem_fraction=0.88),
    traffic=BatchJobs(
        nightly_hour=20.0,
        nightly_requests=5200,
        weekend_requests=2600,
        adhoc_weekdays=(1, 3),
        adhoc_hour=10.5,
        adhoc_requests=700,
        in_flight_per_replica=32,
    ),
    story="bulk nightly summarisation: long, prefix-cacheable prompts, flat out then idle",
)

RAG = Deployment(
    name="internal-rag",
    model=LLAMA_8B,
    framework="vllm",
    gpu=L4,
    tp=1,
    prompt=Tokens(median=1700, sigma=0.45, low=200, high=7000),
    output=Tokens(median=180, sigma=0.55, low=8, high=1024),
    temperature=0.1,
    perf=Perf(prefill_tps=3600, tpot_s=0.056, tpot_per_seq_s=0.0012, kv_tokens=40_000, mem_fraction=0.9),
    traffic=Traffic(shape="workday", peak_rps=0.075),
    slo_ttft_s=3.0,
    story="six replicas where demand needs two at most: over-provisioned, idle at night",
)

SUPPORT = Deployment(
    name="support-bot",
    model=LLAMA_8B,
    framework="vllm",
    gpu=L4,
    tp=1,
    prompt=Tokens(median=1100, sigma=0.5, low=100, high=6000),
    output=Tokens(median=150, sigma=0.55, low=4, high=512),
    temperature=0.3,
    perf=Perf(prefill_tps=3600, tpot_s=0.056, tpot_per_seq_s=0.0015, kv_tokens=40_000, mem_fraction=0.9),
    traffic=Traffic(shape="support", peak_rps=0.1),
    spec=SpecDecode(draft_tokens=3, acceptance=0.55, draft_cost=0.12),
    slo_ttft_s=1.5,
    story="speculative decoding already on, measured acceptance modest",
)

DEPLOYMENTS = (CHAT, ASSISTANT, EVAL, BATCH, RAG, SUPPORT)

H100_1 = Host("h100-node-01", H100, 8)
H100_2 = Host("h100-node-02", H100, 4)
A100_1 = Host("a100-node-01", A100, 4)
L4_1 = Host("l4-node-01", L4, 4)
L4_2 = Host("l4-node-02", L4, 4)
HOSTS = (H100_1, H100_2, A100_1, L4_1, L4_2)

# (deployment, host, GPU indices) per replica, in replica order.
PLACEMENT: tuple[tuple[Deployment, Host, tuple[int, ...]], ...] = (
    (CHAT, H100_1, (0, 1, 2, 3)),
    (CHAT, H100_1, (4, 5, 6, 7)),
    (ASSISTANT, H100_2, (0,)),
    (ASSISTANT, H100_2, (1,)),
    (EVAL, H100_2, (2,)),
    # h100-node-02 GPU 3: nothing loaded.
    (BATCH, A100_1, (0, 1)),
    (BATCH, A100_1, (2, 3)),
    (RAG, L4_1, (0,)),
    (RAG, L4_1, (1,)),
    (RAG, L4_1, (2,)),
    (RAG, L4_1, (3,)),
    (RAG, L4_2, (0,)),
    (RAG, L4_2, (1,)),
    (SUPPORT, L4_2, (2,)),
    (SUPPORT, L4_2, (3,)),
)


def gpu_uuid(seed: int, host: str, index: int) -> str:
    """A stable NVML-style UUID (`GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`)."""
    h = hashlib.sha256(f"inferwatch-demo:{seed}:{host}:{index}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def build_fleet(seed: int) -> Fleet:
    """The demo fleet; GPU UUIDs and process ids depend on `seed` only."""
    replicas: list[Replica] = []
    counts: dict[str, int] = {}
    for n, (deployment, host, indices) in enumerate(PLACEMENT):
        index = counts.get(deployment.name, 0)
        counts[deployment.name] = index + 1
        replicas.append(Replica(deployment, index, host, indices, pid=2000 + 97 * n + seed % 89))
    owner = {(r.host.name, i): r for r in replicas for i in r.gpu_indices}
    gpus = tuple(
        Gpu(host, i, gpu_uuid(seed, host.name, i), owner.get((host.name, i)))
        for host in HOSTS
        for i in range(host.gpu_count)
    )
    by_replica = {r.instance: tuple(g for g in gpus if g.replica == r) for r in replicas}
    return Fleet(HOSTS, DEPLOYMENTS, tuple(replicas), gpus, by_replica)
