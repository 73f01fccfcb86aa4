"""A webhook receiver that trickles its answer a byte at a time must not hold a delivery past
its timeout: httpx's timeout is per read, so every byte would restart it. With the client the
deliverer uses, an attempt ends within its timeout (or the overall deadline) plus a little, and
a delivery to a well-behaved receiver queued behind it goes out at once after."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.alerts.delivery import Deliverer, Job, Outcome, RetryPolicy, post_signed, webhook_client
from tests.faults.webhooks import GoodReceiver, RawServer

SLACK_S = 0.75  # a loaded 2-core machine; a trickle unbounded runs for TRICKLE_S
BYTE_EVERY_S = 0.1
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\nok"
TRICKLE_S = len(ANSWER) * BYTE_EVERY_S  # ~6.6 s for the whole answer


def trickle(conn: socket.socket) -> None:
    """Read the request, then answer one byte every 0.1 s: each read succeeds well within any
    per-read timeout, and the answer takes TRICKLE_S in all."""
    try:
        conn.recv(65536)
        for i in range(len(ANSWER)):
            conn.sendall(ANSWER[i : i + 1])
            time.sleep(BYTE_EVERY_S)
    except OSError:
        pass
    finally:
        conn.close()


@pytest.fixture
def trickler() -> Iterator[RawServer]:
    server = RawServer(trickle)
    try:
        yield server
    finally:
        server.close()


def timed_send(client: httpx.Client, url: str, policy: RetryPolicy) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = post_signed(client, url, b"{}", "whsec_x", policy, threading.Event())
    return outcome, time.monotonic() - started


def test_the_trickle_really_outlasts_a_per_read_timeout_with_a_plain_client(trickler: RawServer) -> None:
    # The control: a plain httpx client with a 1 s timeout waits for the whole trickled answer.
    with httpx.Client() as plain:
        outcome, took = timed_send(plain, trickler.url, RetryPolicy(timeout_s=1.0, max_attempts=1))
    assert outcome.result == "delivered" and took >= TRICKLE_S - 0.5


def test_an_attempt_ends_within_its_timeout_however_slowly_the_receiver_answers(trickler: RawServer) -> None:
    with webhook_client() as client:
        outcome, took = timed_send(client, trickler.url, RetryPolicy(timeout_s=1.0, max_attempts=1))
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("failed", 1, None)
    assert "ReadTimeout" in outcome.error
    assert 1.0 <= took < 1.0 + SLACK_S


def test_the_overall_deadline_bounds_an_attempt_too(trickler: RawServer) -> None:
    # 5 s per attempt, but 1.5 s in all: the first attempt is cut at 1.5 s, and no second one.
    policy = RetryPolicy(timeout_s=5.0, deadline_s=1.5, max_attempts=3, backoff_s=0.01)
    with webhook_client() as client:
        outcome, took = timed_send(client, trickler.url, policy)
    assert (outcome.result, outcome.attempts) == ("failed", 1)
    assert 1.5 <= took < 1.5 + SLACK_S


def test_a_delivery_queued_behind_a_trickling_receiver_waits_only_for_its_timeout(
    trickler: RawServer,
) -> None:
    good = GoodReceiver()
    finished: dict[int, tuple[Outcome, float]] = {}

    def record(job: Job, outcome: Outcome) -> None:
        finished[job.delivery_id] = (outcome, time.monotonic())

    deliverer = Deliverer(RetryPolicy(timeout_s=1.0, deadline_s=30.0, max_attempts=1), record, workers=1)
    try:
        submitted = time.monotonic()
        deliverer.submit(Job(1, trickler.url, "whsec_x", b"{}", "alert"))
        deliverer.submit(Job(2, good.url, "whsec_x", b"{}", "alert"))
        assert deliverer.join(TRICKLE_S + 5)
    finally:
        deliverer.close(grace_s=1)
        good.close()
    (slow, _), (fast, fast_at) = finished[1], finished[2]
    assert slow.result == "failed" and fast.result == "delivered" and good.received == 1
    assert fast_at - submitted < 1.0 + SLACK_S + 0.5  # the slow one's timeout, then a local POST
