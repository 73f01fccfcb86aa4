"""The server's scheduled jobs, built from what the app holds:

- `alerts.live` every INFERWATCH_NOTIFY__ALERT_INTERVAL_S (15 s past the minute, so the
  last whole minute's telemetry has arrived): the live alert rules.
- `alerts.findings` every INFERWATCH_NOTIFY__FINDING_ALERT_INTERVAL_S: findings over the
  last INFERWATCH_NOTIFY__FINDING_ALERT_WINDOW, then the finding alert rules.
- `report.weekly` at the saved schedule (day, hour, time zone): the weekly email. A slot
  missed by up to 6 hours (the server was restarting) is sent late rather than skipped.
- `housekeeping` hourly: old deliveries and long-resolved alert states are deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from api.alerts.delivery import Deliverer
from api.alerts.runner import dispatch, run_finding_rules, run_live_rules
from api.jobs.schedule import next_interval_slot, next_weekly_slot
from api.jobs.scheduler import Job
from api.meta import Meta
from api.meta.acks import muted_fingerprints
from api.meta.alert_rules import enabled_rules
from api.meta.alert_states import prune_resolved
from api.meta.overlay import with_configured
from api.meta.recipients import enabled_addresses, get_schedule
from api.meta.webhooks import prune_deliveries
from api.settings import Settings
from api.store import Store
from api.timewindow import window_ending

log = logging.getLogger(__name__)

LIVE_OFFSET_S = 15
FINDINGS_OFFSET_S = 30
RESOLVED_KEPT = timedelta(days=30)
REPORT_CATCH_UP = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    meta: Meta
    store: Store
    deliverer: Deliverer


def run_live_alerts(ctx: Context, slot: datetime) -> None:
    summary = run_live_rules(ctx.meta, ctx.store, ctx.settings, slot)
    queued = dispatch(ctx.deliverer, summary)
    if summary.transitions:
        log.info(
            "live alerts: %d rule(s), %d transition(s), %d deliveries",
            summary.rules,
            summary.transitions,
            queued,
        )


def run_finding_alerts(ctx: Context, slot: datetime) -> None:
    from api.findings.engine import run_findings

    with ctx.meta.session() as session:
        if not any(rule.kind == "finding" for rule in enabled_rules(session)):
            return
        configured = with_configured(ctx.settings, session)
        muted = muted_fingerprints(session, now=slot)
    window = window_ending(ctx.settings.notify.finding_alert_window, end=slot)
    found = run_findings(ctx.store, configured, window)
    summary = run_finding_rules(ctx.meta, ctx.settings, found, muted, slot)
    queued = dispatch(ctx.deliverer, summary)
    if summary.transitions:
        log.info("finding alerts: %d transition(s), %d deliveries", summary.transitions, queued)


def next_report_slot(ctx: Context, after: datetime) -> datetime | None:
    with ctx.meta.session() as session:
        schedule = get_schedule(session, ctx.settings.notify)
    if not schedule.enabled:
        return None
    return next_weekly_slot(after, schedule.day, schedule.hour, schedule.timezone)


def send_weekly_report(ctx: Context, slot: datetime) -> int:
    """Build and send the weekly email for `slot`; returns how many recipients took it."""
    from api.reports.data import gather_weekly_inputs
    from api.reports.smtp import send
    from api.reports.weekly import build_weekly_report

    with ctx.meta.session() as session:
        schedule = get_schedule(session, ctx.settings.notify)
        recipients = enabled_addresses(session)
    if not recipients:
        log.info("weekly report: no recipients configured; nothing sent")
        return 0
    if not ctx.settings.notify.smtp_host:
        log.warning(
            "weekly report: %d recipient(s) but no SMTP server (INFERWATCH_NOTIFY__SMTP_HOST)",
            len(recipients),
        )
        return 0
    inputs = gather_weekly_inputs(ctx.store, ctx.meta, ctx.settings, sent_at=slot, tz=schedule.timezone)
    sent = send(build_weekly_report(inputs), ctx.settings.notify, recipients)
    log.info("weekly report sent to %d recipient(s)", sent)
    return sent


def housekeeping(ctx: Context, slot: datetime) -> None:
    with ctx.meta.session() as session:
        deliveries = prune_deliveries(session, slot - timedelta(days=ctx.settings.notify.delivery_log_days))
        states = prune_resolved(session, slot - RESOLVED_KEPT)
    if deliveries or states:
        log.info("housekeeping: %d old deliveries and %d resolved alert states deleted", deliveries, states)


def build_jobs(ctx: Context) -> list[Job]:
    n = ctx.settings.notify
    lease = timedelta(seconds=n.lease_ttl_s)
    return [
        Job(
            "alerts.live",
            lambda after: next_interval_slot(after, n.alert_interval_s, LIVE_OFFSET_S),
            partial(run_live_alerts, ctx),
            lease,
        ),
        Job(
            "alerts.findings",
            lambda after: next_interval_slot(after, n.finding_alert_interval_s, FINDINGS_OFFSET_S),
            partial(run_finding_alerts, ctx),
            lease,
        ),
        Job(
            "report.weekly",
            partial(next_report_slot, ctx),
            partial(send_weekly_report, ctx),
            lease,
            catch_up=REPORT_CATCH_UP,
        ),
        Job(
            "housekeeping",
            lambda after: next_interval_slot(after, 3600, 45),
            partial(housekeeping, ctx),
            lease,
        ),
    ]
