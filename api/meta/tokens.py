"""API tokens: scoped (ingest, read, admin), stored hashed, revocable, with the time of
last use. The secret is returned once, at creation."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.meta.common import Input, Output, Page, bounded, get_or_404, page_of
from api.meta.db import utcnow
from api.meta.hashing import hash_token
from api.meta.models import ApiToken

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
TOKEN_PREFIX = "iwt_"
PREFIX_CHARS = len(TOKEN_PREFIX) + 8
# Writing last_used_at on every request would turn each read into a write; a minute's
# precision is plenty to tell a live token from a dead one.
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenIn(Input):
    scope: Scope = Field(description="ingest: send telemetry; read: the API and pages; admin: everything")
    name: Annotated[str, Field(max_length=200)] = Field("", description="What the token is for")


class TokenOut(Output):
    id: int
    name: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart")
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class TokenCreated(TokenOut):
    secret: str = Field(description="The token. Shown this once; only its hash is kept")


def scope_allows(granted: str, needed: str) -> bool:
    """admin may do anything; read and ingest only what they name."""
    return granted == "admin" or granted == needed


def create_token(session: Session, data: TokenIn) -> TokenCreated:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=data.name, prefix=secret[:PREFIX_CHARS], token_hash=hash_token(secret), scope=data.scope
    )
    session.add(row)
    session.flush()
    return TokenCreated(**TokenOut.model_validate(row).model_dump(), secret=secret)


def list_tokens(
    session: Session, *, include_revoked: bool = True, limit: int = 100, offset: int = 0
) -> Page[TokenOut]:
    query = select(ApiToken)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    rows = session.scalars(query.order_by(ApiToken.id).limit(bounded(limit) + 1).offset(offset))
    return page_of([TokenOut.model_validate(r) for r in rows], limit, offset)


def find_token(session: Session, key: str) -> TokenOut:
    """A token by id or by its displayed prefix (`iwt_AbCdEfGh`)."""
    query = select(ApiToken)
    query = query.where(ApiToken.id == int(key)) if key.isdigit() else query.where(ApiToken.prefix == key)
    rows = list(session.scalars(query.limit(2)))
    if not rows:
        raise NotFound(f"no token {key!r}")
    if len(rows) > 1:
        raise NotFound(f"prefix {key!r} names more than one token; use its id")
    return TokenOut.model_validate(rows[0])


def revoke_token(session: Session, token_id: int) -> TokenOut:
    """Revoke a token (at once, for every request after this commit). Revoking twice is harmless."""
    row = get_or_404(session, ApiToken, token_id, "token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return TokenOut.model_validate(row)


def find_active_token(session: Session, secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The active (unrevoked) token row `secret` is, whatever its scope, recording its use;
    None for an unknown, malformed or revoked secret. The one look-up by hash: callers judge
    the scope themselves, so they can tell a wrong scope (403) from an unknown token (401)."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    digest = hash_token(secret)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        row.last_used_at = now
        session.flush()
    return row


def authenticate_token(
    session: Session, secret: str, needed: Scope, *, now: datetime | None = None
) -> TokenOut | None:
    """The active token `secret` is, if its scope allows `needed`; else None. Records its use."""
    row = find_active_token(session, secret, now=now)
    if row is None or not scope_allows(row.scope, needed):
        return None
    return TokenOut.model_validate(row)


def active_token_count(session: Session) -> int:
    """Tokens not revoked (the server refuses to listen beyond loopback without any)."""
    return int(
        session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))) or 0
    )
