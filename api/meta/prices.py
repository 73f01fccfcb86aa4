"""GPU prices people set: dollars per GPU-hour by GPU model, and per host or pool of hosts.

The defaults are the findings catalogue's (`api.findings.catalogue`); prices set here
replace them, and the environment's `INFERWATCH_COST__*` prices, for everything that
computes cost (see `api.meta.overlay`). Lookup order is the catalogue PriceBook's: a host
price (exact name, then the longest matching pool pattern), a GPU price, the default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.findings.catalogue import CATALOGUE
from api.meta.common import Input, Output, delete_or_404, flush_unique, get_or_404
from api.meta.models import GpuPrice, PriceOverride

Usd = Annotated[float, Field(ge=0, le=10_000, description="Dollars per GPU-hour")]


def _check_pattern(value: str) -> str:
    if "*" in value.rstrip("*") or "?" in value:
        raise ValueError("a pool is a host-name prefix followed by one `*` (e.g. spot-*)")
    return value


class PriceIn(Input):
    gpu_model: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="A catalogue key (`h100-sxm`) or a GPU name as NVML reports it (`NVIDIA H100 80GB HBM3`)"
    )
    usd_per_hour: Usd


class PriceOut(Output):
    gpu_model: str
    label: str = Field(description="The catalogue's name for the model, or the model as given")
    usd_per_hour: float
    default_usd_per_hour: float | None = Field(description="The catalogue's price, for catalogue models")
    source: Literal["default", "configured"]


class OverrideIn(Input):
    match: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_check_pattern)] = Field(
        description="A host name (`gpu-node-07`) or a pool of hosts by prefix (`spot-*`)"
    )
    usd_per_hour: Usd
    note: Annotated[str, Field(max_length=2000)] = ""


class OverrideOut(Output):
    id: int
    match: str
    usd_per_hour: float
    note: str
    updated_at: datetime


def _key(model: str) -> str:
    return model.strip().lower()


def configured_prices(session: Session) -> dict[str, float]:
    """GPU prices set here, by lower-cased model (the catalogue PriceBook's key form)."""
    return {_key(row.gpu_model): row.usd_per_hour for row in session.scalars(select(GpuPrice))}


def configured_host_prices(session: Session) -> dict[str, float]:
    return {row.match: row.usd_per_hour for row in session.scalars(select(PriceOverride))}


def list_prices(session: Session) -> list[PriceOut]:
    """Every catalogue model with its price, then models named only by a price set here."""
    configured = {row.gpu_model: row.usd_per_hour for row in session.scalars(select(GpuPrice))}
    lowered = {_key(k): v for k, v in configured.items()}
    out = [
        PriceOut(
            gpu_model=spec.key,
            label=spec.label,
            usd_per_hour=lowered.get(spec.key, spec.usd_per_hour),
            default_usd_per_hour=spec.usd_per_hour,
            source="configured" if spec.key in lowered else "default",
        )
        for spec in CATALOGUE
    ]
    keys = {spec.key for spec in CATALOGUE}
    out += [
        PriceOut(
            gpu_model=model, label=model, usd_per_hour=usd, default_usd_per_hour=None, source="configured"
        )
        for model, usd in sorted(configured.items())
        if _key(model) not in keys
    ]
    return out


def set_price(session: Session, data: PriceIn) -> PriceOut:
    """Set the price of a GPU model, replacing the default or an earlier price."""
    model = data.gpu_model.lower() if _key(data.gpu_model) in {s.key for s in CATALOGUE} else data.gpu_model
    row = next((r for r in session.scalars(select(GpuPrice)) if _key(r.gpu_model) == _key(model)), None)
    if row is None:
        session.add(GpuPrice(gpu_model=model, usd_per_hour=data.usd_per_hour))
    else:
        row.gpu_model, row.usd_per_hour = model, data.usd_per_hour
    session.flush()
    return next(p for p in list_prices(session) if _key(p.gpu_model) == _key(model))


def delete_price(session: Session, gpu_model: str) -> None:
    """Forget a set price; a catalogue model goes back to its default."""
    ids = [r.id for r in session.scalars(select(GpuPrice)) if _key(r.gpu_model) == _key(gpu_model)]
    if not ids:
        raise NotFound(f"no price set for {gpu_model!r}")
    session.execute(delete(GpuPrice).where(GpuPrice.id.in_(ids)))


def list_overrides(session: Session) -> list[OverrideOut]:
    rows = session.scalars(select(PriceOverride).order_by(PriceOverride.match))
    return [OverrideOut.model_validate(r) for r in rows]


def create_override(session: Session, data: OverrideIn) -> OverrideOut:
    row = PriceOverride(**data.model_dump())
    session.add(row)
    flush_unique(session, f"{data.match!r} already has a price")
    return OverrideOut.model_validate(row)


def update_override(session: Session, override_id: int, data: OverrideIn) -> OverrideOut:
    row = get_or_404(session, PriceOverride, override_id, "host price")
    for key, value in data.model_dump().items():
        setattr(row, key, value)
    flush_unique(session, f"{data.match!r} already has a price")
    return OverrideOut.model_validate(row)


def delete_override(session: Session, override_id: int) -> None:
    delete_or_404(session, PriceOverride, override_id, "host price")
