"""Settings pages (`/settings/{section}`): prices, deployments & SLOs, alert rules, webhooks
(with the delivery log and a test-send button), report recipients & schedule, API tokens.

Each section lists what is saved and offers a form generated from the metadata service's
input model (`web.forms`); posts are CSRF-checked, call the service function, and on a
validation error re-render the page with each problem beside its field (status 400).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.errors import BadRequest, NotFound
from api.meta import alert_rules, deployments, prices, recipients, tokens, webhooks
from api.meta.common import parse
from web.forms import FormField, field_errors, fields_of, form_values
from web.pages.common import PageInfo, is_simulated
from web.render import respond

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Form:
    """One kind of thing a section saves: its list and its create form."""

    key: str
    title: str
    model: type[BaseModel]
    list: Callable[[Session, Request], list[Any]]
    create: Callable[[Session, Any], Any]
    delete: Callable[[Session, str], None] | None
    columns: tuple[str, ...]
    id_field: str = "id"
    submit: str = "Add"
    shown_once: str = ""  # a field of the created object shown once (a secret)


@dataclass(frozen=True, slots=True)
class Section:
    slug: str
    title: str
    intro: str
    forms: tuple[Form, ...]


def _items(page: Any) -> list[Any]:
    return list(page.items)


SECTIONS: dict[str, Section] = {
    s.slug: s
    for s in (
        Section(
            "prices",
            "Prices",
            "Dollars per GPU-hour. Every page's cost uses these; a host or pool price "
            "wins over a GPU price, which wins over the catalogue default.",
            (
                Form(
                    "price",
                    "GPU prices",
                    prices.PriceIn,
                    lambda s, r: prices.list_prices(s),
                    prices.set_price,
                    lambda s, k: prices.delete_price(s, k),
                    ("gpu_model", "label", "usd_per_hour", "default_usd_per_hour", "source"),
                    id_field="gpu_model",
                    submit="Set price",
                ),
                Form(
                    "override",
                    "Host and pool prices",
                    prices.OverrideIn,
                    lambda s, r: prices.list_overrides(s),
                    prices.create_override,
                    lambda s, k: prices.delete_override(s, int(k)),
                    ("match", "usd_per_hour", "note"),
                ),
            ),
        ),
        Section(
            "deployments",
            "Deployments & SLOs",
            "What the telemetry cannot tell: SLOs that the deployment "
            "pages and alerts check, and the replica shape the sizing findings use.",
            (
                Form(
                    "deployment",
                    "Deployments",
                    deployments.DeploymentIn,
                    lambda s, r: _items(deployments.list_deployments(s, limit=1000)),
                    deployments.create_deployment,
                    lambda s, k: deployments.delete_deployment(s, int(k)),
                    ("name", "ttft_p95_ms", "itl_p95_ms", "min_replicas", "gpus_per_replica", "weight_bits"),
                ),
            ),
        ),
        Section(
            "alerts",
            "Alert rules",
            "Conditions checked every minute; firing and resolved messages go to the webhooks.",
            (
                Form(
                    "rule",
                    "Rules",
                    alert_rules.AlertRuleIn,
                    lambda s, r: _items(alert_rules.list_rules(s, limit=1000)),
                    alert_rules.create_rule,
                    lambda s, k: alert_rules.delete_rule(s, int(k)),
                    ("name", "kind", "enabled", "severity", "threshold", "for_minutes", "deployment"),
                ),
            ),
        ),
        Section(
            "webhooks",
            "Webhooks",
            "Where alerts and findings are posted, signed with HMAC-SHA256 "
            "(X-Inferwatch-Signature). Send a test to check the receiver.",
            (
                Form(
                    "webhook",
                    "Webhooks",
                    webhooks.WebhookIn,
                    lambda s, r: _items(webhooks.list_webhooks(s, limit=1000)),
                    webhooks.create_webhook,
                    lambda s, k: webhooks.delete_webhook(s, int(k)),
                    ("name", "url", "format", "enabled", "secret_hint"),
                    shown_once="secret",
                ),
            ),
        ),
        Section(
            "report",
            "Weekly report",
            "Who gets the weekly cost-waste email, and when it goes out.",
            (
                Form(
                    "recipient",
                    "Recipients",
                    recipients.RecipientIn,
                    lambda s, r: _items(recipients.list_recipients(s, limit=1000)),
                    recipients.create_recipient,
                    lambda s, k: recipients.delete_recipient(s, int(k)),
                    ("email", "name", "enabled"),
                ),
                Form(
                    "schedule",
                    "Schedule",
                    recipients.ScheduleIn,
                    lambda s, r: [recipients.get_schedule(s, r.app.state.settings.notify)],
                    recipients.set_schedule,
                    None,
                    ("enabled", "day", "hour", "timezone", "source"),
                    submit="Save schedule",
                ),
            ),
        ),
        Section(
            "tokens",
            "API tokens",
            "Tokens for collectors (ingest), dashboards and scripts (read), and "
            "administration (admin). Only a hash is stored: a new token is shown once.",
            (
                Form(
                    "token",
                    "Tokens",
                    tokens.TokenIn,
                    lambda s, r: _items(tokens.list_tokens(s, limit=1000)),
                    tokens.create_token,
                    lambda s, k: _revoke(s, k),
                    ("name", "prefix", "scope", "created_at", "last_used_at", "revoked_at"),
                    submit="Create token",
                    shown_once="secret",
                ),
            ),
        ),
    )
}


def _revoke(session: Session, key: str) -> None:
    tokens.revoke_token(session, int(key))


@dataclass(frozen=True, slots=True)
class FormView:
    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    fields: list[FormField]
    id_field: str
    deletable: bool
    submit: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class SettingsPage:
    page: PageInfo
    section: str
    title: str
    intro: str
    sections: dict[str, str]
    forms: list[FormView]
    notice: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)


def build(
    request: Request,
    slug: str,
    *,
    failed: str = "",
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
) -> SettingsPage:
    section = SECTIONS.get(slug)
    if section is None:
        raise NotFound(f"no settings page {slug!r}; try one of {', '.join(SECTIONS)}")
    views = []
    deliveries: list[dict[str, Any]] = []
    with request.app.state.meta.session() as session:
        for form in section.forms:
            rows = [item.model_dump(mode="json") for item in form.list(session, request)]
            mine = form.key == failed
            fields = fields_of(
                form.model, values if mine else _defaults(form, rows), errors if mine else None
            )
            views.append(
                FormView(
                    form.key,
                    form.title,
                    list(form.columns),
                    rows,
                    fields,
                    form.id_field,
                    form.delete is not None,
                    form.submit,
                    (errors or {}).get("", "") if mine else "",
                )
            )
        if slug == "webhooks":
            deliveries = [
                d.model_dump(mode="json", exclude={"payload"})
                for d in webhooks.list_deliveries(session, limit=50).items
            ]
    # The demo's settings are demo values: its pages say so like every other page.
    info = PageInfo(
        title=f"Settings · {section.title}", path=f"/settings/{slug}", simulated=is_simulated(request)
    )
    return SettingsPage(
        info,
        slug,
        section.title,
        section.intro,
        {s.slug: s.title for s in SECTIONS.values()},
        views,
        notice,
        deliveries,
    )


def _defaults(form: Form, rows: list[dict[str, Any]]) -> dict[str, Any]:
    # A singleton (the schedule) edits what is saved; other forms start empty.
    return dict(rows[0]) if form.delete is None and rows else {}


@router.get("/settings")
async def settings_root() -> Response:
    return RedirectResponse("/settings/prices", status_code=307)


@router.get("/settings/{slug}")  # registered second: the .json route must win
@router.get("/settings/{slug}.json")
async def settings_page(request: Request, slug: str) -> Response:
    return respond(request, "settings.html", await run_in_threadpool(build, request, slug[:32]))


@router.post("/settings/{slug}/{key}")
async def settings_post(request: Request, slug: str, key: str) -> Response:
    """Create (or for the schedule, save) one thing of a section; or delete / test one."""
    form = await request.form()
    request.app.state.web_csrf.check(request, str(form.get("csrf_token") or ""))
    section = SECTIONS.get(slug)
    spec = next((f for f in section.forms if f.key == key), None) if section else None
    if section is None or spec is None:
        raise NotFound(f"no settings form {slug}/{key}")
    action = str(form.get("action") or "create")
    target = str(form.get("id") or "")[:255]

    def apply() -> str:
        with request.app.state.meta.session() as session:
            if action == "delete" and spec.delete is not None:
                spec.delete(session, target)
                return "Removed."
            if action == "test" and key == "webhook":
                return ""
            data = parse(spec.model, form_values(spec.model, form))
            created = spec.create(session, data)
            if spec.shown_once:
                return f"Saved. Copy it now, it is not shown again: {getattr(created, spec.shown_once)}"
            return "Saved."

    try:
        if action == "test" and key == "webhook":
            notice = await run_in_threadpool(_send_test, request, int(target or 0))
        else:
            notice = await run_in_threadpool(apply)
    except BadRequest as exc:
        values = {k: v for k, v in form.items() if k not in ("csrf_token", "action")}
        ctx = await run_in_threadpool(
            build, request, slug, failed=key, values=values, errors=field_errors(exc)
        )
        response = respond(request, "settings.html", ctx)
        response.status_code = 400
        return response
    ctx = await run_in_threadpool(build, request, slug, notice=notice)
    return respond(request, "settings.html", ctx)


def _send_test(request: Request, webhook_id: int) -> str:
    from api.alerts.notify import send_test

    state = request.app.state
    delivery = send_test(state.meta, state.background.deliverer, webhook_id, state.settings.base_url)
    return f"Test sent: {delivery.status}" + (
        f" (HTTP {delivery.response_status})" if delivery.response_status else ""
    )
