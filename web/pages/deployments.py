"""Deployment pages: every deployment (`/deployments`) and one (`/deployments/{cluster}/{name}`)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.routes.deployments import DeploymentDetailOut, DeploymentOut, read_deployment, read_deployments
from web.pages.common import PageInfo, page_request
from web.render import respond

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class DeploymentsPage:
    page: PageInfo
    deployments: list[DeploymentOut]


@dataclass(frozen=True, slots=True)
class DeploymentPage:
    page: PageInfo
    detail: DeploymentDetailOut


def build_deployments(request: Request) -> DeploymentsPage:
    pr = page_request(request)
    items = read_deployments(pr.store, pr.settings, pr.window)
    items.sort(key=lambda d: -d.cost_usd)
    return DeploymentsPage(pr.info("Deployments", clusters={d.cluster for d in items}), items)


def build_deployment(request: Request, cluster: str, name: str) -> DeploymentPage:
    pr = page_request(request)
    detail = read_deployment(pr.store, pr.settings, pr.window, cluster, name)
    return DeploymentPage(pr.info(name, step_s=detail.window.step_s, clusters=[cluster]), detail)


@router.get("/deployments")
@router.get("/deployments.json")
async def deployments_page(request: Request) -> Response:
    return respond(request, "deployments.html", await run_in_threadpool(build_deployments, request))


@router.get("/deployments/{cluster}/{name}")  # registered second: the .json route must win
@router.get("/deployments/{cluster}/{name}.json")
async def deployment_page(request: Request, cluster: str, name: str) -> Response:
    ctx = await run_in_threadpool(build_deployment, request, cluster[:256], name[:256])
    return respond(request, "deployment.html", ctx)
