"""`/api/v1/alerts` (what fires now, and what fired), `/api/v1/acknowledgements` (findings
acknowledged or snoozed) and `/api/v1/jobs` (when each scheduled job last ran, and where)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel

from api.deps import get_meta
from api.meta import Meta
from api.meta.acks import AckIn, AckOut, delete_ack, list_acks, set_ack
from api.meta.alert_states import AlertStateOut, list_states
from api.meta.common import Page
from api.meta.leases import LeaseOut, list_leases

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Limit = Query(100, ge=1, le=1000, description="Most items in one page")
Offset = Query(0, ge=0, le=1_000_000, description="Items to skip (from `next_offset`)")


@router.get("/alerts", response_model=Page[AlertStateOut], summary="Alerts, newest first (firing by default)")
def alerts(
    status_: Literal["firing", "resolved", "all"] = Query("firing", alias="status"),
    limit: int = Limit,
    offset: int = Offset,
    meta: Meta = Depends(get_meta),
) -> Page[AlertStateOut]:
    wanted = None if status_ == "all" else status_
    with meta.session() as session:
        return list_states(session, status=wanted, limit=limit, offset=offset)


@router.get("/acknowledgements", response_model=Page[AckOut], summary="Findings acknowledged or snoozed")
def acknowledgements(
    limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[AckOut]:
    with meta.session() as session:
        return list_acks(session, limit=limit, offset=offset)


@router.post(
    "/acknowledgements",
    response_model=AckOut,
    status_code=status.HTTP_201_CREATED,
    summary="Acknowledge a finding, or snooze it until a time",
)
def acknowledge(body: AckIn, meta: Meta = Depends(get_meta)) -> AckOut:
    with meta.session() as session:
        return set_ack(session, body)


@router.delete(
    "/acknowledgements/{fingerprint}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Un-acknowledge a finding",
)
def unacknowledge(fingerprint: str, meta: Meta = Depends(get_meta)) -> Response:
    with meta.session() as session:
        delete_ack(session, fingerprint)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class JobList(BaseModel):
    items: list[LeaseOut]


@router.get("/jobs", response_model=JobList, summary="Scheduled jobs: last run, which replica, last error")
def jobs(meta: Meta = Depends(get_meta)) -> JobList:
    return JobList(items=list_leases(meta))
