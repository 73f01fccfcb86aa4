"""Findings pages: the list (`/findings`) and one finding (`/findings/{id}`) with its
evidence charted, its recommendation, and acknowledge / snooze buttons (CSRF-protected
forms that call the metadata service `api.meta.acks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.errors import BadRequest, NotFound
from api.findings.engine import align
from api.findings.hour_rows import HourRows
from api.meta.acks import AckIn, AckOut, delete_ack, list_acks, set_ack
from api.routes.findings import FindingOut, finding_out
from api.routes.results import kept_findings
from api.timewindow import Window
from web.auth import current_user
from web.pages.common import PageInfo, PageRequest, page_request
from web.render import respond

router = APIRouter(include_in_schema=False)

SNOOZE_CHOICES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
KIND_LABELS = {
    "idle_held": "Idle, memory held",
    "idle_empty": "Idle, nothing loaded",
    "idle_pattern": "Idle on a schedule",
    "fleet_oversized": "Over-sized fleet",
    "fleet_undersized": "Under-sized fleet",
    "fleet_wrong_gpu_type": "Wrong GPU type",
    "speculative_candidate": "Speculative decoding would help",
    "speculative_off": "Speculative decoding hurts",
    "quantisation": "Quantisation candidate",
    "unit_cost": "Unit cost",
}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind) or kind.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class FindingView:
    finding: FindingOut
    kind_label: str
    muted: str = ""  # "", "acknowledged" or "snoozed"
    muted_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class WasteLine:
    kind: str
    label: str
    weekly_usd: float
    findings: int


@dataclass(frozen=True, slots=True)
class FindingsPage:
    page: PageInfo
    findings: list[FindingView]
    kind: str
    show_muted: bool
    muted_count: int
    kinds: list[str]
    weekly_saving_usd: float


@dataclass(frozen=True, slots=True)
class EvidenceChart:
    key: str
    title: str
    labels: list[str]
    values: list[float]


@dataclass(frozen=True, slots=True)
class EvidenceTable:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True, slots=True)
class ScopeSeries:
    """The finding's scope over the same window, charted beside its evidence: a deployment's
    latency and load, or a GPU's utilisation."""

    title: str
    times: list[datetime]
    lines: dict[str, list[float | None]]
    unit: str
    link: str


@dataclass(frozen=True, slots=True)
class FindingPage:
    page: PageInfo
    view: FindingView
    figures: dict[str, Any]
    charts: list[EvidenceChart] = field(default_factory=list)
    tables: list[EvidenceTable] = field(default_factory=list)
    scope_series: list[ScopeSeries] = field(default_factory=list)
    snooze_choices: list[str] = field(default_factory=lambda: list(SNOOZE_CHOICES))


def _acks(pr: PageRequest) -> dict[str, AckOut]:
    meta = getattr(pr.request.app.state, "meta", None)
    if meta is None:
        return {}
    now = datetime.now(UTC)
    with meta.session() as session:
        acks = list_acks(session, limit=1000).items
    return {a.fingerprint: a for a in acks if a.action == "ack" or (a.until and a.until > now)}


def load_views(pr: PageRequest, *, hour_rows: HourRows | None = None) -> list[FindingView]:
    """Every finding over the page's window with its acknowledgement state (`hour_rows`: as
    `kept_findings`)."""
    acks = _acks(pr)
    views = []
    findings = kept_findings(pr.store, pr.settings, align(pr.window), hour_rows=hour_rows)
    for f in findings:
        out = finding_out(f)
        ack = acks.get(out.id)
        muted = "" if ack is None else ("acknowledged" if ack.action == "ack" else "snoozed")
        views.append(FindingView(out, kind_label(out.kind), muted, ack.until if ack else None))
    return views


def waste_by_cause(views: list[FindingView]) -> list[WasteLine]:
    """Weekly dollars of saving findings by kind; idle_pattern is left out (its hours are
    already in idle_held / idle_empty)."""
    lines: dict[str, WasteLine] = {}
    for v in views:
        f = v.finding
        if f.effect != "saving" or f.kind == "idle_pattern":
            continue
        old = lines.get(f.kind) or WasteLine(f.kind, v.kind_label, 0.0, 0)
        lines[f.kind] = WasteLine(
            f.kind, v.kind_label, round(old.weekly_usd + f.weekly_usd, 2), old.findings + 1
        )
    return sorted(lines.values(), key=lambda w: -w.weekly_usd)


def build_findings(request: Request) -> FindingsPage:
    pr = page_request(request)
    kind = request.query_params.get("kind", "")[:64]
    show_muted = request.query_params.get("muted") == "1"
    views = load_views(pr)
    kinds = sorted({v.finding.kind for v in views})
    saving = sum(w.weekly_usd for w in waste_by_cause([v for v in views if not v.muted]))
    muted_count = sum(1 for v in views if v.muted)
    shown = [v for v in views if (not kind or v.finding.kind == kind) and (show_muted or not v.muted)]
    return FindingsPage(
        pr.info("Findings", clusters={v.finding.scope.cluster for v in views}),
        shown,
        kind,
        show_muted,
        muted_count,
        kinds,
        round(saving, 2),
    )


