"""Webhook delivery against a real HTTP server on a loopback port: signatures, which
answers are retried, Retry-After, deadlines, shutdown, and the delivery log."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.alerts.delivery import Deliverer, Job, Outcome, RetryPolicy, post_signed, retry_after_s
from api.alerts.notify import delivery_recorder, send_test
from api.meta import Meta
from api.meta.webhooks import WebhookIn, create_webhook, get_delivery, record_delivery
from tests.alerts.receiver import Reply, receiving

SECRET = "whsec_test-secret-0123456789"
BODY = b'{"type":"test","title":"caf\xc3\xa9 & <tags>"}'
FAST = RetryPolicy(timeout_s=5, deadline_s=30, max_attempts=5, backoff_s=0.01, max_backoff_s=0.05)
DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def _send(
    client: httpx.Client, url: str, policy: RetryPolicy = FAST, stop: threading.Event | None = None
) -> Outcome:
    return post_signed(client, url, BODY, SECRET, policy, stop or threading.Event())


def docs_verifier() -> Any:
    """`verify_inferwatch` exactly as docs/alerts.md prints it."""
    text = DOC.read_text()
    snippet = re.search(r"<!-- verify-snippet.*?-->\n```python\n(.*?)```", text, re.S)
    assert snippet, "docs/alerts.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(snippet.group(1), "docs/alerts.md", "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace["verify_inferwatch"]


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_and_the_docs_snippet_verifies_it(
    client: httpx.Client,
) -> None:
    with receiving([Reply(200)]) as rx:
        outcome = _send(client, rx.url)
        (arrival,) = rx.wait_for(1)
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("delivered", 1, 200)
    assert arrival.body == BODY
    timestamp = arrival.headers["x-inferwatch-timestamp"]
    by_hand = hmac.new(SECRET.encode(), timestamp.encode() + b"." + BODY, hashlib.sha256).hexdigest()
    assert arrival.headers["x-inferwatch-signature"] == "sha256=" + by_hand
    assert arrival.headers["content-type"] == "application/json"

    verify = docs_verifier()
    headers = {
        "X-Inferwatch-Timestamp": timestamp,
        "X-Inferwatch-Signature": arrival.headers["x-inferwatch-signature"],
    }
    assert verify(SECRET, headers, arrival.body) is True
    assert verify("another-secret-0123456789", headers, arrival.body) is False
    assert verify(SECRET, headers, arrival.body + b" ") is False
    stale = {**headers, "X-Inferwatch-Timestamp": str(int(timestamp) - 3600)}
    assert verify(SECRET, stale, arrival.body) is False


def test_a_503_is_retried_and_the_200_after_it_delivers(client: httpx.Client) -> None:
    with receiving([Reply(503), Reply(200)]) as rx:
        outcome = _send(client, rx.url)
        arrivals = rx.wait_for(2)
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("delivered", 2, 200)
    assert [a.body for a in arrivals] == [BODY, BODY]
    # Each attempt is signed with its own timestamp.
    assert all(a.headers["x-inferwatch-signature"].startswith("sha256=") for a in arrivals)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_a_4xx_other_than_429_is_not_retried(client: httpx.Client, status: int) -> None:
    with receiving([Reply(status, body=b"bad payload"), Reply(200)]) as rx:
        outcome = _send(client, rx.url)
        rx.wait_for(1)
        assert len(rx.arrivals) == 1
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("failed", 1, status)
    assert f"HTTP {status}: bad payload" in outcome.error


def test_a_redirect_is_not_followed(client: httpx.Client) -> None:
    with receiving([Reply(307, headers={"Location": "http://127.0.0.1:9/elsewhere"})]) as rx:
        outcome = _send(client, rx.url)
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("failed", 1, 307)


def test_retry_after_is_honoured(client: httpx.Client) -> None:
    with receiving([Reply(429, headers={"Retry-After": "1"}), Reply(200)]) as rx:
        outcome = _send(client, rx.url)
        first, second = rx.wait_for(2)
    assert (outcome.result, outcome.attempts) == ("delivered", 2)
    assert outcome.waits_s == [1.0]
    gap = second.at - first.at
    assert 0.9 <= gap < 5, f"the retry came {gap:.2f} s after the 429 that asked for 1 s"


def test_a_retry_after_past_the_deadline_gives_up_at_once(client: httpx.Client) -> None:
    policy = RetryPolicy(timeout_s=5, deadline_s=3, max_attempts=5, backoff_s=0.01, max_backoff_s=0.05)
    with receiving([Reply(503, headers={"Retry-After": "60"})]) as rx:
        outcome = _send(client, rx.url, policy)
        rx.wait_for(1)
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("failed", 1, 503)
    assert "would pass the 3 s deadline" in outcome.error
    assert outcome.waits_s == []


def test_attempts_run_out(client: httpx.Client) -> None:
    with receiving([Reply(500), Reply(502), Reply(504)]) as rx:
        outcome = _send(client, rx.url, RetryPolicy(5, 30, 3, 0.01, 0.05))
        rx.wait_for(3)
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("failed", 3, 504)
    assert outcome.error.startswith("gave up after 3 attempts")


def test_a_hanging_receiver_times_out_the_attempt(client: httpx.Client) -> None:
    hold = threading.Event()
    try:
        with receiving([Reply(200, hold=hold)]) as rx:
            outcome = _send(client, rx.url, RetryPolicy(timeout_s=0.3, deadline_s=30, max_attempts=1))
            hold.set()
    finally:
        hold.set()
    assert (outcome.result, outcome.attempts, outcome.response_status) == ("failed", 1, None)
    assert "Timeout" in outcome.error


def test_shutdown_cuts_a_retry_wait_short(client: httpx.Client) -> None:
    stop = threading.Event()
    with receiving([Reply(503, headers={"Retry-After": "30"})]) as rx:
        threading.Timer(0.2, stop.set).start()
        outcome = _send(client, rx.url, RetryPolicy(5, 120, 5, 1, 60), stop)
    assert (outcome.result, outcome.attempts) == ("cancelled", 1)
    assert outcome.duration_ms < 10_000  # not the 30 s the receiver asked for


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import datetime

    now = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s("Mon, 02 Mar 2026 09:00:30 GMT", now) == 30.0
    assert retry_after_s("Mon, 02 Mar 2026 08:00:00 GMT", now) == 0.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


# --- the deliverer and the delivery log -------------------------------------------------------


def _webhook(meta: Meta, url: str, fmt: str = "inferwatch") -> int:
    with meta.session() as s:
        return create_webhook(s, WebhookIn(name="rx", url=url, secret=SECRET, format=fmt)).id  # type: ignore[arg-type]


def test_the_deliverer_records_each_outcome_in_the_log(sqlite_meta: Meta) -> None:
    deliverer = Deliverer(FAST, delivery_recorder(sqlite_meta), workers=2)
    try:
        with receiving([Reply(503), Reply(200)]) as rx:
            hook = _webhook(sqlite_meta, rx.url)
            with sqlite_meta.session() as s:
                delivery = record_delivery(
                    s, webhook_id=hook, event="alert", alert_status="firing", payload=BODY.decode()
                )
            assert deliverer.submit(Job(delivery, rx.url, SECRET, BODY, "alert"))
            assert deliverer.join(10)
            (first, second) = rx.wait_for(2)
        assert second.headers["x-inferwatch-delivery"] == str(delivery)
        assert second.headers["x-inferwatch-event"] == "alert"
        with sqlite_meta.session() as s:
            logged = get_delivery(s, delivery)
        assert (logged.status, logged.attempts, logged.response_status, logged.error) == (
            "delivered",
            2,
            200,
            "",
        )
        assert logged.finished_at is not None and logged.duration_ms is not None
    finally:
        deliverer.close()


def test_a_hanging_receiver_never_blocks_whoever_submits(sqlite_meta: Meta) -> None:
    hold = threading.Event()
    deliverer = Deliverer(
        RetryPolicy(timeout_s=30, deadline_s=60, max_attempts=1), delivery_recorder(sqlite_meta), workers=1
    )
    try:
        with receiving([Reply(200, hold=hold), Reply(200)]) as rx:
            hook = _webhook(sqlite_meta, rx.url)
            with sqlite_meta.session() as s:
                ids = [
                    record_delivery(s, webhook_id=hook, event="alert", alert_status="firing", payload="{}")
                    for _ in range(2)
                ]
            assert deliverer.submit(Job(ids[0], rx.url, SECRET, b"{}", "alert"))
            rx.wait_for(1)  # the receiver now holds the only worker…
            assert deliverer.submit(
                Job(ids[1], rx.url, SECRET, b"{}", "alert")
            )  # …and submitting still returns
            hold.set()
            assert deliverer.join(10)
        with sqlite_meta.session() as s:
            assert [get_delivery(s, i).status for i in ids] == ["delivered", "delivered"]
    finally:
        hold.set()
        deliverer.close()


def test_closing_cancels_what_waits_and_records_it(sqlite_meta: Meta) -> None:
    deliverer = Deliverer(RetryPolicy(5, 120, 5, 1, 60), delivery_recorder(sqlite_meta), workers=1)
    with receiving([Reply(503, headers={"Retry-After": "30"})]) as rx:
        hook = _webhook(sqlite_meta, rx.url)
        with sqlite_meta.session() as s:
            delivery = record_delivery(s, webhook_id=hook, event="alert", alert_status="firing", payload="{}")
        deliverer.submit(Job(delivery, rx.url, SECRET, b"{}", "alert"))
        rx.wait_for(1)
        deliverer.close(grace_s=5)
    with sqlite_meta.session() as s:
        logged = get_delivery(s, delivery)
    assert (logged.status, logged.attempts, logged.response_status) == ("cancelled", 1, 503)


@pytest.mark.parametrize("fmt", ["inferwatch", "slack"])
def test_test_send_delivers_now_and_answers_with_the_log_entry(sqlite_meta: Meta, fmt: str) -> None:
    deliverer = Deliverer(FAST, delivery_recorder(sqlite_meta))
    try:
        with receiving([Reply(200)]) as rx:
            hook = _webhook(sqlite_meta, rx.url, fmt)
            logged = send_test(sqlite_meta, deliverer, hook, "https://iw.example.com")
            (arrival,) = rx.wait_for(1)
    finally:
        deliverer.close()
    assert (logged.status, logged.event, logged.attempts) == ("delivered", "test", 1)
    body = json.loads(arrival.body)
    if fmt == "slack":
        assert body["text"].startswith("TEST: Test message from inferwatch")
        assert body["blocks"][0]["type"] == "section"
    else:
        assert (body["type"], body["status"], body["links"]["dashboard"]) == (
            "test",
            "firing",
            "https://iw.example.com/",
        )
    assert json.loads(logged.payload) == body
