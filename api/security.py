"""Putting the access rules (`api.auth`) on an app: token look-up with a short cache,
tokens given at deploy time, the local-mode decision, and the refusal to listen beyond
loopback with no token (DESIGN.md §6)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from api.auth import AuthMiddleware, Gatekeeper, Principal, RateLimiter, Scope, is_loopback, load_secret_key
from api.errors import ConfigError
from api.meta import Meta
from api.meta.hashing import hash_token
from api.meta.models import ApiToken
from api.meta.tokens import PREFIX_CHARS, SCOPES, TOKEN_PREFIX, active_token_count, find_active_token
from api.security_settings import SecuritySettings

log = logging.getLogger(__name__)

TOKEN_CACHE_SECONDS = 10.0
"""How long a verified token is trusted without asking the database again: a revoked token
stops working within this time on every replica."""


def parse_bootstrap_tokens(spec: str) -> list[tuple[Scope, str]]:
    """`"ingest:iwt_a…,admin:iwt_b…"` → [("ingest", "iwt_a…"), ("admin", "iwt_b…")], validated."""
    pairs: list[tuple[Scope, str]] = []
    for index, item in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        scope, sep, secret = item.partition(":")
        if not sep or scope not in SCOPES:
            raise ConfigError(
                f"bootstrap token {index + 1}: write it as scope:secret with scope one of {SCOPES}"
            )
        if not secret.startswith(TOKEN_PREFIX) or len(secret) < len(TOKEN_PREFIX) + 24:
            raise ConfigError(
                f"bootstrap token {index + 1}: the secret must start with {TOKEN_PREFIX!r} and have at least "
                "24 more characters, e.g. from "
                "`python -c 'import secrets; print(\"iwt_\" + secrets.token_urlsafe(32))'`"
            )
        pairs.append((scope, secret))
    return pairs


def bootstrap_tokens(meta: Meta, spec: str) -> int:
    """Create the tokens `spec` names that the database does not hold yet. Returns how many."""
    created = 0
    for scope, secret in parse_bootstrap_tokens(spec):
        digest = hash_token(secret)
        with meta.session() as s:
            if s.scalar(select(ApiToken.id).where(ApiToken.token_hash == digest)) is not None:
                continue
            s.add(ApiToken(name="bootstrap", prefix=secret[:PREFIX_CHARS], token_hash=digest, scope=scope))
            created += 1
    return created


def active_tokens(meta: Meta) -> int:
    with meta.session() as s:
        return active_token_count(s)


def check_can_listen(host: str, meta: Meta) -> bool:
    """Refuse to serve beyond loopback with no token; True when running in local mode."""
    tokens = active_tokens(meta)
    if is_loopback(host):
        return tokens == 0
    if tokens == 0:
        raise ConfigError(
            f"refusing to listen on {host} with no API token: anyone who can reach it could read your fleet. "
            "Create one (`inferwatch token create --scope admin`), or set "
            "INFERWATCH_SECURITY__BOOTSTRAP_TOKENS, or bind to 127.0.0.1."
        )
    return False


class TokenCache:
    """Verified tokens by hash, for TOKEN_CACHE_SECONDS, so ingest does not hit the database
    on every request. A token's principal comes back whatever its scope (`find_active_token`):
    the gatekeeper judges the scope, so a wrong scope is a 403 and an unknown token a 401."""

    def __init__(self, meta: Meta, clock: Callable[[], float] = time.monotonic) -> None:
        self._meta = meta
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def __call__(self, secret: str, needed: Scope) -> Principal | None:
        if not secret.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(secret)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < TOKEN_CACHE_SECONDS:
            return hit[1]
        principal = self._look_up(secret)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal

    def _look_up(self, secret: str) -> Principal | None:
        with self._meta.session() as s:
            row = find_active_token(s, secret)
            if row is None:
                return None
            return Principal("token", row.name or row.prefix, row.scope, f"token:{row.id}")  # type: ignore[arg-type]


class LocalMode:
    """Whether local mode holds now: bound to loopback and no active token. Re-checked
    every few seconds, so creating the first token ends local mode without a restart."""

    def __init__(self, bound_loopback: bool, meta: Meta, clock: Callable[[], float] = time.monotonic) -> None:
        self._bound_loopback = bound_loopback
        self._meta = meta
        self._clock = clock
        self._checked = -1e9
        self._value = False

    def __call__(self) -> bool:
        if not self._bound_loopback:
            return False
        now = self._clock()
        if now - self._checked > 5:
            self._value = active_tokens(self._meta) == 0
            self._checked = now
        return self._value


def install(app: FastAPI, render_error: Callable[[Any, Any], Any]) -> None:
    """Put the access rules in front of every route of `app` (built by create_app)."""
    settings = app.state.settings
    meta: Meta = app.state.meta
    sec: SecuritySettings = settings.security
    if sec.bootstrap_tokens.get_secret_value():
        created = bootstrap_tokens(meta, sec.bootstrap_tokens.get_secret_value())
        if created:
            log.info("created %d token(s) from INFERWATCH_SECURITY__BOOTSTRAP_TOKENS", created)
    key = load_secret_key(settings.data_dir / "secret_key", sec.secret_key.get_secret_value())
    local = LocalMode(is_loopback(settings.host), meta)
    gate = Gatekeeper(
        local_mode=local,
        authenticate=TokenCache(meta),
        session_key=key,
        ingest_limiter=RateLimiter(sec.ingest_rate_per_s, sec.ingest_burst),
        api_limiter=RateLimiter(sec.api_rate_per_s, sec.api_burst),
    )
    app.state.gatekeeper = gate
    app.state.session_key = key
    app.add_middleware(AuthMiddleware, gatekeeper=gate, render_error=render_error)
