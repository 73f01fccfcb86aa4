"""Deployments as people describe them: latency SLOs and the shape of one replica. The
name matches the telemetry's deployment label. These feed the SLO alert rules and, through
`api.meta.overlay`, the findings (they replace `INFERWATCH_FINDINGS__DEPLOYMENTS` entries)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.meta.common import Input, Output, Page, bounded, delete_or_404, flush_unique, get_or_404, page_of
from api.meta.models import Deployment


class DeploymentIn(Input):
    name: Annotated[str, Field(min_length=1, max_length=255)] = Field(
        description="The deployment label the telemetry carries"
    )
    ttft_p95_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = Field(
        None, description="SLO: time to first token, 95th percentile, milliseconds"
    )
    itl_p95_ms: Annotated[float, Field(gt=0, le=600_000)] | None = Field(
        None, description="SLO: inter-token latency, 95th percentile, milliseconds"
    )
    min_replicas: Annotated[int, Field(ge=0, le=10_000)] | None = Field(
        None, description="Fewest replicas to keep when sizing to demand; empty: the findings' default"
    )
    gpus_per_replica: Annotated[int, Field(ge=1, le=64)] | None = Field(
        None, description="GPUs one replica uses (tensor × pipeline parallel); empty: inferred"
    )
    params_b: Annotated[float, Field(gt=0, le=100_000)] | None = Field(
        None, description="Model parameters, billions; empty: read from the model name"
    )
    weight_bits: Annotated[int, Field(ge=2, le=32)] | None = Field(
        None, description="Bits per weight as served (16 bf16, 8 FP8/INT8, 4 INT4)"
    )
    notes: Annotated[str, Field(max_length=4000)] = ""


class DeploymentOut(Output):
    id: int
    name: str
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    min_replicas: int | None
    gpus_per_replica: int | None
    params_b: float | None
    weight_bits: int | None
    notes: str
    created_at: datetime
    updated_at: datetime


def list_deployments(session: Session, *, limit: int = 100, offset: int = 0) -> Page[DeploymentOut]:
    rows = session.scalars(
        select(Deployment).order_by(Deployment.name).limit(bounded(limit) + 1).offset(offset)
    )
    return page_of([DeploymentOut.model_validate(r) for r in rows], limit, offset)


def all_deployments(session: Session) -> list[DeploymentOut]:
    """Every deployment (alert evaluation and the findings overlay read them all; there are few)."""
    return [
        DeploymentOut.model_validate(r) for r in session.scalars(select(Deployment).order_by(Deployment.name))
    ]


def get_deployment(session: Session, deployment_id: int) -> DeploymentOut:
    return DeploymentOut.model_validate(get_or_404(session, Deployment, deployment_id, "deployment"))


def create_deployment(session: Session, data: DeploymentIn) -> DeploymentOut:
    row = Deployment(**data.model_dump())
    session.add(row)
    flush_unique(session, f"deployment {data.name!r} already exists")
    return DeploymentOut.model_validate(row)


def update_deployment(session: Session, deployment_id: int, data: DeploymentIn) -> DeploymentOut:
    row = get_or_404(session, Deployment, deployment_id, "deployment")
    for key, value in data.model_dump().items():
        setattr(row, key, value)
    flush_unique(session, f"deployment {data.name!r} already exists")
    return DeploymentOut.model_validate(row)


def delete_deployment(session: Session, deployment_id: int) -> None:
    delete_or_404(session, Deployment, deployment_id, "deployment")
