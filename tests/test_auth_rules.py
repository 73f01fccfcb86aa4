"""The access rules on their own: which scope each path needs, sessions, rate limits."""

from __future__ import annotations

import pytest

from api.auth import (
    Gatekeeper,
    Principal,
    RateLimiter,
    is_loopback,
    read_session,
    required_scope,
    sign_session,
)
from api.errors import Forbidden, TooManyRequests, Unauthorized


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/healthz", None),
        ("GET", "/static/app.css", None),
        ("POST", "/v1/traces", "ingest"),
        ("POST", "/v1/metrics", "ingest"),
        ("GET", "/api/v1/requests", "read"),
        ("GET", "/metrics", "read"),
        ("GET", "/", "read"),
        ("GET", "/api/v1/settings/tokens", "admin"),
        ("GET", "/settings/webhooks", "admin"),
        ("POST", "/findings/abc/ack", "admin"),
        ("DELETE", "/api/v1/anything-new", "admin"),
        ("GET", "/api/v1/anything-new", "read"),
    ],
)
def test_each_path_needs_the_scope_the_table_says(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.10")
    assert not is_loopback("10.0.0.5") and not is_loopback("testclient") and not is_loopback(None)


def test_session_cookie_round_trip_and_tampering() -> None:
    key = b"k" * 32
    cookie = sign_session(key, 7, "ada", "admin", now=1000.0)
    assert read_session(key, cookie, now=1001.0) == {
        "uid": 7,
        "name": "ada",
        "role": "admin",
        "exp": 1000 + 12 * 3600,
    }
    body, mac = cookie.rsplit(".", 1)
    forged = sign_session(key, 7, "ada", "viewer", now=1000.0).rsplit(".", 1)[0] + "." + mac
    assert read_session(key, forged, now=1001.0) is None
    assert read_session(b"other" * 8, cookie, now=1001.0) is None
    assert read_session(key, cookie, now=1000.0 + 12 * 3600 + 1) is None


def test_rate_limiter_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5)  # one token takes 1/2 s at 2/s
    assert limiter.take("b", now=0.0) == 0.0  # keys are independent
    assert limiter.take("a", now=0.5) == 0.0


def gatekeeper(*, local: bool, tokens: dict[str, Principal] | None = None, rate: float = 100) -> Gatekeeper:
    tokens = tokens or {}
    return Gatekeeper(
        local_mode=lambda: local,
        authenticate=lambda secret, needed: tokens.get(secret),
        session_key=b"s" * 32,
        ingest_limiter=RateLimiter(rate, 2),
        api_limiter=RateLimiter(rate, 2),
    )


def test_local_mode_lets_loopback_in_and_nobody_else() -> None:
    gate = gatekeeper(local=True)
    assert gate.check("GET", "/api/v1/requests", {}, "127.0.0.1").kind == "local"  # type: ignore[union-attr]
    with pytest.raises(Unauthorized):
        gate.check("GET", "/api/v1/requests", {}, "192.0.2.4")
    with pytest.raises(Unauthorized):
        gatekeeper(local=False).check("GET", "/api/v1/requests", {}, "127.0.0.1")


def test_tokens_are_held_to_their_scope() -> None:
    ingest = Principal("token", "collector", "ingest", "token:1")
    gate = gatekeeper(local=False, tokens={"iwt_ingest": ingest})
    auth = {"authorization": "Bearer iwt_ingest"}
    assert gate.check("POST", "/v1/traces", auth, "192.0.2.4") == ingest
    with pytest.raises(Forbidden):
        gate.check("GET", "/api/v1/requests", auth, "192.0.2.4")
    with pytest.raises(Unauthorized):
        gate.check("POST", "/v1/traces", {"authorization": "Bearer nope"}, "192.0.2.4")
    with pytest.raises(Unauthorized):
        gate.check("POST", "/v1/traces", {"authorization": "Basic abc"}, "192.0.2.4")


def test_a_signed_in_viewer_reads_but_cannot_write() -> None:
    gate = gatekeeper(local=False)
    cookie = {"cookie": "theme=dark; inferwatch_session=" + sign_session(b"s" * 32, 3, "bo", "viewer")}
    assert gate.check("GET", "/fleet", cookie, "192.0.2.4").scope == "read"  # type: ignore[union-attr]
    with pytest.raises(Forbidden):
        gate.check("POST", "/settings/prices", cookie, "192.0.2.4")


def test_requests_past_the_rate_get_429_with_a_wait() -> None:
    ingest = Principal("token", "collector", "ingest", "token:1")
    gate = gatekeeper(local=False, tokens={"t": ingest}, rate=1)
    auth = {"authorization": "Bearer t"}
    gate.check("POST", "/v1/traces", auth, None)
    gate.check("POST", "/v1/traces", auth, None)
    with pytest.raises(TooManyRequests) as caught:
        gate.check("POST", "/v1/traces", auth, None)
    assert caught.value.retry_after_s == 1
