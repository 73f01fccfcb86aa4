"""Settings for how inferwatch reaches people: scheduled jobs, alert evaluation, webhook
delivery, SMTP and the weekly report's default schedule.

One nested model on `Settings.notify`, so every variable is `INFERWATCH_NOTIFY__<FIELD>`
(for example `INFERWATCH_NOTIFY__SMTP_HOST`). docs/configuration.md documents each one.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from api.timewindow import parse_duration

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- scheduler ----------------------------------------------------------------------
    scheduler_enabled: bool = Field(
        True,
        description="Run the scheduled jobs (alert evaluation, weekly report) in this server process. "
        "With several replicas, leave it on everywhere: a lease in the metadata database makes each "
        "job run once.",
    )
    alert_interval_s: Annotated[int, Field(ge=10, le=3600)] = Field(
        60, description="Seconds between evaluations of the live alert rules."
    )
    finding_alert_interval_s: Annotated[int, Field(ge=60, le=86400)] = Field(
        900, description="Seconds between evaluations of the finding alert rules (they run every finding)."
    )
    finding_alert_window: str = Field(
        "1d", description="Window the finding alert rules compute findings over (e.g. 1d, 12h)."
    )
    lease_ttl_s: Annotated[int, Field(ge=30, le=86400)] = Field(
        900,
        description="Seconds a replica holds a job's lease; another replica may take the job after "
        "that if the holder died mid-run.",
    )

    # --- webhooks -----------------------------------------------------------------------
    webhook_timeout_s: Annotated[float, Field(gt=0, le=300)] = Field(
        10.0, description="Seconds one webhook attempt may take (connect, send, read the answer)."
    )
    webhook_deadline_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        120.0, description="Seconds a delivery may take in all, retries and waits included; then it gives up."
    )
    webhook_max_attempts: Annotated[int, Field(ge=1, le=50)] = Field(
        8, description="Most attempts per delivery."
    )
    webhook_backoff_s: Annotated[float, Field(ge=0, le=600)] = Field(
        1.0, description="Wait before the first retry, in seconds; doubles each retry."
    )
    webhook_max_backoff_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        60.0, description="Longest wait between two attempts when the receiver sends no Retry-After."
    )
    webhook_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="Deliveries sent at once; a slow receiver holds one worker, never the scheduler."
    )
    delivery_log_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        30, description="Days the webhook delivery log keeps each delivery."
    )

    # --- SMTP ---------------------------------------------------------------------------
    smtp_host: str = Field("", description="SMTP server host. Empty: email is off.")
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = Field(587, description="SMTP server port.")
    smtp_user: str = Field("", description="SMTP login user. Empty: no authentication.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP login password.")
    smtp_starttls: bool = Field(
        True,
        description="Upgrade the connection with STARTTLS before authenticating (port 587); "
        "ignored when SMTP_SSL is on.",
    )
    smtp_ssl: bool = Field(
        False, description="Connect with TLS from the start (SMTPS, port 465) instead of STARTTLS."
    )
    smtp_ca_file: str = Field(
        "",
        description="PEM file of the CA(s) that signed the SMTP server's certificate, for a private CA. "
        "Empty: the system's trusted CAs.",
    )
    smtp_from: str = Field("inferwatch@localhost", description="From address of the weekly email.")
    smtp_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        30.0, description="Seconds an SMTP conversation may block on the network."
    )

    # --- weekly report ------------------------------------------------------------------
    report_day: Weekday = Field(
        "mon",
        description="Default weekday the weekly email goes out (mon … sun); the settings page overrides it.",
    )
    report_hour: Annotated[int, Field(ge=0, le=23)] = Field(
        9, description="Default local hour (0–23) the weekly email goes out."
    )
    report_timezone: str = Field(
        "UTC", description="Default IANA time zone of the report schedule and its days."
    )
    report_top_findings: Annotated[int, Field(ge=1, le=50)] = Field(
        5, description="Findings listed in the weekly email, largest dollars first."
    )

    @field_validator("report_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("finding_alert_window")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except Exception as exc:
            raise ValueError(str(exc)) from exc
        return value


def check_timezone(value: str) -> str:
    """`value` if it names an IANA time zone, else ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from exc
    return value
