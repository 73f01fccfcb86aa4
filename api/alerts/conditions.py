"""From query rows (or findings) to observations, one function per rule kind. Pure: the
rows come from `api/store/sql/alerts.py` in production and are built by hand in tests.

Subjects are stable strings: `gpu/<cluster>/<host>/<uuid>`, `deployment/<cluster>/<name>`,
`engine/<cluster>/<deployment>/<host>/<instance>`, `host/<cluster>/<host>`,
`finding/<fingerprint>`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from api.alerts.model import Observation
from api.findings.model import Effect, Finding, ScopeKind, usd

Row = Mapping[str, Any]


def gpu_idle(rows: Iterable[Row], *, idle_pct: float, for_minutes: int) -> list[Observation]:
    """Breaching: the GPU was idle in each of the last `for_minutes` minutes."""
    out = []
    for r in rows:
        idle = int(r["minutes_idle"])
        peak = r.get("peak_util_pct")
        peak_text = "no utilisation reported" if peak is None or math.isnan(peak) else f"peak {peak:.0f}%"
        out.append(
            Observation(
                subject=f"gpu/{r['cluster']}/{r['host']}/{r['gpu_uuid']}",
                breaching=idle >= for_minutes,
                value=None if peak is None or math.isnan(peak) else float(peak),
                title=f"GPU {r['gpu_index']} ({r['gpu_name']}) on {r['host']} idle for {for_minutes} min "
                f"({peak_text}, threshold {idle_pct:g}%)",
                labels={
                    "cluster": r["cluster"],
                    "host": r["host"],
                    "gpu_uuid": r["gpu_uuid"],
                    "gpu_index": str(r["gpu_index"]),
                    "deployment": r.get("deployment", ""),
                },
            )
        )
    return out


def slo(
    rows: Iterable[Row],
    *,
    metric: Literal["ttft", "itl"],
    slo_s: Callable[[str], float | None],
    for_minutes: int,
) -> list[Observation]:
    """Breaching: the deployment's p95 was above its SLO in each of the last `for_minutes`
    minutes. A minute without requests (or without the phase) breaks the run. Deployments
    with no SLO are not observed."""
    column = f"{metric}_p95_s"
    name = "TTFT" if metric == "ttft" else "inter-token latency"
    by_deployment: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        by_deployment[(r["cluster"], r["deployment"])].append(r)
    out = []
    for (cluster, deployment), minutes in sorted(by_deployment.items()):
        target = slo_s(deployment)
        if target is None:
            continue
        p95s = [
            float(m[column])
            for m in sorted(minutes, key=lambda m: m["minute_start"])
            if int(m["requests"]) > 0 and m[column] is not None and not math.isnan(m[column])
        ]
        over = sum(1 for p in p95s if p > target)
        latest_ms = p95s[-1] * 1000 if p95s else None
        latest = f"{latest_ms:,.0f} ms" if latest_ms is not None else "no requests"
        out.append(
            Observation(
                subject=f"deployment/{cluster}/{deployment}",
                breaching=over >= for_minutes,
                value=latest_ms,
                title=f"{deployment}: {name} p95 above its {target * 1000:,.0f} ms SLO for {for_minutes} min "
                f"(latest {latest})",
                labels={
                    "cluster": cluster,
                    "deployment": deployment,
                    "metric": metric,
                    "slo_ms": f"{target * 1000:g}",
                },
            )
        )
    return out


def kv_cache(rows: Iterable[Row], *, threshold_pct: float, for_minutes: int) -> list[Observation]:
    """Breaching: the engine's mean KV-cache use was at or above the threshold in each of
    the last `for_minutes` minutes."""
    out = []
    for r in rows:
        last = float(r["last_usage"]) * 100
        out.append(
            Observation(
                subject=f"engine/{r['cluster']}/{r['deployment']}/{r['host']}/{r['instance']}",
                breaching=int(r["minutes_saturated"]) >= for_minutes,
                value=last,
                title=f"{r['deployment']} on {r['host']}: KV cache at least {threshold_pct:g}% full for "
                f"{for_minutes} min (now {last:.0f}%)",
                labels={
                    "cluster": r["cluster"],
                    "deployment": r["deployment"],
                    "host": r["host"],
                    "instance": r["instance"],
                },
            )
        )
    return out


def collector_silent(rows: Iterable[Row], *, now: datetime, for_minutes: int) -> list[Observation]:
    """Breaching: the host's last GPU sample is at least `for_minutes` old. `last_minute`
    is the start of the last minute with samples, so silence is counted from its end."""
    out = []
    for r in rows:
        last: datetime = r["last_minute"]
        silent = max(0.0, (now - (last + timedelta(minutes=1))).total_seconds() / 60)
        out.append(
            Observation(
                subject=f"host/{r['cluster']}/{r['host']}",
                breaching=silent >= for_minutes,
                value=round(silent, 1),
                title=f"No GPU samples from {r['host']} for {silent:.0f} min "
                f"(last at {last:%Y-%m-%d %H:%M} UTC)",
                labels={"cluster": r["cluster"], "host": r["host"]},
            )
        )
    return out


def findings(
    found: Iterable[Finding],
    *,
    min_weekly_usd: float,
    kind: str = "",
    cluster: str = "",
    deployment: str = "",
    muted: frozenset[str] | set[str] = frozenset(),
) -> list[Observation]:
    """Breaching: a finding of at least `min_weekly_usd` a week that saves or costs money
    (of `kind`, in `cluster`, about `deployment`, if given). Acknowledged or snoozed ones
    are muted: they neither fire nor resolve."""
    out = []
    for f in found:
        if kind and f.kind != kind:
            continue
        if cluster and f.scope.cluster != cluster:
            continue
        if deployment and (f.scope.kind != ScopeKind.DEPLOYMENT or f.scope.id != deployment):
            continue
        if f.effect == Effect.NONE or f.weekly_usd < min_weekly_usd:
            continue
        verb = "saving" if f.effect == Effect.SAVING else "cost"
        out.append(
            Observation(
                subject=f"finding/{f.fingerprint}",
                breaching=None if f.fingerprint in muted else True,
                value=round(f.weekly_usd, 2),
                title=f"{f.title} ({usd(f.weekly_usd)}/week {verb})",
                labels={
                    "fingerprint": f.fingerprint,
                    "kind": f.kind,
                    "severity": f.severity.value,
                    "scope": str(f.scope),
                    "cluster": f.scope.cluster,
                },
            )
        )
    return out
