"""The metadata database's tables. Alembic migrations under `migrations/alembic/versions`
create exactly these (a test compares them); change both together.

Times are UTC-aware (`UTCDateTime`). Enumerated values are short strings checked by the
service modules' input models, not database enums, so adding a value needs no migration.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api.meta.db import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- cost ------------------------------------------------------------------------------------


class GpuPrice(Timestamps, Base):
    """Dollars per GPU-hour for a GPU model: a catalogue key (`h100-sxm`) or an NVML
    product name (`NVIDIA H100 80GB HBM3`). Replaces the catalogue's default."""

    __tablename__ = "gpu_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(128), unique=True)
    usd_per_hour: Mapped[float] = mapped_column(Float)


class PriceOverride(Timestamps, Base):
    """Dollars per GPU-hour for every GPU of one host (`gpu-node-07`) or of a pool of hosts
    named by a pattern (`spot-*`). Wins over GPU prices."""

    __tablename__ = "price_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    match: Mapped[str] = mapped_column(String(255), unique=True)
    usd_per_hour: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")


# --- deployments -------------------------------------------------------------------------------


class Deployment(Timestamps, Base):
    """What the telemetry cannot tell about a deployment: its latency SLOs and the shape of
    one replica. `name` matches the telemetry's deployment label. Empty (null) fields fall
    back to the findings' defaults."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    ttft_p95_ms: Mapped[float | None] = mapped_column(Float)
    itl_p95_ms: Mapped[float | None] = mapped_column(Float)
    min_replicas: Mapped[int | None] = mapped_column(Integer)
    gpus_per_replica: Mapped[int | None] = mapped_column(Integer)
    params_b: Mapped[float | None] = mapped_column(Float)
    weight_bits: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str] = mapped_column(Text, default="")


# --- alerts ------------------------------------------------------------------------------------


class AlertRuleWebhook(Base):
    __tablename__ = "alert_rule_webhooks"

    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True)


class AlertRule(Timestamps, Base):
    """When to tell someone. `kind` picks the condition; `threshold` and `for_minutes`
    mean what docs/alerts.md says for that kind. No webhooks linked = every enabled one."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    threshold: Mapped[float | None] = mapped_column(Float)
    for_minutes: Mapped[int] = mapped_column(Integer, default=10)
    cluster: Mapped[str] = mapped_column(String(255), default="")
    deployment: Mapped[str] = mapped_column(String(255), default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    finding_kind: Mapped[str] = mapped_column(String(64), default="")

    webhooks: Mapped[list[Webhook]] = relationship(secondary="alert_rule_webhooks", lazy="selectin")


class AlertState(Base):
    """The last known state of one rule for one subject (a GPU, a deployment, a host, a
    finding fingerprint). Persisted so a restart neither repeats nor forgets alerts."""

    __tablename__ = "alert_states"
    __table_args__ = (UniqueConstraint("rule_id", "subject"), Index(None, "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    fired_at: Mapped[datetime] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
    value: Mapped[float | None] = mapped_column(Float)
    title: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of strings
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Webhook(Timestamps, Base):
    """An HTTP endpoint alerts are POSTed to. The secret signs each body (HMAC-SHA256), so
    it is kept as given; the API shows only its first characters."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16), default="inferwatch")  # inferwatch | slack
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class WebhookDelivery(Base):
    """One message to one webhook and what became of it (the delivery log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index(None, "webhook_id", "created_at"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))  # alert | finding | test
    alert_status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    subject: Mapped[str] = mapped_column(String(500), default="")
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("alert_rules.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_ms: Mapped[float | None] = mapped_column(Float)


class FindingAck(Base):
    """A finding someone acknowledged (hidden from alerts and the email's top list) or
    snoozed until a time. Keyed by the finding's stable fingerprint."""

    __tablename__ = "finding_acks"

    fingerprint: Mapped[str] = mapped_column(String(128), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # ack | snooze
    until: Mapped[datetime | None] = mapped_column()
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- the weekly report -------------------------------------------------------------------------


class ReportRecipient(Base):
    __tablename__ = "report_recipients"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportSchedule(Base):
    """The weekly email's schedule: one row (id 1). Absent: the settings' defaults."""

    __tablename__ = "report_schedule"

    id: Mapped[int] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    day: Mapped[str] = mapped_column(String(3))  # mon … sun
    hour: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- access --------------------------------------------------------------------------------------


class ApiToken(Base):
    """An API token. Only the SHA-256 of the secret is kept (secrets are 256-bit random,
    so a slow hash adds nothing) plus its first characters, to tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))  # ingest | read | admin
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class User(Base):
    """A person who signs in to the web app. `password_hash` is a self-describing scrypt
    hash (see `api.meta.hashing`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")  # viewer | admin
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()


# --- jobs ----------------------------------------------------------------------------------------


class JobLease(Base):
    """Which replica runs a scheduled job, and the last slot (scheduled time) it was run
    for. A replica takes the lease only for a slot later than `slot`, and only when the
    previous holder finished or its lease expired — so each slot runs once."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    slot: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
