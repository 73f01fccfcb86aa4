"""Sending webhook bodies: signed, retried like the OTLP exporter (only on 429 and 5xx, or
when the network fails; honouring Retry-After; exponential backoff with jitter), within an
overall deadline, with waits a shutdown cuts short. `Deliverer` runs deliveries on its own
daemon threads and records each in the delivery log, so a slow or hanging receiver holds
one of its workers, never the scheduler, and never the process at exit.

httpx's timeouts bound each socket operation, not a request: a receiver that trickles its
answer a byte at a time would hold a worker for as long as it likes. `webhook_client()`
therefore gives its connections a network layer that bounds every connect, read and write by
the attempt's wall-clock deadline (`attempt_deadline`), which `post_signed` sets to the
smaller of the per-attempt timeout and what is left of the overall deadline."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpcore
import httpx

from api import __version__
from api.alerts.payloads import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from api.alerts.settings import NotifySettings

log = logging.getLogger(__name__)

Result = Literal["delivered", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_s: float = 10.0
    deadline_s: float = 120.0
    max_attempts: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @classmethod
    def from_settings(cls, notify: NotifySettings) -> RetryPolicy:
        return cls(
            notify.webhook_timeout_s,
            notify.webhook_deadline_s,
            notify.webhook_max_attempts,
            notify.webhook_backoff_s,
            notify.webhook_max_backoff_s,
        )

    def backoff(self, retry: int) -> float:
        """Wait before retry number `retry` (1-based): half fixed, half random, doubling."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1))
        return base / 2 + random.uniform(0, base / 2)


@dataclass(slots=True)
class Outcome:
    result: Result
    attempts: int
    response_status: int | None = None
    error: str = ""
    duration_ms: float = 0.0
    waits_s: list[float] = field(default_factory=list)


def retryable(status: int) -> bool:
    """429 and every 5xx; no other 4xx (the request itself is wrong and stays wrong)."""
    return status == 429 or 500 <= status <= 599


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


_attempt = threading.local()  # .deadline: time.monotonic() by which the attempt must be over


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Bound every socket operation of a `webhook_client()` request made in this thread, in
    total, to `seconds` from now."""
    previous = getattr(_attempt, "deadline", None)
    _attempt.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _attempt.deadline = previous


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the attempt's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network layer with every operation bounded by `attempt_deadline`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def webhook_client() -> httpx.Client:
    """The client webhooks are sent with: no redirects, our User-Agent, and connections (direct
    or through a proxy from the environment) whose reads and writes `attempt_deadline` bounds."""
    client = httpx.Client(follow_redirects=False, headers={"User-Agent": f"inferwatch/{__version__}"})
    for transport in [client._transport, *client._mounts.values()]:  # noqa: SLF001
        pool = getattr(transport, "_pool", None)
        if transport is not None and not hasattr(pool, "_network_backend"):
            client.close()
            raise RuntimeError("httpx/httpcore changed: cannot bound webhook requests by a deadline")
        if pool is not None:
            pool._network_backend = _DeadlineBackend(pool._network_backend)  # noqa: SLF001
    return client


def post_signed(
    client: httpx.Client,
    url: str,
    body: bytes,
    secret: str,
    policy: RetryPolicy,
    stop: threading.Event,
    *,
    headers: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """POST `body` to `url` until it is accepted (2xx), refused for good, out of attempts or
    deadline, or `stop` is set. Each attempt is signed afresh with its own timestamp. With a
    `webhook_client()`, an attempt ends within its timeout (or the overall deadline) however
    slowly the receiver answers; other clients bound each read only."""
    started = clock()
    out = Outcome("failed", 0)
    while True:
        out.attempts += 1
        remaining = policy.deadline_s - (clock() - started)
        timestamp = int(time.time())
        sent = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            **(headers or {}),
        }
        wait: float | None = None
        budget = max(0.1, min(policy.timeout_s, remaining))
        try:
            with attempt_deadline(budget):
                response = client.post(url, content=body, headers=sent, timeout=budget)
        except httpx.HTTPError as exc:
            out.response_status, out.error = None, f"{type(exc).__name__}: {exc}"[:500]
        else:
            out.response_status = response.status_code
            if 200 <= response.status_code < 300:
                out.result, out.error = "delivered", ""
                break
            out.error = f"HTTP {response.status_code}: {response.text[:300]}"
            if not retryable(response.status_code):
                break
            wait = retry_after_s(response.headers.get("Retry-After"))
        if out.attempts >= policy.max_attempts:
            out.error = f"gave up after {out.attempts} attempts; last: {out.error}"
            break
        if wait is None:
            wait = policy.backoff(out.attempts)
        if clock() - started + wait >= policy.deadline_s:
            out.error = (
                f"gave up: the next attempt (in {wait:.1f} s) would pass the "
                f"{policy.deadline_s:g} s deadline; last: {out.error}"
            )
            break
        out.waits_s.append(wait)
        if stop.wait(wait):
            out.result, out.error = (
                "cancelled",
                f"the server shut down before attempt {out.attempts + 1}; last: {out.error}",
            )
            break
    out.duration_ms = (clock() - started) * 1000
    return out


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery: a body for one webhook, already recorded as pending under `delivery_id`."""

    delivery_id: int
    url: str
    secret: str
    body: bytes
    event: str


