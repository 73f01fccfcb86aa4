"""Regenerate docs/email-example.html and docs/email-example.txt: the weekly email built
from a fixed, made-up week of a small fleet (labelled as an example in the docs).

    python scripts/email_example.py
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity
from api.reports.model import DayCost, WeekFigures, WeeklyInputs
from api.reports.weekly import build_weekly_report
from api.timewindow import Window

DOCS = Path(__file__).resolve().parent.parent / "docs"
START = datetime(2026, 3, 23, 0, 0, tzinfo=UTC)
END = START + timedelta(days=7)
WINDOW = Window(START, END)


def finding(
    kind: str,
    severity: Severity,
    scope: Scope,
    title: str,
    usd: float,
    effect: Effect,
    fix: str,
    key: str = "",
) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,
        scope=scope,
        window=WINDOW,
        title=title,
        evidence={"usd_per_week": usd},
        query="example",
        weekly_usd=usd,
        effect=effect,
        recommendation=fix,
        key=key,
    )


def example() -> WeeklyInputs:
    findings = [
        finding(
            "idle_held",
            Severity.HIGH,
            Scope(ScopeKind.DEPLOYMENT, "chat-llama-70b", "prod"),
            "chat-llama-70b: 8 GPUs idle 41% of the time holding the model, $1,912/week",
            1912.40,
            Effect.SAVING,
            "These GPUs keep a model loaded while no request runs: scale the deployment "
            "down in idle periods. Or share the GPUs.",
        ),
        finding(
            "idle_pattern",
            Severity.HIGH,
            Scope(ScopeKind.DEPLOYMENT, "chat-llama-70b", "prod"),
            "idle 01:00–07:00 on weekdays: 6 GPUs, $1,340/week",
            1340.0,
            Effect.SAVING,
            "Scale these GPUs down on a schedule (01:00–07:00 weekdays) and back up before 07:00.",
            key="weekdays:1:6",
        ),
        finding(
            "fleet_oversized",
            Severity.MEDIUM,
            Scope(ScopeKind.DEPLOYMENT, "embed-bge", "prod"),
            "embed-bge: 4 replicas provisioned, demand needed 1.6 on average",
            612.75,
            Effect.SAVING,
            "Autoscale on load with at least 1 replica and a 15-minute scale-down delay.",
        ),
        finding(
            "idle_empty",
            Severity.MEDIUM,
            Scope(ScopeKind.HOST, "gpu-node-12", "prod"),
            "gpu-node-12: 2 GPUs with nothing loaded for 139 h",
            431.20,
            Effect.SAVING,
            "Nothing runs on these GPUs: release them or schedule work onto them.",
        ),
        finding(
            "fleet_undersized",
            Severity.MEDIUM,
            Scope(ScopeKind.DEPLOYMENT, "code-qwen-32b", "prod"),
            "code-qwen-32b: TTFT p95 3.4 s over its 2 s SLO at peak; 2 more replicas needed",
            574.0,
            Effect.COST,
            "Add 2 replicas at peak (weekday 09:00–18:00) or enable chunked prefill.",
        ),
        finding(
            "speculative_candidate",
            Severity.LOW,
            Scope(ScopeKind.DEPLOYMENT, "chat-llama-70b", "prod"),
            "chat-llama-70b: 63% of requests decode-bound at low concurrency; ~1.9× faster decode",
            0.0,
            Effect.NONE,
            "Try speculative decoding with a small draft model (γ = 4).",
        ),
    ]
    spend = [1489.6, 1502.3, 1498.0, 1511.2, 1476.9, 1380.4, 1371.5]
    idle = [402.1, 388.6, 379.9, 411.0, 455.3, 702.8, 731.4]
    days = tuple(
        DayCost(date(2026, 3, 23) + timedelta(days=i), s, d)
        for i, (s, d) in enumerate(zip(spend, idle, strict=True))
    )
    gpu_hours = 1344.0 * 3
    this_week = WeekFigures(
        START,
        END,
        "UTC",
        sum(spend),
        sum(idle),
        gpu_hours,
        gpu_hours * sum(idle) / sum(spend),
        days,
        findings,
    )
    last_week = WeekFigures(START - timedelta(days=7), START, "UTC", 10_874.0, 3_012.0, gpu_hours, 880.0)
    return WeeklyInputs(this_week, last_week, "https://inferwatch.example.com", top_n=5)


def main() -> None:
    email = build_weekly_report(example())
    (DOCS / "email-example.html").write_text(email.html, encoding="utf-8")
    (DOCS / "email-example.txt").write_text(f"Subject: {email.subject}\n\n{email.text}", encoding="utf-8")
    print(f"wrote docs/email-example.html and .txt: {email.subject}")


if __name__ == "__main__":
    main()
