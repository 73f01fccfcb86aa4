"""Posting the simulated week to a server's OTLP/HTTP endpoints, as collectors would.

`feed` posts batches gzip-compressed through a small thread pool (the encoding of the next
batches goes on meanwhile), retries what the OTLP spec says to retry (429, 502, 503, 504,
honouring Retry-After), and counts what the server accepted and rejected from its
`partial_success` answers.

`python -m api.demo.feed --url URL --start EPOCH_S --minutes N --seed S` is how
`inferwatch demo` runs it: in a process of its own, so that making the data and ingesting
it do not take turns on one interpreter lock.
"""

from __future__ import annotations

import argparse
import gzip
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


def post_batch(client: httpx.Client, batch: Batch) -> tuple[int, str, int]:
    """Post one batch; (items rejected, the server's reason, compressed bytes)."""
    body = gzip.compress(batch.body, compresslevel=1, mtime=0)
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
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
    on_batch: Callable[[FeedStats, Batch], None] | None = None,
) -> FeedStats:
    """Post every batch through `client` (its base URL the server's); raises FeedError on a
    batch the server refuses. At most `2 × workers` batches wait in memory."""
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
                pending.append((batch, pool.submit(post_batch, client, batch)))
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


SPAN_WEIGHT = 6
"""A span is about six data points' worth of bytes to encode, send and ingest."""


class Progress:
    """A line now and then: rewritten in place on a terminal, every tenth otherwise."""

    def __init__(self, spans: int, points: int, started: float) -> None:
        self.total = max(SPAN_WEIGHT * spans + points, 1)
        self.started = started
        self.tty = sys.stdout.isatty()
        self.shown = -1.0

    def __call__(self, stats: FeedStats, batch: Batch) -> None:
        share = (SPAN_WEIGHT * stats.spans + stats.points) / self.total
        now = time.monotonic()
        if self.tty and now - self.shown < 0.5 and share < 1:
            return
        if not self.tty and int(share * 10) <= int(self.shown * 10) and share < 1:
            return
        self.shown = now if self.tty else share
        simulated = time.strftime("%a %H:%M", time.gmtime(batch.until_s))
        line = (
            f"  {share:4.0%}  {stats.points / 1e6:5.2f} M data points, {stats.spans / 1e3:6.1f} k spans"
            f"  (up to {simulated} UTC, {now - self.started:4.1f} s)"
        )
        say("\r" + line if self.tty else line, end="" if self.tty and share < 1 else "\n")


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
    args = parser.parse_args(argv)
    started = time.monotonic()
    window = Window(args.start, args.minutes)
    week = SimulatedWeek(args.seed, window)
    spans, points = week.span_count(), week.point_count()
    say(
        f"inferwatch demo: simulated {len(week.fleet.gpus)} GPUs and "
        f"{len(week.fleet.deployments)} deployments over {args.minutes / 60:g} h "
        f"({spans:,} requests, {points:,} metric data points) "
        f"in {time.monotonic() - started:.1f} s; feeding them through OTLP/HTTP"
    )
    with httpx.Client(base_url=args.url, timeout=120.0) as client:
        try:
            wait_until_ready(client, 120.0)
            stats = feed(
                client, week.batches(), workers=args.workers, on_batch=Progress(spans, points, started)
            )
        except FeedError as exc:
            say(f"inferwatch demo: feeding failed: {exc}")
            return 1
    elapsed = time.monotonic() - started
    say(
        f"inferwatch demo: fed {stats.spans:,} spans and {stats.points:,} data points in {stats.batches} "
        f"requests ({stats.bytes_sent / 1e6:.0f} MB gzip) in {elapsed:.1f} s"
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
