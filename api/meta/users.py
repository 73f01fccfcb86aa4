"""People who sign in to the web app: a username, a scrypt password hash, a role."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.meta.common import Input, Output, Page, bounded, delete_or_404, flush_unique, get_or_404, page_of
from api.meta.db import utcnow
from api.meta.hashing import DUMMY_HASH, hash_password, needs_rehash, verify_password
from api.meta.models import User

Role = Literal["viewer", "admin"]
Username = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@+-]+$")]
Password = Annotated[str, Field(min_length=10, max_length=1024, description="At least 10 characters")]


class UserIn(Input):
    username: Username
    password: Password
    role: Role = "viewer"


class UserOut(Output):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


def create_user(session: Session, data: UserIn) -> UserOut:
    row = User(username=data.username.lower(), password_hash=hash_password(data.password), role=data.role)
    session.add(row)
    flush_unique(session, f"user {data.username!r} exists")
    return UserOut.model_validate(row)


def list_users(session: Session, *, limit: int = 100, offset: int = 0) -> Page[UserOut]:
    rows = session.scalars(select(User).order_by(User.username).limit(bounded(limit) + 1).offset(offset))
    return page_of([UserOut.model_validate(r) for r in rows], limit, offset)


def get_user(session: Session, user_id: int) -> UserOut:
    return UserOut.model_validate(get_or_404(session, User, user_id, "user"))


class PasswordIn(Input):
    password: Password


def set_password(session: Session, user_id: int, data: PasswordIn) -> None:
    get_or_404(session, User, user_id, "user").password_hash = hash_password(data.password)


def set_role(session: Session, user_id: int, role: Role, *, disabled: bool = False) -> UserOut:
    row = get_or_404(session, User, user_id, "user")
    row.role, row.disabled = role, disabled
    session.flush()
    return UserOut.model_validate(row)


def delete_user(session: Session, user_id: int) -> None:
    delete_or_404(session, User, user_id, "user")


def authenticate_user(session: Session, username: str, password: str) -> UserOut | None:
    """The user if the password is right and the account enabled; else None. Takes as long
    for an unknown username as for a wrong password. Upgrades old hashes on success."""
    row = session.scalars(select(User).where(User.username == username.strip().lower())).first()
    if row is None:
        verify_password(password, DUMMY_HASH)
        return None
    if not verify_password(password, row.password_hash) or row.disabled:
        return None
    if needs_rehash(row.password_hash):
        row.password_hash = hash_password(password)
    row.last_login_at = utcnow()
    session.flush()
    return UserOut.model_validate(row)
