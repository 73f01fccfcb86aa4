"""`/api/v1/settings/...`: what people configure, as JSON. Every route is a thin call into
a service module of `api.meta` (the settings pages call the same functions), inside one
metadata transaction. Lists are bounded (`limit` ≤ 1000) and paged with `offset`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.alerts.notify import send_test
from api.deps import get_meta
from api.meta import Meta, alert_rules, deployments, prices, recipients, tokens, webhooks
from api.meta.common import Page

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])

T = TypeVar("T")
Limit = Query(100, ge=1, le=1000, description="Most items in one page")
Offset = Query(0, ge=0, le=1_000_000, description="Items to skip (from `next_offset`)")


def _in(meta: Meta, work: Callable[[Session], T]) -> T:
    with meta.session() as session:
        return work(session)


# --- prices ------------------------------------------------------------------------------------


class PriceList(BaseModel):
    items: list[prices.PriceOut]


class UsdIn(BaseModel):
    usd_per_hour: float = Field(ge=0, le=10_000, description="Dollars per GPU-hour")


@router.get("/prices", response_model=PriceList, summary="GPU prices: catalogue defaults and prices set")
def list_prices(limit: int = Limit, meta: Meta = Depends(get_meta)) -> PriceList:
    return PriceList(items=_in(meta, prices.list_prices)[:limit])


@router.put("/prices/{gpu_model}", response_model=prices.PriceOut, summary="Set the price of a GPU model")
def set_price(gpu_model: str, body: UsdIn, meta: Meta = Depends(get_meta)) -> prices.PriceOut:
    data = prices.PriceIn(gpu_model=gpu_model, usd_per_hour=body.usd_per_hour)
    return _in(meta, lambda s: prices.set_price(s, data))


@router.delete(
    "/prices/{gpu_model}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Forget a price set; a catalogue model goes back to its default",
)
def delete_price(gpu_model: str, meta: Meta = Depends(get_meta)) -> Response:
    _in(meta, lambda s: prices.delete_price(s, gpu_model))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class HostPriceList(BaseModel):
    items: list[prices.OverrideOut]


@router.get("/host-prices", response_model=HostPriceList, summary="Prices for one host or a pool of hosts")
def list_host_prices(limit: int = Limit, meta: Meta = Depends(get_meta)) -> HostPriceList:
    return HostPriceList(items=_in(meta, prices.list_overrides)[:limit])


@router.post("/host-prices", response_model=prices.OverrideOut, status_code=status.HTTP_201_CREATED)
def create_host_price(body: prices.OverrideIn, meta: Meta = Depends(get_meta)) -> prices.OverrideOut:
    return _in(meta, lambda s: prices.create_override(s, body))


@router.put("/host-prices/{override_id}", response_model=prices.OverrideOut)
def update_host_price(
    override_id: int, body: prices.OverrideIn, meta: Meta = Depends(get_meta)
) -> prices.OverrideOut:
    return _in(meta, lambda s: prices.update_override(s, override_id, body))


@router.delete("/host-prices/{override_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_host_price(override_id: int, meta: Meta = Depends(get_meta)) -> Response:
    _in(meta, lambda s: prices.delete_override(s, override_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- deployments -------------------------------------------------------------------------------


@router.get(
    "/deployments", response_model=Page[deployments.DeploymentOut], summary="Deployments and their SLOs"
)
def list_deployments(
    limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[deployments.DeploymentOut]:
    return _in(meta, lambda s: deployments.list_deployments(s, limit=limit, offset=offset))


@router.post("/deployments", response_model=deployments.DeploymentOut, status_code=status.HTTP_201_CREATED)
def create_deployment(
    body: deployments.DeploymentIn, meta: Meta = Depends(get_meta)
) -> deployments.DeploymentOut:
    return _in(meta, lambda s: deployments.create_deployment(s, body))


@router.get("/deployments/{deployment_id}", response_model=deployments.DeploymentOut)
def get_deployment(deployment_id: int, meta: Meta = Depends(get_meta)) -> deployments.DeploymentOut:
    return _in(meta, lambda s: deployments.get_deployment(s, deployment_id))


@router.put("/deployments/{deployment_id}", response_model=deployments.DeploymentOut)
def update_deployment(
    deployment_id: int, body: deployments.DeploymentIn, meta: Meta = Depends(get_meta)
) -> deployments.DeploymentOut:
    return _in(meta, lambda s: deployments.update_deployment(s, deployment_id, body))


@router.delete("/deployments/{deployment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_deployment(deployment_id: int, meta: Meta = Depends(get_meta)) -> Response:
    _in(meta, lambda s: deployments.delete_deployment(s, deployment_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- alert rules -------------------------------------------------------------------------------


@router.get("/alert-rules", response_model=Page[alert_rules.AlertRuleOut], summary="Alert rules")
def list_alert_rules(
    limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[alert_rules.AlertRuleOut]:
    return _in(meta, lambda s: alert_rules.list_rules(s, limit=limit, offset=offset))


@router.post("/alert-rules", response_model=alert_rules.AlertRuleOut, status_code=status.HTTP_201_CREATED)
def create_alert_rule(
    body: alert_rules.AlertRuleIn, meta: Meta = Depends(get_meta)
) -> alert_rules.AlertRuleOut:
    return _in(meta, lambda s: alert_rules.create_rule(s, body))


@router.get("/alert-rules/{rule_id}", response_model=alert_rules.AlertRuleOut)
def get_alert_rule(rule_id: int, meta: Meta = Depends(get_meta)) -> alert_rules.AlertRuleOut:
    return _in(meta, lambda s: alert_rules.get_rule(s, rule_id))


@router.put("/alert-rules/{rule_id}", response_model=alert_rules.AlertRuleOut)
def update_alert_rule(
    rule_id: int, body: alert_rules.AlertRuleIn, meta: Meta = Depends(get_meta)
) -> alert_rules.AlertRuleOut:
    return _in(meta, lambda s: alert_rules.update_rule(s, rule_id, body))


@router.delete("/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alert_rule(rule_id: int, meta: Meta = Depends(get_meta)) -> Response:
    _in(meta, lambda s: alert_rules.delete_rule(s, rule_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- webhooks ----------------------------------------------------------------------------------


@router.get("/webhooks", response_model=Page[webhooks.WebhookOut], summary="Webhook endpoints")
def list_webhooks(
    limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[webhooks.WebhookOut]:
    return _in(meta, lambda s: webhooks.list_webhooks(s, limit=limit, offset=offset))


@router.post(
    "/webhooks",
    response_model=webhooks.WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Add a webhook; the answer carries its signing secret, this once",
)
def create_webhook(body: webhooks.WebhookIn, meta: Meta = Depends(get_meta)) -> webhooks.WebhookCreated:
    return _in(meta, lambda s: webhooks.create_webhook(s, body))


@router.get("/webhooks/{webhook_id}", response_model=webhooks.WebhookOut)
def get_webhook(webhook_id: int, meta: Meta = Depends(get_meta)) -> webhooks.WebhookOut:
    return _in(meta, lambda s: webhooks.get_webhook(s, webhook_id))


@router.put("/webhooks/{webhook_id}", response_model=webhooks.WebhookOut)
def update_webhook(
    webhook_id: int, body: webhooks.WebhookUpdate, meta: Meta = Depends(get_meta)
) -> webhooks.WebhookOut:
    return _in(meta, lambda s: webhooks.update_webhook(s, webhook_id, body))


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: int, meta: Meta = Depends(get_meta)) -> Response:
    _in(meta, lambda s: webhooks.delete_webhook(s, webhook_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=webhooks.WebhookCreated,
    summary="Replace the signing secret with a new one (returned this once)",
)
def rotate_webhook_secret(webhook_id: int, meta: Meta = Depends(get_meta)) -> webhooks.WebhookCreated:
    return _in(meta, lambda s: webhooks.rotate_secret(s, webhook_id))


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=Page[webhooks.DeliveryOut],
    summary="The webhook's delivery log, newest first",
)
def list_deliveries(
    webhook_id: int, limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[webhooks.DeliveryOut]:
    return _in(meta, lambda s: webhooks.list_deliveries(s, webhook_id=webhook_id, limit=limit, offset=offset))


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=webhooks.DeliveryOut,
    summary="Send a test message now; answers with its delivery-log entry",
)
def test_webhook(webhook_id: int, request: Request, meta: Meta = Depends(get_meta)) -> webhooks.DeliveryOut:
    deliverer = request.app.state.background.deliverer
    return send_test(meta, deliverer, webhook_id, request.app.state.settings.base_url)


# --- the weekly report ----------------------------------------------------------------------------


@router.get(
    "/report/schedule", response_model=recipients.ScheduleOut, summary="When the weekly email goes out"
)
def get_schedule(request: Request, meta: Meta = Depends(get_meta)) -> recipients.ScheduleOut:
    return _in(meta, lambda s: recipients.get_schedule(s, request.app.state.settings.notify))


@router.put("/report/schedule", response_model=recipients.ScheduleOut)
def set_schedule(body: recipients.ScheduleIn, meta: Meta = Depends(get_meta)) -> recipients.ScheduleOut:
    return _in(meta, lambda s: recipients.set_schedule(s, body))


@router.get(
    "/report/recipients", response_model=Page[recipients.RecipientOut], summary="Who gets the weekly email"
)
def list_recipients(
    limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[recipients.RecipientOut]:
    return _in(meta, lambda s: recipients.list_recipients(s, limit=limit, offset=offset))


@router.post(
    "/report/recipients", response_model=recipients.RecipientOut, status_code=status.HTTP_201_CREATED
)
def create_recipient(body: recipients.RecipientIn, meta: Meta = Depends(get_meta)) -> recipients.RecipientOut:
    return _in(meta, lambda s: recipients.create_recipient(s, body))


@router.put("/report/recipients/{recipient_id}", response_model=recipients.RecipientOut)
def update_recipient(
    recipient_id: int, body: recipients.RecipientIn, meta: Meta = Depends(get_meta)
) -> recipients.RecipientOut:
    return _in(meta, lambda s: recipients.update_recipient(s, recipient_id, body))


@router.delete("/report/recipients/{recipient_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_recipient(recipient_id: int, meta: Meta = Depends(get_meta)) -> Response:
    _in(meta, lambda s: recipients.delete_recipient(s, recipient_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- tokens ------------------------------------------------------------------------------------


@router.get("/tokens", response_model=Page[tokens.TokenOut], summary="API tokens (never their secrets)")
def list_tokens(
    include_revoked: bool = True, limit: int = Limit, offset: int = Offset, meta: Meta = Depends(get_meta)
) -> Page[tokens.TokenOut]:
    return _in(
        meta, lambda s: tokens.list_tokens(s, include_revoked=include_revoked, limit=limit, offset=offset)
    )


@router.post(
    "/tokens",
    response_model=tokens.TokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a token; the answer carries the secret, this once",
)
def create_token(body: tokens.TokenIn, meta: Meta = Depends(get_meta)) -> tokens.TokenCreated:
    return _in(meta, lambda s: tokens.create_token(s, body))


@router.delete("/tokens/{token_id}", response_model=tokens.TokenOut, summary="Revoke a token (at once)")
def revoke_token(token_id: int, meta: Meta = Depends(get_meta)) -> tokens.TokenOut:
    return _in(meta, lambda s: tokens.revoke_token(s, token_id))
