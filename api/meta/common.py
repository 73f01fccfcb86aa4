"""What every service module shares: turning form or JSON input into a validated model
(errors as `BadRequest` with one problem per field), bounded pages, and lookups that
raise `NotFound`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import BadRequest, NotFound

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_LIMIT = 1000


class Input(BaseModel):
    """Base of the service modules' input models: unknown fields are an error, strings trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a bounded list. `next_offset` is null on the last page."""

    items: list[T]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null at the end")


def problems(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"where": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
        for err in exc.errors()
    ]


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """`model` validated from `data` (a form or a JSON object). On failure, a BadRequest whose
    details list each problem with the field it belongs to — forms show them in place."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        found = problems(exc)
        message = "; ".join(f"{p['where'] or 'input'}: {p['problem']}" for p in found)
        raise BadRequest(message or "invalid input", details={"problems": found}) from exc


def bounded(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def page_of(items: list[T], limit: int, offset: int) -> Page[T]:
    """`items` fetched with LIMIT limit + 1: the extra row only says another page exists."""
    more = len(items) > limit
    return Page[T](items=items[:limit], next_offset=offset + limit if more else None)


def get_or_404(session: Session, model: type[T], key: Any, what: str) -> T:
    if isinstance(key, int) and not -(2**63) <= key < 2**63:
        raise NotFound(f"no {what} {key!r}")  # no row has it, and the database can't take it
    row = session.get(model, key)
    if row is None:
        raise NotFound(f"no {what} {key!r}")
    return row


def flush_unique(session: Session, message: str) -> None:
    """Flush, turning a unique-constraint violation into a BadRequest with `message`."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise BadRequest(message) from exc


def delete_or_404(session: Session, model: type[Any], key: Any, what: str) -> None:
    session.delete(get_or_404(session, model, key, what))
    session.flush()
