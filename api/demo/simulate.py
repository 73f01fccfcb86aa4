"""Minute-by-minute simulation of one replica, and the requests it served.

The model is deliberately small, but every number the dashboards show follows from it:

- open-loop traffic arrives at `peak_rps × shape(t)` (with slow noise), split evenly
  over the replicas;
- decode runs batched: with `b` sequences in the batch a step takes
  `tpot_s + tpot_per_seq_s × b`, and `b` follows from Little's law;
- prefill is compute-bound and queues (Pollaczek–Khinchine for an M/G/1 server, so a heavy
  tail of long prompts makes waits long before the GPU is full; a fluid backlog once
  arrivals pass capacity); prefill chunks slow the decode steps they share a batch with;
- the KV cache holds the in-flight sequences' tokens; past 90 % the engine preempts;
- bulk jobs are closed-loop: a client keeps a fixed number of requests outstanding, so
  the replica runs flat out until the job is done.

Each request then gets its own prompt and output lengths and timings drawn around its
minute's state: prefill ∝ prompt tokens, decode ∝ output tokens × the minute's time per
token, TTFT = queue + prefill, e2e = TTFT + decode + a few milliseconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.demo import load
from api.demo.fleet import BatchJobs, Deployment, Replica, Tokens, Traffic

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WARMUP_MINUTES = 1440
"""Simulated before the window and dropped, so backlogs and running jobs carry in."""

FINISH_STOP, FINISH_LENGTH, FINISH_ABORT = 0, 1, 2
FINISH_REASONS = ("stop", "length", "abort")
ABORT_SHARE = 0.002


@dataclass(frozen=True, slots=True)
class Window:
    """The simulated span of time: `minutes` whole minutes from `start_s` (epoch seconds)."""

    start_s: int
    minutes: int

    def __post_init__(self) -> None:
        if self.start_s % 60:
            raise ValueError("the window must start on a whole minute")
        if self.minutes < 1:
            raise ValueError("the window must hold at least one minute")

    @property
    def end_s(self) -> int:
        return self.start_s + 60 * self.minutes

    def minute_starts(self) -> IntArray:
        return self.start_s + 60 * np.arange(self.minutes, dtype=np.int64)


@dataclass(slots=True)
class ReplicaState:
    """One replica's state in each minute of the window (arrays of `window.minutes`)."""

    arrivals_rps: FloatArray
    running: FloatArray
    """Mean sequences in the running batch (decoding or prefilling)."""
    waiting: FloatArray
    """Mean requests queued in the engine."""
    queue_s: FloatArray
    """Mean queue wait of a request arriving in the minute."""
    wait_share: FloatArray
    """Share of requests that wait at all."""
    prefill_busy: FloatArray
    """Share of the minute spent prefilling (0..1)."""
    active: FloatArray
    """Share of the minute with at least one request in flight (0..1)."""
    batch: FloatArray
    """Mean sequences decoding together."""
    tpot_s: FloatArray
    """Seconds per output token."""
    prefill_slowdown: FloatArray
    kv_usage: FloatArray
    preemptions: FloatArray
    """Expected preemptions in the minute."""

    @classmethod
    def idle(cls, minutes: int) -> ReplicaState:
        z = np.zeros(minutes)
        return cls(z, z, z, z, z, z, z, z, z.copy(), np.ones(minutes), z, z)


@dataclass(slots=True)
class Requests:
    """One replica's requests in the window, sorted by arrival (arrays of equal length)."""

    arrival_ns: IntArray
    minute: IntArray
    """Index in the window of the minute each request arrived in."""
    prompt_tokens: IntArray
    output_tokens: IntArray
    queue_s: FloatArray
    prefill_s: FloatArray
    decode_s: FloatArray
    ttft_s: FloatArray
    e2e_s: FloatArray
    finish: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.arrival_ns)

    @classmethod
    def empty(cls) -> Requests:
        i = np.zeros(0, dtype=np.int64)
        f = np.zeros(0)
        return cls(i, i, i, i, f, f, f, f, f, np.zeros(0, dtype=np.int8))


