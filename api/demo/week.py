"""The simulated week as OTLP requests, ready to post.

`SimulatedWeek(seed, window)` simulates every replica and GPU up front (a second or two
for a week), then `batches()` encodes it chunk by chunk, oldest first, as a tier of
collectors delivering what they spooled: each collector's GPU and engine metrics, each
replica's spans, one resource each, packed into requests of at most `max_bytes` before
compression (OTLP export requests concatenate into one, their resources being a
repeated field) and `max_items` spans or data points.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from api.demo import otlp, wire
from api.demo.fleet import Fleet, Gpu, Host, Replica, build_fleet
from api.demo.gpus import GpuReadings, readings
from api.demo.simulate import (
    ReplicaState,
    Requests,
    Window,
    draw_requests,
    rng_for,
    simulate_replica,
)

BATCH_MAX_BYTES = 4 * 1024 * 1024
"""The collector's default batch limit."""
BATCH_MAX_ITEMS = 100_000
"""Half the server's default limit on items per request."""
CHUNK_MINUTES = 240
SPANS_PER_RESOURCE = 4096
GPU_INTERVAL_S = 60


@dataclass(frozen=True, slots=True)
class Batch:
    """One OTLP/HTTP request: `path` is /v1/metrics or /v1/traces; `body` uncompressed
    protobuf; `items` its data points or spans; `until_s` the simulated time it reaches."""

    path: str
    body: bytes
    items: int
    until_s: int


class SimulatedWeek:
    """A deterministic simulation: the same seed and window give the same bytes."""

    def __init__(self, seed: int, window: Window) -> None:
        self.seed = seed
        self.window = window
        self.fleet: Fleet = build_fleet(seed)
        self.states: dict[str, ReplicaState] = {}
        self.requests: dict[str, Requests] = {}
        for replica in self.fleet.replicas:
            peers = len(self.fleet.replicas_of(replica.deployment))
            state = simulate_replica(replica, peers, window, seed)
            self.states[replica.instance] = state
            self.requests[replica.instance] = draw_requests(replica, state, window, seed)
        idle = ReplicaState.idle(window.minutes)
        self.gpus: dict[str, GpuReadings] = {}
        for n, gpu in enumerate(self.fleet.gpus):
            state = self.states[gpu.replica.instance] if gpu.replica else idle
            energy0 = 10**9 * (3 + n % 5)  # counters are cumulative since the driver loaded
            self.gpus[gpu.uuid] = readings(gpu, state, rng_for(seed, window, "gpu", gpu.uuid), energy0)
        started = (window.start_s - 3 * 3600) * 10**9
        self.engines = {
            r.instance: otlp.EngineSeries(
                r,
                self.states[r.instance],
                self.requests[r.instance],
                rng_for(seed, window, "engine", r.instance),
                started,
            )
            for r in self.fleet.replicas
        }

    # --- sizes, for progress ---------------------------------------------------------------

    def span_count(self) -> int:
        return sum(len(r) for r in self.requests.values())

    def point_count(self) -> int:
        """Metric data points the whole window holds."""
        every = slice(0, self.window.minutes)
        total = 0
        for reading in self.gpus.values():
            for _, _, field, _ in otlp.GPU_METRICS:
                if getattr(reading, field) is not None:
                    total += len(range(*otlp.sampled_rows(field, every).indices(self.window.minutes)))
            if reading.process_pid is not None:
                total += self.window.minutes
        return total + sum(e.series for e in self.engines.values()) * self.window.minutes

    # --- encoding --------------------------------------------------------------------------

    def batches(
        self,
        *,
        chunk_minutes: int = CHUNK_MINUTES,
        max_bytes: int = BATCH_MAX_BYTES,
        max_items: int = BATCH_MAX_ITEMS,
    ) -> Iterator[Batch]:
        """Every request to post, oldest simulated time first."""
        minutes = self.window.minutes
        for first in range(0, minutes, chunk_minutes):
            rows = slice(first, min(first + chunk_minutes, minutes))
            until = self.window.start_s + 60 * rows.stop
            metrics = (piece for host in self.fleet.hosts for piece in self._host_metrics(host, rows))
            yield from _pack("/v1/metrics", metrics, until, max_bytes, max_items)
            spans = (piece for replica in self.fleet.replicas for piece in self._replica_spans(replica, rows))
            yield from _pack("/v1/traces", spans, until, max_bytes, max_items)

    def _collectors(self, host: Host) -> list[tuple[Replica | None, tuple[Gpu, ...]]]:
        """A collector beside each replica on the host, and one for GPUs no replica uses."""
        out: list[tuple[Replica | None, tuple[Gpu, ...]]] = [
            (r, self.fleet.gpus_of(r)) for r in self.fleet.replicas if r.host == host
        ]
        spare = tuple(g for g in self.fleet.gpus_on(host) if g.replica is None)
        if spare:
            out.append((None, spare))
        return out

    def _host_metrics(self, host: Host, rows: slice) -> Iterator[tuple[bytes, int]]:
        """(a one-resource ExportMetricsServiceRequest, its data points) per collector on the host."""
        offset_s = 7 + 3 * self.fleet.hosts.index(host)  # collectors do not tick on the minute
        times = (self.window.minute_starts() + offset_s) * 10**9
        for replica, gpus in self._collectors(host):
            metrics, count = otlp.gpu_metrics(gpus, self.gpus, times, rows)
            if replica is not None:
                engine = self.engines[replica.instance]
                metrics += engine.metrics(times + 2 * 10**9, rows)
                count += engine.series * (rows.stop - rows.start)
            resource = wire.resource_metrics(
                otlp.collector_resource(host, replica, gpus), otlp.COLLECTOR_SCOPE, metrics
            )
            yield wire.metrics_request([resource]), count

    def _replica_spans(self, replica: Replica, rows: slice) -> Iterator[tuple[bytes, int]]:
        """(a one-resource ExportTraceServiceRequest, its spans) for the replica's requests
        that arrived in `rows`."""
        requests = self.requests[replica.instance]
        lo, hi = (int(i) for i in np.searchsorted(requests.minute, [rows.start, rows.stop]))
        if hi <= lo:
            return
        ids = rng_for(self.seed, self.window, "ids", replica.instance, rows.start).bytes(24 * (hi - lo))
        resource = otlp.engine_resource(replica, self.fleet.gpus_of(replica))
        scope = otlp.span_scope(replica)
        for start in range(lo, hi, SPANS_PER_RESOURCE):
            stop = min(start + SPANS_PER_RESOURCE, hi)
            spans = otlp.request_spans(
                replica, requests, slice(start, stop), ids[24 * (start - lo) : 24 * (stop - lo)]
            )
            yield wire.traces_request(resource, scope, spans), len(spans)


def _pack(
    path: str, pieces: Iterator[tuple[bytes, int]], until: int, max_bytes: int, max_items: int
) -> Iterator[Batch]:
    """Concatenate one-resource requests into requests of at most `max_bytes` and `max_items`
    (a single piece over either limit goes alone)."""
    pending: list[bytes] = []
    size = items = 0
    for body, count in pieces:
        if pending and (size + len(body) > max_bytes or items + count > max_items):
            yield Batch(path, b"".join(pending), items, until)
            pending, size, items = [], 0, 0
        pending.append(body)
        size += len(body)
        items += count
    if pending:
        yield Batch(path, b"".join(pending), items, until)
