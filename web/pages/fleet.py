"""Fleet pages: every GPU (`/fleet`) and one GPU (`/gpus/{uuid}`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast, get_args

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.errors import BadRequest
from api.routes.gpus import FleetOut, GpuDetailOut, GpuOut, GpuSort, read_fleet, read_gpu, sort_gpus
from web.pages.common import PageInfo, page_request
from web.render import respond

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class FleetPage:
    page: PageInfo
    fleet: FleetOut
    gpus: list[GpuOut]
    sort: str
    deployment: str


@dataclass(frozen=True, slots=True)
class GpuPage:
    page: PageInfo
    detail: GpuDetailOut


def build_fleet(request: Request) -> FleetPage:
    pr = page_request(request)
    sort = request.query_params.get("sort", "host")
    if sort not in get_args(GpuSort):
        raise BadRequest(f"sort must be one of {', '.join(get_args(GpuSort))}")
    deployment = request.query_params.get("deployment", "")[:256]
    fleet, data = read_fleet(pr.store, pr.settings, pr.window)
    gpus = [g for g in data.gpus if not deployment or g.deployment == deployment]
    return FleetPage(
        pr.info("Fleet", clusters={g.cluster for g in data.gpus}),
        fleet,
        sort_gpus(gpus, cast(GpuSort, sort)),
        sort,
        deployment,
    )


def build_gpu(request: Request, uuid: str) -> GpuPage:
    pr = page_request(request)
    detail = read_gpu(pr.store, pr.settings, pr.window, uuid)
    title = f"{detail.gpu.host} / GPU {detail.gpu.gpu_index}"
    return GpuPage(pr.info(title, step_s=detail.window.step_s, clusters=[detail.gpu.cluster]), detail)


@router.get("/fleet")
@router.get("/fleet.json")
async def fleet_page(request: Request) -> Response:
    return respond(request, "fleet.html", await run_in_threadpool(build_fleet, request))


@router.get("/gpus/{uuid}")  # registered second: the .json route must win
@router.get("/gpus/{uuid}.json")
async def gpu_page(request: Request, uuid: str) -> Response:
    return respond(request, "gpu.html", await run_in_threadpool(build_gpu, request, uuid[:200]))