def stable_int(*parts: object) -> int:
    """A seed component that does not change between Python runs (unlike `hash`)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(seed: int, window: Window, *parts: object) -> np.random.Generator:
    return np.random.default_rng([seed, window.start_s // 60, window.minutes, stable_int(*parts)])


@dataclass(frozen=True, slots=True)
class Moments:
    prompt: float
    prompt_sq: float
    output: float
    seq_tokens: float
    """Mean tokens a sequence holds in the KV cache over its life."""


def draw_tokens(rng: np.random.Generator, tokens: Tokens, n: int) -> IntArray:
    values = rng.lognormal(np.log(tokens.median), tokens.sigma, n)
    return np.clip(np.rint(values), tokens.low, tokens.high).astype(np.int64)


def moments(deployment: Deployment) -> Moments:
    rng = np.random.default_rng(stable_int("moments", deployment.name))
    p = draw_tokens(rng, deployment.prompt, 100_000).astype(np.float64)
    o = draw_tokens(rng, deployment.output, 100_000).astype(np.float64)
    return Moments(float(p.mean()), float((p * p).mean()), float(o.mean()), float(p.mean() + o.mean() / 2))


def spec_step_tokens(deployment: Deployment) -> float:
    """Mean tokens a decode step yields: 1 without speculation, (1 − α^(γ+1)) / (1 − α) with."""
    spec = deployment.spec
    if spec is None:
        return 1.0
    a, g = spec.acceptance, spec.draft_tokens
    return float((1 - a ** (g + 1)) / (1 - a))


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float, keep: float = 0.97) -> FloatArray:
    """Slowly wandering multiplicative noise around 1 (an AR(1) in log space)."""
    shocks = rng.normal(0.0, sigma * np.sqrt(1 - keep * keep), n)
    out = np.empty(n)
    x = 0.0
    for i in range(n):
        x = keep * x + shocks[i]
        out[i] = x
    return np.asarray(np.exp(out))


def _decode_tpot(deployment: Deployment, batch: FloatArray, prefill_load: FloatArray) -> FloatArray:
    perf = deployment.perf
    tpot = (perf.tpot_s + perf.tpot_per_seq_s * batch) * (1 + 0.6 * np.minimum(prefill_load, 1.0))
    if deployment.spec is not None:
        # Each step also runs the draft and verifies γ tokens per sequence; verification
        # grows with the batch, which is why speculation stops paying under load.
        spec = deployment.spec
        step = 1 + spec.draft_tokens * spec.draft_cost + 0.06 * batch
        tpot = tpot * step / spec_step_tokens(deployment)
    return np.asarray(tpot)


def _open_loop(deployment: Deployment, lam: FloatArray, m: Moments) -> ReplicaState:
    perf = deployment.perf
    x = lam * m.output
    batch = x * perf.tpot_s / np.maximum(1 - x * perf.tpot_per_seq_s, 0.05)
    slowdown = 1 + 0.5 * np.minimum(batch / 16, 1.0)
    service = m.prompt / perf.prefill_tps * slowdown
    service_sq = m.prompt_sq / perf.prefill_tps**2 * slowdown**2
    load_ = lam * service
    capacity = 0.95 / service
    backlog = np.empty(len(lam))
    q = 0.0
    for i in range(len(lam)):
        backlog[i] = q
        q = max(0.0, q + (lam[i] - capacity[i]) * 60)
    rho = np.minimum(load_, 0.95)
    queue = lam * service_sq / (2 * (1 - rho)) + backlog / capacity
    wait_share = np.where(backlog > 0, 1.0, rho)
    tpot = _decode_tpot(deployment, batch, rho)
    in_flight = batch + lam * service
    kv = in_flight * m.seq_tokens / perf.kv_tokens
    preemptions = np.where(kv > 0.9, lam * 60 * (kv - 0.9) * 2.0, 0.0)
    e2e = queue + service + m.output * tpot
    active = np.where(backlog > 0, 1.0, 1 - np.exp(-lam * e2e))
    return ReplicaState(
        arrivals_rps=lam,
        running=in_flight,
        waiting=lam * queue,
        queue_s=queue,
        wait_share=wait_share,
        prefill_busy=rho,
        active=active,
        batch=batch,
        tpot_s=tpot,
        prefill_slowdown=slowdown,
        kv_usage=np.minimum(kv, 0.985),
        preemptions=preemptions,
    )


def batch_jobs(jobs: BatchJobs, window: Window, seed: int, name: str) -> list[tuple[int, int]]:
    """(start epoch second, requests) of every job that starts in the window or its warm-up."""
    first_day = (window.start_s - 60 * WARMUP_MINUTES) // 86_400
    last_day = window.end_s // 86_400
    out = []
    for day in range(first_day, last_day + 1):
        rng = np.random.default_rng([seed, stable_int("jobs", name), day])
        midnight = day * 86_400
        weekend = bool(load.is_weekend(np.array([float(midnight)]))[0])
        size = jobs.weekend_requests if weekend else jobs.nightly_requests
        start = midnight + int((jobs.nightly_hour + rng.uniform(-0.15, 0.3)) * 3600)
        out.append((start, int(size * rng.uniform(0.85, 1.15))))
        if not weekend and int(load.weekday(np.array([float(midnight)]))[0]) in jobs.adhoc_weekdays:
            start = midnight + int((jobs.adhoc_hour + rng.uniform(-0.5, 0.5)) * 3600)
            out.append((start, int(jobs.adhoc_requests * rng.uniform(0.7, 1.3))))
    return sorted(out)


def _closed_loop(
    deployment: Deployment,
    jobs: BatchJobs,
    replicas: int,
    starts: IntArray,
    job_list: list[tuple[int, int]],
    m: Moments,
) -> ReplicaState:
    perf = deployment.perf
    n = len(starts)
    fits = max(1, int(perf.kv_tokens * 0.92 / m.seq_tokens))
    batch = float(min(jobs.in_flight_per_replica, fits))
    slowdown = 1 + 0.5 * min(batch / 16, 1.0)
    service = m.prompt / perf.prefill_tps * slowdown
    tpot = float(_decode_tpot(deployment, np.array([batch]), np.array([1.0]))[0])
    throughput = min(1 / service, batch / (service + m.output * tpot))  # requests per second
    added = np.zeros(n)
    for start, size in job_list:
        i = int((start - starts[0]) // 60)
        if 0 <= i < n:
            added[i] += size / replicas
    done = np.zeros(n)
    remaining = 0.0
    for i in range(n):
        remaining += added[i]
        done[i] = min(remaining, throughput * 60)
        remaining -= done[i]
    share = done / (throughput * 60)
    outstanding = np.minimum(jobs.in_flight_per_replica, share * jobs.in_flight_per_replica)
    waiting = np.maximum(outstanding - batch * share, 0.0)
    queue = np.where(share > 0, waiting / throughput / np.maximum(share, 1e-9), 0.0)
    return ReplicaState(
        arrivals_rps=done / 60,
        running=batch * share,
        waiting=waiting,
        queue_s=queue,
        wait_share=np.where(share > 0, 0.97, 0.0),
        prefill_busy=np.minimum(done / 60 * service, 1.0),
        active=share,
        batch=np.full(n, batch) * (share > 0),
        tpot_s=np.full(n, tpot),
        prefill_slowdown=np.full(n, slowdown),
        kv_usage=np.minimum(batch * m.seq_tokens / perf.kv_tokens, 0.985) * share,
        preemptions=np.zeros(n),
    )


def simulate_replica(replica: Replica, replicas: int, window: Window, seed: int) -> ReplicaState:
    """The replica's state in each minute of `window` (`replicas`: how many share the load)."""
    deployment = replica.deployment
    traffic = deployment.traffic
    if traffic is None:
        return ReplicaState.idle(window.minutes)
    total = window.minutes + WARMUP_MINUTES
    starts = window.start_s - 60 * WARMUP_MINUTES + 60 * np.arange(total, dtype=np.int64)
    m = moments(deployment)
    if isinstance(traffic, Traffic):
        shared = _smooth_noise(rng_for(seed, window, "traffic", deployment.name), total, 0.18)
        own = _smooth_noise(rng_for(seed, window, "share", replica.instance), total, 0.06)
        demand = load.shape(traffic.shape, starts.astype(np.float64) + 30.0)  # mid-minute
        lam = traffic.peak_rps * demand * shared * own / replicas
        state = _open_loop(deployment, lam, m)
    else:
        assert isinstance(traffic, BatchJobs)
        state = _closed_loop(
            deployment, traffic, replicas, starts, batch_jobs(traffic, window, seed, deployment.name), m
        )
    keep = slice(WARMUP_MINUTES, None)
    return ReplicaState(*(np.ascontiguousarray(getattr(state, f)[keep]) for f in ReplicaState.__slots__))


