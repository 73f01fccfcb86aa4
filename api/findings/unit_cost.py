"""Unit cost (DESIGN §4.6): what the fleet cost over a window, grouped by deployment,
model, GPU model or host, with dollars per million output tokens and per request, and the
utilisation each dollar bought. Feeds `GET /api/v1/cost` and the CLI; it produces figures,
not findings (a cost is not a thing to fix by itself)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from api.findings.catalogue import PriceBook, lookup
from api.findings.model import per_week
from api.timewindow import Window

NO_DEPLOYMENT = "(none)"


class CostBy(StrEnum):
    DEPLOYMENT = "deployment"
    MODEL = "model"
    GPU_MODEL = "gpu_model"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class GpuHours:
    """One GPU (and the deployment it reported under) over the window (query `cost.gpu_hours`)."""

    cluster: str
    host: str
    gpu_uuid: str
    gpu_name: str
    deployment: str
    minutes: int
    util_mean_pct: float | None = None


@dataclass(frozen=True, slots=True)
class ModelTraffic:
    """Requests of one deployment and model over the window (query `cost.model_traffic`)."""

    cluster: str
    deployment: str
    model: str
    requests: int
    output_tokens: int
    e2e_s: float


@dataclass(frozen=True, slots=True)
class CostLine:
    cluster: str
    key: str
    gpus: float
    gpu_hours: float
    usd: float
    usd_per_week: float
    util_mean_pct: float | None
    requests: int | None
    output_tokens: int | None

    @property
    def usd_per_1m_output_tokens(self) -> float | None:
        return self.usd / self.output_tokens * 1e6 if self.output_tokens else None

    @property
    def usd_per_request(self) -> float | None:
        return self.usd / self.requests if self.requests else None


@dataclass
class _Acc:
    gpus: set[str]
    gpu_hours: float = 0.0
    usd: float = 0.0
    busy_hours: float = 0.0
    util_hours: float = 0.0
    requests: int | None = None
    output_tokens: int | None = None


def gpu_label(gpu_name: str) -> str:
    match = lookup(gpu_name)
    return match.spec.label if match and match.fraction == 1.0 else gpu_name or "unknown"


def cost_lines(
    gpus: Sequence[GpuHours], traffic: Sequence[ModelTraffic], by: CostBy, window: Window, prices: PriceBook
) -> list[CostLine]:
    """Dollars = Σ GPU-hours × price of each GPU on its host. By model, a deployment's
    dollars are split across its models by their share of request-seconds (e2e); by
    deployment or model, $/1M output tokens = dollars / output tokens × 1e6 and $/request =
    dollars / requests. Sorted by dollars, largest first."""
    acc: dict[tuple[str, str], _Acc] = defaultdict(lambda: _Acc(set()))
    dep_usd: dict[tuple[str, str], _Acc] = defaultdict(lambda: _Acc(set()))
    for g in gpus:
        hours = g.minutes / 60
        cost = hours * prices.per_hour(g.gpu_name, g.host)
        key = {
            CostBy.DEPLOYMENT: g.deployment or NO_DEPLOYMENT,
            CostBy.MODEL: g.deployment or NO_DEPLOYMENT,
            CostBy.GPU_MODEL: gpu_label(g.gpu_name),
            CostBy.HOST: g.host,
        }[by]
        target = dep_usd if by is CostBy.MODEL else acc
        a = target[(g.cluster, key)]
        a.gpus.add(g.gpu_uuid)
        a.gpu_hours += hours
        a.usd += cost
        if g.util_mean_pct is not None:
            a.util_hours += hours
            a.busy_hours += hours * g.util_mean_pct
    if by is CostBy.DEPLOYMENT:
        for t in traffic:
            a = acc[(t.cluster, t.deployment)]
            a.requests = (a.requests or 0) + t.requests
            a.output_tokens = (a.output_tokens or 0) + t.output_tokens
    elif by is CostBy.MODEL:
        _split_by_model(acc, dep_usd, traffic)
    lines = [
        CostLine(
            cluster=cluster,
            key=key,
            gpus=len(a.gpus) if a.gpus else 0,
            gpu_hours=a.gpu_hours,
            usd=a.usd,
            usd_per_week=per_week(a.usd, window),
            util_mean_pct=a.busy_hours / a.util_hours if a.util_hours else None,
            requests=a.requests,
            output_tokens=a.output_tokens,
        )
        for (cluster, key), a in acc.items()
    ]
    lines.sort(key=lambda line: (-line.usd, line.cluster, line.key))
    return lines


def _split_by_model(
    acc: dict[tuple[str, str], _Acc], dep_usd: dict[tuple[str, str], _Acc], traffic: Sequence[ModelTraffic]
) -> None:
    by_dep: dict[tuple[str, str], list[ModelTraffic]] = defaultdict(list)
    for t in traffic:
        by_dep[(t.cluster, t.deployment)].append(t)
    for (cluster, dep), d in dep_usd.items():
        models = by_dep.get((cluster, dep), [])
        total = sum(t.e2e_s for t in models)
        if not models or total <= 0:
            a = acc[(cluster, f"{dep} (no requests)")]
            a.gpus |= d.gpus
            a.gpu_hours += d.gpu_hours
            a.usd += d.usd
            a.busy_hours += d.busy_hours
            a.util_hours += d.util_hours
            continue
        for t in models:
            share = t.e2e_s / total
            a = acc[(cluster, t.model or NO_DEPLOYMENT)]
            a.gpus |= d.gpus
            a.gpu_hours += d.gpu_hours * share
            a.usd += d.usd * share
            a.busy_hours += d.busy_hours * share
            a.util_hours += d.util_hours * share
            a.requests = (a.requests or 0) + t.requests
            a.output_tokens = (a.output_tokens or 0) + t.output_tokens