Recorder = Callable[[Job, Outcome], None]


class Deliverer:
    """Runs deliveries on `workers` daemon threads from a bounded queue.

    `record` is called with each finished delivery (the delivery log). `close()` sets the
    stop event — retry waits end at once, as cancelled — and gives workers `grace_s` to
    finish the attempt in flight; a worker stuck on a hanging receiver is abandoned (it is
    a daemon thread, so it cannot hold the process at exit).
    """

    def __init__(
        self, policy: RetryPolicy, record: Recorder, *, workers: int = 4, queue_size: int = 1000
    ) -> None:
        self.policy = policy
        self._record = record
        self._stop = threading.Event()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._client = webhook_client()
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def _ensure_started(self) -> None:
        # Workers start with the first delivery, not with the app: most processes never send one.
        with self._start_lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._work, name=f"inferwatch-webhook-{i}", daemon=True)
                    for i in range(self._workers)
                ]
                for thread in self._threads:
                    thread.start()

    def submit(self, job: Job) -> bool:
        """Queue a delivery; False (and recorded as failed) when the queue is full or closed."""
        if self._stop.is_set():
            self._record(job, Outcome("cancelled", 0, error="the server is shutting down"))
            return False
        self._ensure_started()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("webhook queue full; delivery %s dropped", job.delivery_id)
            self._record(job, Outcome("failed", 0, error="dropped: too many deliveries waiting"))
            return False
        return True

    def send_now(self, job: Job, policy: RetryPolicy | None = None) -> Outcome:
        """Deliver in the calling thread (the settings page's test-send) and record it."""
        outcome = self._send(job, policy or self.policy)
        self._record(job, outcome)
        return outcome

    def _send(self, job: Job, policy: RetryPolicy) -> Outcome:
        headers = {EVENT_HEADER: job.event, DELIVERY_HEADER: str(job.delivery_id)}
        return post_signed(self._client, job.url, job.body, job.secret, policy, self._stop, headers=headers)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                outcome = self._send(job, self.policy)
            except Exception as exc:  # a bug must not kill the worker
                log.exception("webhook delivery %s failed unexpectedly", job.delivery_id)
                outcome = Outcome("failed", 1, error=f"internal error: {exc}")
            try:
                self._record(job, outcome)
            except Exception:
                log.exception("could not record webhook delivery %s", job.delivery_id)
            finally:
                self._queue.task_done()

    def join(self, timeout_s: float) -> bool:
        """Wait until every queued delivery finished (tests, CLI); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        while True:  # what never started is cancelled, and recorded so
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._record(job, Outcome("cancelled", 0, error="the server shut down before sending"))
            self._queue.task_done()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._client.close()