def evidence_parts(
    evidence: dict[str, Any],
) -> tuple[dict[str, Any], list[EvidenceChart], list[EvidenceTable]]:
    """Split a finding's evidence into scalar figures, charts (a mapping or list of numbers)
    and tables (a list of records)."""
    figures: dict[str, Any] = {}
    charts: list[EvidenceChart] = []
    tables: list[EvidenceTable] = []
    for key, value in evidence.items():
        title = key.replace("_", " ")
        if isinstance(value, dict) and value and all(isinstance(v, int | float) for v in value.values()):
            charts.append(
                EvidenceChart(key, title, [str(k) for k in value], [float(v) for v in value.values()])
            )
        elif isinstance(value, list) and len(value) > 1 and all(isinstance(v, int | float) for v in value):
            charts.append(
                EvidenceChart(key, title, [str(i) for i in range(len(value))], [float(v) for v in value])
            )
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            tables.append(
                EvidenceTable(key, title, columns, [[row.get(c) for c in columns] for row in value])
            )
            numeric = [c for c in columns if all(isinstance(r.get(c), int | float) for r in value)]
            labels = [c for c in columns if all(isinstance(r.get(c), str) for r in value)]
            if numeric and labels and len(value) > 1:
                charts.append(
                    EvidenceChart(
                        f"{key}.{numeric[0]}",
                        f"{title}: {numeric[0].replace('_', ' ')}",
                        [str(r[labels[0]]) for r in value],
                        [float(r[numeric[0]]) for r in value],
                    )
                )
        else:
            figures[key] = value
    return figures, charts, tables


def scope_series(pr: PageRequest, finding: FindingOut) -> list[ScopeSeries]:
    """Series of the finding's scope over its window (none for host and cluster scopes, or
    when the scope has no data left in the window)."""
    from api.routes.deployments import read_deployment
    from api.routes.gpus import read_gpu

    window = Window(finding.window.start, finding.window.end)
    scope = finding.scope
    try:
        if scope.kind == "deployment":
            d = read_deployment(pr.store, pr.settings, window, scope.cluster, scope.id).series
            link = f"/deployments/{scope.cluster}/{scope.id}"
            return [
                ScopeSeries(
                    f"{scope.id}: latency",
                    d.times,
                    {"TTFT p95": d.ttft_p95_s, "inter-token p95": d.itl_p95_s, "queue p95": d.queue_p95_s},
                    "s",
                    link,
                ),
                ScopeSeries(
                    f"{scope.id}: load",
                    d.times,
                    {
                        "requests/s": d.requests_per_s,
                        "in flight": d.concurrency_mean,
                        "engine: waiting": d.engine_waiting,
                    },
                    "",
                    link,
                ),
            ]
        if scope.kind == "gpu":
            g = read_gpu(pr.store, pr.settings, window, scope.id)
            return [
                ScopeSeries(
                    f"{g.gpu.host} / GPU {g.gpu.gpu_index}: utilisation",
                    [p.time for p in g.series],
                    {
                        "utilisation %": [p.util_mean_pct for p in g.series],
                        "requests in flight": [p.in_flight_mean for p in g.series],
                    },
                    "",
                    f"/gpus/{scope.id}",
                )
            ]
    except NotFound:
        return []
    return []


def build_finding(request: Request, finding_id: str) -> FindingPage:
    pr = page_request(request)
    for view in load_views(pr):
        if view.finding.id == finding_id:
            figures, charts, tables = evidence_parts(view.finding.evidence)
            return FindingPage(
                pr.info(view.finding.title, clusters=[view.finding.scope.cluster]),
                view,
                figures,
                charts,
                tables,
                scope_series(pr, view.finding),
            )
    raise NotFound(f"no finding {finding_id!r} in this window: it may have cleared, or need a longer window")


@router.get("/findings")
@router.get("/findings.json")
async def findings_page(request: Request) -> Response:
    return respond(request, "findings.html", await run_in_threadpool(build_findings, request))


@router.get("/findings/{finding_id}")  # registered second: the .json route must win
@router.get("/findings/{finding_id}.json")
async def finding_page(request: Request, finding_id: str) -> Response:
    return respond(request, "finding.html", await run_in_threadpool(build_finding, request, finding_id[:64]))


@router.post("/findings/{finding_id}/ack")
async def acknowledge(request: Request, finding_id: str) -> Response:
    """Acknowledge, snooze or un-mute a finding, then return to it."""
    form = await request.form()
    request.app.state.web_csrf.check(request, str(form.get("csrf_token") or ""))
    action = str(form.get("action") or "")
    back = _back(str(form.get("back") or ""), f"/findings/{finding_id}")

    def apply() -> None:
        with request.app.state.meta.session() as session:
            if action == "unmute":
                delete_ack(session, finding_id)
                return
            until = None
            if action == "snooze":
                length = SNOOZE_CHOICES.get(str(form.get("snooze") or ""))
                if length is None:
                    raise BadRequest(f"snooze for one of {', '.join(SNOOZE_CHOICES)}")
                until = datetime.now(UTC) + length
            elif action != "ack":
                raise BadRequest("action must be ack, snooze or unmute")
            try:
                data = AckIn(
                    fingerprint=finding_id,
                    action="snooze" if action == "snooze" else "ack",
                    until=until,
                    note=str(form.get("note") or "")[:2000],
                    created_by=current_user(request),
                )
            except ValidationError as exc:
                raise BadRequest(str(exc.errors()[0]["msg"])) from exc
            set_ack(session, data)

    await run_in_threadpool(apply)
    return RedirectResponse(back, status_code=303)


def _back(target: str, default: str) -> str:
    """Only a local path (no scheme, no host) is followed back."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default