def draw_requests(replica: Replica, state: ReplicaState, window: Window, seed: int) -> Requests:
    """The requests the replica served, drawn around each minute's state."""
    deployment = replica.deployment
    if deployment.traffic is None:
        return Requests.empty()
    rng = rng_for(seed, window, "requests", replica.instance)
    if isinstance(deployment.traffic, BatchJobs):
        # Closed loop: completions per minute are what the replica could do; round randomly.
        expected = state.arrivals_rps * 60
        counts = np.floor(expected + rng.random(len(expected))).astype(np.int64)
    else:
        counts = rng.poisson(state.arrivals_rps * 60)
    n = int(counts.sum())
    if n == 0:
        return Requests.empty()
    minute = np.repeat(np.arange(window.minutes, dtype=np.int64), counts)
    arrival_s = window.start_s + 60 * minute + rng.random(n) * 60
    order = np.argsort(arrival_s, kind="stable")
    minute, arrival_s = minute[order], arrival_s[order]
    prompt = draw_tokens(rng, deployment.prompt, n)
    output = draw_tokens(rng, deployment.output, n)
    finish = np.where(output >= deployment.output.high, FINISH_LENGTH, FINISH_STOP).astype(np.int8)
    aborted = rng.random(n) < ABORT_SHARE
    output = np.where(aborted, np.maximum(1, output // 3), output)
    finish[aborted] = FINISH_ABORT
    perf = deployment.perf
    prefill = prompt / perf.prefill_tps * state.prefill_slowdown[minute] * rng.lognormal(0, 0.06, n)
    share = state.wait_share[minute]
    waits = rng.random(n) < share
    mean_wait = state.queue_s[minute] / np.maximum(share, 1e-3)
    queue = np.where(waits, rng.exponential(1.0, n) * mean_wait, 0.0) + rng.uniform(0.001, 0.006, n)
    tpot = state.tpot_s[minute] * rng.lognormal(0, 0.07, n)
    prefill = prefill + tpot  # the step that yields the first token
    decode = (output - 1) * tpot
    ttft = queue + prefill
    e2e = ttft + decode + rng.uniform(0.002, 0.012, n)
    return Requests(
        arrival_ns=np.rint(arrival_s * 1e9).astype(np.int64),
        minute=minute,
        prompt_tokens=prompt,
        output_tokens=output,
        queue_s=queue,
        prefill_s=prefill,
        decode_s=decode,
        ttft_s=ttft,
        e2e_s=e2e,
        finish=finish,
    )
