"""Job leases: with several server replicas, each scheduled run (a job and its slot, the
time it was due) runs on one replica only.

A replica takes the lease for a slot when no run of that job has claimed this slot or a
later one, and the last holder finished or let its lease expire. The conditional UPDATE is
atomic on both backends (PostgreSQL re-checks the WHERE after a concurrent writer commits;
SQLite serialises writers), so two replicas never both win.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from api.meta.common import Output
from api.meta.db import Meta, utcnow
from api.meta.models import JobLease


class LeaseOut(Output):
    name: str
    holder: str
    slot: datetime = Field(description="The scheduled time of the run that holds or held the lease")
    expires_at: datetime
    started_at: datetime
    finished_at: datetime | None
    last_error: str


def try_acquire(
    meta: Meta, name: str, holder: str, slot: datetime, *, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Claim `name` for `slot`; True if this caller should run it. Commits at once."""
    now = now or utcnow()
    values = {
        "holder": holder,
        "slot": slot,
        "expires_at": now + ttl,
        "started_at": now,
        "finished_at": None,
        "last_error": "",
    }
    with meta.session() as session:
        result = session.execute(
            update(JobLease)
            .where(
                JobLease.name == name,
                JobLease.slot < slot,
                (JobLease.finished_at.is_not(None)) | (JobLease.expires_at <= now),
            )
            .values(**values)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            return True
        if session.get(JobLease, name) is not None:
            return False
    try:
        with meta.session() as session:
            session.add(JobLease(name=name, **values))
    except Exception as exc:  # another replica inserted the first lease a moment before us
        if isinstance(exc.__cause__, IntegrityError) or isinstance(exc, IntegrityError):
            return False
        raise
    return True


def release(meta: Meta, name: str, holder: str, *, error: str = "", now: datetime | None = None) -> None:
    """Mark the run finished (so the next slot may start at once) and record its error, if any."""
    with meta.session() as session:
        session.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.holder == holder)
            .values(finished_at=now or utcnow(), last_error=error[:4000])
        )


def list_leases(meta: Meta) -> list[LeaseOut]:
    with meta.session() as session:
        return [LeaseOut.model_validate(r) for r in session.scalars(select(JobLease).order_by(JobLease.name))]
