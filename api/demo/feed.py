"""Posting the simulated week to a server's OTLP/HTTP endpoints, as collectors would.

`feed` posts batches through a small thread pool (the encoding of the next batches goes
on meanwhile), uncompressed unless asked (on loopback gzip costs the server more to undo
than it saves), retries what the OTLP spec says to retry (429, 502, 503, 504, honouring
Retry-After), and counts what the server accepted and rejected from its `partial_success`
answers.

`python -m api.demo.feed --url URL --start EPOCH_S --minutes N --seed S [--status-fd FD]`
is how `inferwatch demo` runs it: in a process of its own, so that making the data and
ingesting it do not take turns on one interpreter lock. The newest day is fed first; each
time a day is in, the process prints a line and, with `--status-fd`, writes `days N` (N
days are in) on that file descriptor, after which the parent may tell people the URL.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from api.demo.simulate import Window
from api.demo.week import Batch, SimulatedWeek

RETRYABLE = frozenset({429, 502, 503, 504})
ATTEMPTS = 6
REJECTED_SOME = 3
"""Exit status when the server rejected some items (the rest is stored)."""


class FeedError(Exception):
    """The server refused a batch for good, or stayed unavailable."""


@dataclass(slots=True)
class FeedStats:
    batches: int = 0
    spans: int = 0
    points: int = 0
    rejected: int = 0
    bytes_sent: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def items(self) -> int:
        return self.spans + self.points


def post_batch(client: httpx.Client, batch: Batch, *, compress: bool = False) -> tuple[int, str, int]:
    """Post one batch, gzip-compressed if `compress`; (items rejected, the server's reason,
    bytes sent)."""
    headers = {"Content-Type": "application/x-protobuf"}
    body = batch.body
    if compress:
        body = gzip.compress(body, compresslevel=1, mtime=0)
        headers["Content-Encoding"] = "gzip"
    delay = 0.5
    for attempt in range(ATTEMPTS):
        try:
            reply = client.post(batch.path, content=body, headers=headers)
        except httpx.TransportError as exc:
            if attempt == ATTEMPTS - 1:
                raise FeedError(f"cannot reach the server: {exc}") from exc
            time.sleep(delay)
            delay *= 2
            continue
        if reply.status_code == 200:
            rejected, reason = _partial_success(batch.path, reply.content)
            return rejected, reason, len(body)
        if reply.status_code not in RETRYABLE or attempt == ATTEMPTS - 1:
            raise FeedError(f"POST {batch.path} answered {reply.status_code}: {reply.text[:300]}")
        retry_after = reply.headers.get("retry-after", "")
        time.sleep(float(retry_after) if retry_after.isdigit() else delay)
        delay *= 2
    raise AssertionError("unreachable")


def _partial_success(path: str, content: bytes) -> tuple[int, str]:
    if path == "/v1/traces":
        traces = ExportTraceServiceResponse.FromString(content)
        return traces.partial_success.rejected_spans, traces.partial_success.error_message
    metrics = ExportMetricsServiceResponse.FromString(content)
    return metrics.partial_success.rejected_data_points, metrics.partial_success.error_message


def feed(
    client: httpx.Client,
    batches: Iterable[Batch],
    *,
    workers: int = 3,
    compress: bool = False,
    on_batch: Callable[[FeedStats, Batch], None] | None = None,
) -> FeedStats:
    """Post every batch through `client` (its base URL the server's); raises FeedError on a
    batch the server refuses. At most `2 × workers` batches wait in memory. `on_batch` is
    called as each batch is answered, in the order of `batches`."""
    stats = FeedStats()

    def settle(batch: Batch, done: Future[tuple[int, str, int]]) -> None:
        rejected, reason, sent = done.result()
        stats.batches += 1
        stats.bytes_sent += sent
        if batch.path == "/v1/traces":
            stats.spans += batch.items
        else:
            stats.points += batch.items
        if rejected:
            stats.rejected += rejected
            if len(stats.reasons) < 10:
                stats.reasons.append(reason)
        if on_batch is not None:
            on_batch(stats, batch)

    with ThreadPoolExecutor(workers, thread_name_prefix="demo-feed") as pool:
        pending: deque[tuple[Batch, Future[tuple[int, str, int]]]] = deque()
        try:
            for batch in batches:
                pending.append((batch, pool.submit(post_batch, client, batch, compress=compress)))
                while len(pending) >= 2 * workers:
                    settle(*pending.popleft())
            while pending:
                settle(*pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()
    return stats


# --- the feeding process -------------------------------------------------------------------


def say(text: str, *, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


class DayReporter:
    """Says when each day is in: a line on stdout, then `days N` on the status file
    descriptor (if any). Batches come day by day and are answered in order, so once the
    batch that closes a day is answered, every batch of that day is in."""

    def __init__(self, week: SimulatedWeek, started: float, status_fd: int | None) -> None:
        self.week = week
        self.started = started
        self.status_fd = status_fd
        self.days_in = 0

    def __call__(self, stats: FeedStats, batch: Batch) -> None:
        if batch.closes_day:
            self.day_done(stats)

    def day_done(self, stats: FeedStats) -> None:
        day = self.days_in
        window = self.week.window
        end = window.end_s - 86_400 * day
        start = max(window.start_s, end - 86_400)
        span = f"{_when(start)} – {_when(end)} UTC"
        say(
            f"  day {day + 1} of {self.week.days} in ({span}): {stats.points / 1e6:.2f} M data points "
            f"and {stats.spans / 1e3:.1f} k spans so far, {time.monotonic() - self.started:.1f} s"
        )
        self.days_in += 1
        self.tell(f"days {self.days_in}")

    def finish(self, stats: FeedStats) -> None:
        while self.days_in < self.week.days:
            self.day_done(stats)

    def tell(self, line: str) -> None:
        if self.status_fd is not None:
            os.write(self.status_fd, (line + "\n").encode())


def _when(epoch_s: int) -> str:
    return time.strftime("%a %d %b %H:%M", time.gmtime(epoch_s))


def wait_until_ready(client: httpx.Client, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise FeedError(f"the server did not answer /healthz within {deadline_s:.0f} s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.demo.feed", description="Feed a simulated week of a GPU fleet to a server."
    )
    parser.add_argument("--url", required=True, help="the server's base URL")
    parser.add_argument("--start", type=int, required=True, help="first simulated minute, epoch seconds")
    parser.add_argument("--minutes", type=int, required=True, help="minutes to simulate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=3, help="batches posted at once")
    parser.add_argument(
        "--gzip", action="store_true", help="compress the requests (not worth it on loopback)"
    )
    parser.add_argument(
        "--status-fd", type=int, help="file descriptor to write `days N` on as each day is in"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    window = Window(args.start, args.minutes)
    week = SimulatedWeek(args.seed, window)
    spans, points = week.span_count(), week.point_count()
    say(
        f"inferwatch demo: simulated {len(week.fleet.gpus)} GPUs and "
        f"{len(week.fleet.deployments)} deployments over {args.minutes / 60:g} h "
        f"({spans:,} requests, {points:,} metric data points) "
        f"in {time.monotonic() - started:.1f} s; feeding them through OTLP/HTTP, newest day first"
    )
    days = DayReporter(week, started, args.status_fd)
    with httpx.Client(base_url=args.url, timeout=120.0) as client:
        try:
            wait_until_ready(client, 120.0)
            stats = feed(client, week.batches(), workers=args.workers, compress=args.gzip, on_batch=days)
        except FeedError as exc:
            say(f"inferwatch demo: feeding failed: {exc}")
            return 1
    days.finish(stats)
    elapsed = time.monotonic() - started
    say(
        f"inferwatch demo: fed {stats.spans:,} spans and {stats.points:,} data points in {stats.batches} "
        f"requests ({stats.bytes_sent / 1e6:.0f} MB{' gzip' if args.gzip else ''}) in {elapsed:.1f} s"
    )
    if stats.rejected:
        say(f"inferwatch demo: the server rejected {stats.rejected} items: " + "; ".join(stats.reasons))
        return REJECTED_SOME
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent says so
        raise SystemExit(130) from None
