"""The simulated week as OTLP requests, ready to post.

`SimulatedWeek(seed, window)` simulates every replica and GPU up front (a second or two
for a week), then `batches()` encodes it chunk by chunk as a tier of collectors delivering
what they spooled: each collector's GPU and engine metrics, each replica's spans, one
resource each, packed into requests of at most `max_bytes` (OTLP export requests
concatenate into one, their resources being a repeated field) and `max_items` spans or
data points.

The newest day comes first, then the day before, and so on back to the window's start
(`Batch.day` counts days from the newest): the dashboards look at recent windows, so
they are useful once the first day is in while the older days still load.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

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

BATCH_MAX_BYTES = 15 * 1024 * 1024
"""Under the server's default limit of 16 MiB per request body: the demo posts
uncompressed on loopback, and fewer, larger inserts cost the store less per row."""
BATCH_MAX_ITEMS = 100_000
"""Half the server's default limit on items per request."""
CHUNK_MINUTES = 720
DAY_MINUTES = 1440
SPANS_PER_RESOURCE = 4096
GPU_INTERVAL_S = 60


@dataclass(frozen=True, slots=True)
class Batch:
    """One OTLP/HTTP request: `path` is /v1/metrics or /v1/traces; `body` uncompressed
    protobuf; `items` its data points or spans; `until_s` the simulated time it reaches;
    `day` the day of the window it belongs to, counted from the newest (0)."""

    path: str
    body: bytes
    items: int
    until_s: int
    day: int = 0
    closes_day: bool = False
    """The last batch of its day: once it is answered, the day is in."""


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

    @property
    def days(self) -> int:
        """Days (of 24 hours, from the window's end; the oldest may be shorter) the batches come in."""
        return -(-self.window.minutes // DAY_MINUTES)

    def span_count(self) -> int:
        return sum(len(r) for r in self.requests.values())

    def point_count(self) -> int:
        """Metric data points the whole window holds."""
        series = sum(e.series for e in self.engines.values())
        for reading in self.gpus.values():
            series += sum(getattr(reading, field) is not None for _, _, field, _ in otlp.GPU_METRICS)
            series += reading.process_pid is not None
        return series * self.window.minutes

    # --- encoding --------------------------------------------------------------------------

    def batches(
        self,
        *,
        chunk_minutes: int = CHUNK_MINUTES,
        max_bytes: int = BATCH_MAX_BYTES,
        max_items: int = BATCH_MAX_ITEMS,
    ) -> Iterator[Batch]:
        """Every request to post: the newest day first, then each day before it; within a
        day, oldest simulated time first."""
        previous: Batch | None = None
        for batch in self._batches(chunk_minutes, max_bytes, max_items):
            if previous is not None:
                yield replace(previous, closes_day=batch.day != previous.day)
            previous = batch
        if previous is not None:
            yield replace(previous, closes_day=True)

    def _batches(self, chunk_minutes: int, max_bytes: int, max_items: int) -> Iterator[Batch]:
        for day, first, stop in self.chunks(chunk_minutes):
            rows = slice(first, stop)
            until = self.window.start_s + 60 * rows.stop
            metrics = (piece for host in self.fleet.hosts for piece in self._host_metrics(host, rows))
            yield from _pack("/v1/metrics", metrics, until, day, max_bytes, max_items)
            spans = (piece for replica in self.fleet.replicas for piece in self._replica_spans(replica, rows))
            yield from _pack("/v1/traces", spans, until, day, max_bytes, max_items)

    def chunks(self, chunk_minutes: int = CHUNK_MINUTES) -> Iterator[tuple[int, int, int]]:
        """(day, first minute, end minute) of each chunk of the window, in feeding order.
        Days are counted back from the window's end, so the oldest may be partial."""
        minutes = self.window.minutes
        for day in range(self.days):
            day_stop = minutes - day * DAY_MINUTES
            day_first = max(0, day_stop - DAY_MINUTES)
            for first in range(day_first, day_stop, chunk_minutes):
                yield day, first, min(first + chunk_minutes, day_stop)

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
    path: str, pieces: Iterator[tuple[bytes, int]], until: int, day: int, max_bytes: int, max_items: int
) -> Iterator[Batch]:
    """Concatenate one-resource requests into requests of at most `max_bytes` and `max_items`
    (a single piece over either limit goes alone)."""
    pending: list[bytes] = []
    size = items = 0
    for body, count in pieces:
        if pending and (size + len(body) > max_bytes or items + count > max_items):
            yield Batch(path, b"".join(pending), items, until, day)
            pending, size, items = [], 0, 0
        pending.append(body)
        size += len(body)
        items += count
    if pending:
        yield Batch(path, b"".join(pending), items, until, day)
