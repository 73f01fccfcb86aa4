"""One evaluation of the alert rules: query, evaluate, persist, queue deliveries.

For each enabled rule: read what it watches (rollup queries for live rules; the findings
handed in for finding rules), evaluate against its persisted states, and — in one
metadata transaction — save the new states and record a pending delivery per transition
and webhook. Deliveries are queued after the commit, so a crash in between loses a
message rather than repeating a storm of them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from api.alerts import conditions
from api.alerts.delivery import Deliverer, Job
from api.alerts.evaluate import evaluate
from api.alerts.model import Observation, Transition
from api.alerts.payloads import Event, render
from api.errors import InferwatchError
from api.findings.model import Finding
from api.meta import Meta
from api.meta.alert_rules import AlertRuleOut, enabled_rules
from api.meta.alert_states import load_states, save_states
from api.meta.webhooks import Target, record_delivery, targets
from api.settings import Settings
from api.store import Store
from api.store.sql import alerts as sql

log = logging.getLogger(__name__)

LIVE_KINDS = ("gpu_idle", "slo_ttft", "slo_itl", "kv_cache", "collector_silent")
SILENT_LOOKBACK = timedelta(days=7)


@dataclass(slots=True)
class RunSummary:
    rules: int = 0
    transitions: int = 0
    jobs: list[Job] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def last_complete_minute(now: datetime) -> datetime:
    """The end of the last whole minute before `now` (the start of the current one)."""
    return now.replace(second=0, microsecond=0)


def slo_lookup(settings: Settings, metric: Literal["ttft", "itl"]) -> Callable[[str], float | None]:
    """deployment → SLO seconds: its profile's (saved deployments laid over by the caller),
    else the findings' default."""
    findings = settings.findings

    def lookup(deployment: str) -> float | None:
        profile = findings.profile(deployment)
        if metric == "ttft":
            return profile.ttft_p95_slo_s or findings.ttft_p95_slo_s
        return profile.itl_p95_slo_s or findings.itl_p95_slo_s

    return lookup


def observe_live(store: Store, settings: Settings, rule: AlertRuleOut, now: datetime) -> list[Observation]:
    """What a live rule sees now, from the rollups."""
    until = last_complete_minute(now)
    since = until - timedelta(minutes=rule.for_minutes)
    scope = {"cluster": rule.cluster, "deployment": rule.deployment}
    if rule.kind == "gpu_idle":
        rows = store.rows(
            sql.GPU_IDLE,
            since=since,
            until=until,
            idle_pct=float(rule.threshold or 0),
            host=rule.host,
            **scope,
        )
        return conditions.gpu_idle(rows, idle_pct=float(rule.threshold or 0), for_minutes=rule.for_minutes)
    if rule.kind in ("slo_ttft", "slo_itl"):
        metric: Literal["ttft", "itl"] = "ttft" if rule.kind == "slo_ttft" else "itl"
        rows = store.rows(sql.DEPLOYMENT_LATENCY, since=since, until=until, **scope)
        return conditions.slo(
            rows,
            metric=metric,
            slo_s=slo_lookup(settings, metric),
            for_minutes=rule.for_minutes,
        )
    if rule.kind == "kv_cache":
        threshold = float(rule.threshold or 0)
        rows = store.rows(
            sql.KV_CACHE, since=since, until=until, threshold=threshold / 100, host=rule.host, **scope
        )
        return conditions.kv_cache(rows, threshold_pct=threshold, for_minutes=rule.for_minutes)
    if rule.kind == "collector_silent":
        rows = store.rows(sql.HOST_LAST_SEEN, since=now - SILENT_LOOKBACK, host=rule.host, **scope)
        return conditions.collector_silent(rows, now=now, for_minutes=rule.for_minutes)
    raise ValueError(f"not a live rule kind: {rule.kind}")


def _event(rule: AlertRuleOut, t: Transition, finding: Finding | None) -> Event:
    return Event(
        type="finding" if rule.kind == "finding" else "alert",
        status=t.status,
        title=t.title,
        subject=t.subject,
        severity=rule.severity,
        at=t.at,
        fired_at=t.fired_at,
        resolved_at=t.at if t.status == "resolved" else None,
        value=t.value,
        rule_id=rule.id,
        rule_name=rule.name,
        rule_kind=rule.kind,
        labels=t.labels,
        finding=finding.to_dict() if finding is not None else None,
    )


def _settle(
    meta: Meta,
    settings: Settings,
    rule: AlertRuleOut,
    observations: Iterable[Observation],
    now: datetime,
    summary: RunSummary,
    findings_by_fp: Mapping[str, Finding] | None = None,
) -> None:
    """Evaluate one rule against its states and persist the outcome with its deliveries."""
    with meta.session() as session:
        states = load_states(session, rule.id)
        observed = list(observations)
        if rule.kind == "collector_silent":
            # A host gone from the lookback keeps its state: its silence has not ended.
            seen = {o.subject for o in observed}
            observed += [Observation(s, None) for s in states if s not in seen]
        result = evaluate(observed, states, now)
        save_states(session, rule.id, result.changed)
        if not result.transitions:
            return
        sinks: list[Target] = targets(session, rule.webhook_ids)
        for t in result.transitions:
            finding = (findings_by_fp or {}).get(t.labels.get("fingerprint", ""))
            event = _event(rule, t, finding)
            for target in sinks:
                body = render(event, settings.base_url, target.format)
                delivery_id = record_delivery(
                    session,
                    webhook_id=target.id,
                    event=event.type,
                    alert_status=t.status,
                    payload=body.decode(),
                    subject=t.subject,
                    rule_id=rule.id,
                )
                summary.jobs.append(Job(delivery_id, target.url, target.secret, body, event.type))
        summary.transitions += len(result.transitions)


def run_live_rules(meta: Meta, store: Store, settings: Settings, now: datetime) -> RunSummary:
    """Evaluate every enabled live rule at `now`. A rule that fails is logged and skipped;
    its states stay as they were."""
    summary = RunSummary()
    with meta.session() as session:
        rules = [r for r in enabled_rules(session) if r.kind in LIVE_KINDS]
    for rule in rules:
        try:
            observations = observe_live(store, settings, rule, now)
            _settle(meta, settings, rule, observations, now, summary)
            summary.rules += 1
        except InferwatchError as exc:
            log.warning("alert rule %r not evaluated: %s", rule.name, exc.message)
            summary.errors[rule.name] = exc.message
    return summary


def run_finding_rules(
    meta: Meta, settings: Settings, found: list[Finding], muted: set[str], now: datetime
) -> RunSummary:
    """Evaluate every enabled finding rule on `found` (the findings computed just now)."""
    summary = RunSummary()
    by_fp = {f.fingerprint: f for f in found}
    with meta.session() as session:
        rules = [r for r in enabled_rules(session) if r.kind == "finding"]
    for rule in rules:
        threshold = rule.threshold if rule.threshold is not None and math.isfinite(rule.threshold) else 0.0
        observations = conditions.findings(
            found,
            min_weekly_usd=threshold,
            kind=rule.finding_kind,
            cluster=rule.cluster,
            deployment=rule.deployment,
            muted=muted,
        )
        try:
            _settle(meta, settings, rule, observations, now, summary, by_fp)
            summary.rules += 1
        except InferwatchError as exc:
            log.warning("alert rule %r not evaluated: %s", rule.name, exc.message)
            summary.errors[rule.name] = exc.message
    return summary


def dispatch(deliverer: Deliverer, summary: RunSummary) -> int:
    """Queue the summary's deliveries; returns how many were queued."""
    return sum(1 for job in summary.jobs if deliverer.submit(job))
