"""Who may call what.

Every request passes through `AuthMiddleware`, which decides the scope a path needs from
one table (`required_scope`) — so a route added tomorrow is protected by default: reads
need `read`, writes need `admin`, OTLP export needs `ingest`, and only the few paths in
PUBLIC need nothing.

Credentials are a bearer token (`Authorization: Bearer iwt_…`, scoped, stored hashed) or
the web session cookie set at login. In local mode — the server bound to loopback and no
token created yet — requests from loopback need no credentials (DESIGN.md §6); the server
announces it at start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from api.errors import Forbidden, InferwatchError, TooManyRequests, Unauthorized
from api.meta.tokens import scope_allows

log = logging.getLogger(__name__)

Scope = Literal["ingest", "read", "admin"]

PUBLIC_PATHS = frozenset({"/healthz", "/login", "/logout", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
INGEST_PATHS = frozenset({"/v1/traces", "/v1/metrics", "/v1/logs"})
ADMIN_PREFIXES = ("/api/v1/settings", "/settings")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SESSION_COOKIE = "inferwatch_session"
SESSION_SECONDS = 12 * 3600


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a request needs; None for the public paths."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path in INGEST_PATHS:
        return "ingest"
    if path.startswith(ADMIN_PREFIXES):
        return "admin"
    return "read" if method in READ_METHODS else "admin"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a token, a signed-in user, or a loopback caller in local mode."""

    kind: Literal["token", "user", "local"]
    name: str
    scope: Scope
    key: str  # what rate limits are counted by


# --- session cookies -----------------------------------------------------------------------


def load_secret_key(path: Path, configured: str = "") -> bytes:
    """The key that signs session cookies: configured, or made once and kept (0600) in the
    data directory so sessions survive a restart. With several replicas, configure it."""
    if configured:
        return configured.encode()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key


def sign_session(key: bytes, user_id: int, username: str, role: str, now: float | None = None) -> str:
    payload = {
        "uid": user_id,
        "name": username,
        "role": role,
        "exp": int((now or time.time()) + SESSION_SECONDS),
    }
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def read_session(key: bytes, cookie: str, now: float | None = None) -> dict[str, Any] | None:
    """The session's payload if the cookie is ours, unaltered and unexpired; else None."""
    body, _, mac = cookie.rpartition(".")
    if not body or not hmac.compare_digest(mac, hmac.new(key, body.encode(), hashlib.sha256).hexdigest()):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("exp", 0) < (now or time.time()):
        return None
    return payload


# --- rate limits -------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per key: `rate` requests a second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


# --- the middleware -------------------------------------------------------------------------

Authenticate = Callable[[str, Scope], "Principal | None"]
"""(bearer secret, needed scope) → the token's principal, or None. Set by the app."""

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]


class Gatekeeper:
    """The decisions, apart from ASGI plumbing, so they can be read and tested alone."""

    def __init__(
        self,
        *,
        local_mode: Callable[[], bool],
        authenticate: Authenticate,
        session_key: bytes,
        ingest_limiter: RateLimiter,
        api_limiter: RateLimiter,
    ) -> None:
        self.local_mode = local_mode
        self.authenticate = authenticate
        self.session_key = session_key
        self.ingest_limiter = ingest_limiter
        self.api_limiter = api_limiter

    def check(
        self, method: str, path: str, headers: dict[str, str], client_host: str | None
    ) -> Principal | None:
        """The principal allowed to make this request, or raise 401/403/429."""
        needed = required_scope(method, path)
        if needed is None:
            return None
        principal = self._identify(headers, needed, client_host)
        if not scope_allows(principal.scope, needed):
            raise Forbidden(f"this needs the {needed} scope; the credentials given have {principal.scope}")
        if principal.kind == "local":
            return principal  # the operator on this machine: nothing to protect from
        limiter = self.ingest_limiter if needed == "ingest" else self.api_limiter
        wait = limiter.take(principal.key)
        if wait > 0:
            raise TooManyRequests(
                f"rate limit for {principal.name} reached; retry in {wait:.1f} s",
                retry_after_s=max(1, round(wait)),
            )
        return principal

    def _identify(self, headers: dict[str, str], needed: Scope, client_host: str | None) -> Principal:
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, secret = authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthorized("Authorization must be `Bearer <token>`")
            principal = self.authenticate(secret.strip(), needed)
            if principal is None:
                raise Unauthorized("the token is unknown, revoked, or lacks the needed scope")
            return principal
        cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        if cookie:
            payload = read_session(self.session_key, cookie)
            if payload is not None:
                scope: Scope = "admin" if payload.get("role") == "admin" else "read"
                return Principal("user", str(payload.get("name", "")), scope, f"user:{payload.get('uid')}")
        if is_loopback(client_host) and self.local_mode():
            return Principal("local", "local mode", "admin", f"local:{client_host}")
        raise Unauthorized(
            "sign in, or send a token: `Authorization: Bearer <token>` (inferwatch token create)"
        )


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class AuthMiddleware:
    """Pure ASGI (no body buffering): checks each HTTP request with the Gatekeeper and
    answers refusals through the app's one error renderer."""

    def __init__(
        self,
        app: ASGIApp,
        gatekeeper: Gatekeeper,
        render_error: Callable[[MutableMapping[str, Any], InferwatchError], Any],
    ) -> None:
        self.app = app
        self.gatekeeper = gatekeeper
        self.render_error = render_error

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = scope.get("client")
        try:
            principal = self.gatekeeper.check(
                scope["method"], scope["path"], headers, client[0] if client else None
            )
        except InferwatchError as exc:
            response = self.render_error(scope, exc)
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        if principal is not None:
            # What the web layer reads (web/auth.py): who acts, and what CSRF tokens bind to.
            state["user"] = principal.name
            state["session_id"] = principal.key
        await self.app(scope, receive, send)
