"""What people set in the metadata database, laid over the settings the findings read.

`run_findings(store, settings, window)` takes its deployment facts (SLOs, GPUs per replica,
…) and prices from settings; `with_configured(settings, session)` returns settings in which
the deployments and prices saved on the settings pages replace the environment's. Every
caller that computes findings or cost for people (alerts, the weekly email, the API)
should pass its settings through this first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.findings.settings import CostSettings, DeploymentProfile, FindingsSettings
from api.meta.deployments import DeploymentOut, all_deployments
from api.meta.prices import configured_host_prices, configured_prices
from api.settings import Settings


def profile_changes(deployment: DeploymentOut) -> dict[str, Any]:
    """The DeploymentProfile fields a saved deployment sets (None: not set, keep the other source)."""
    values: dict[str, Any] = {
        "ttft_p95_slo_s": deployment.ttft_p95_ms / 1000 if deployment.ttft_p95_ms is not None else None,
        "itl_p95_slo_s": deployment.itl_p95_ms / 1000 if deployment.itl_p95_ms is not None else None,
        "min_replicas": deployment.min_replicas,
        "gpus_per_replica": deployment.gpus_per_replica,
        "params_b": deployment.params_b,
        "weight_bits": deployment.weight_bits,
    }
    return {k: v for k, v in values.items() if v is not None}


def findings_with_configured(findings: FindingsSettings, session: Session) -> FindingsSettings:
    """Findings settings whose deployment profiles include the saved deployments (saved
    fields win; fields left empty keep the environment's profile)."""
    profiles = dict(findings.deployments)
    for deployment in all_deployments(session):
        base = profiles.get(deployment.name) or DeploymentProfile.model_validate({})
        profiles[deployment.name] = base.model_copy(update=profile_changes(deployment))
    return findings.model_copy(update={"deployments": profiles})


def cost_with_configured(cost: CostSettings, session: Session) -> CostSettings:
    """Cost settings whose GPU and host prices include the saved ones (saved prices win)."""
    gpu_prices = {k.lower(): v for k, v in cost.gpu_prices.items()} | configured_prices(session)
    host_prices = dict(cost.host_prices) | configured_host_prices(session)
    return cost.model_copy(update={"gpu_prices": gpu_prices, "host_prices": host_prices})


def with_configured(settings: Settings, session: Session) -> Settings:
    """`settings` with the saved deployments and prices laid over."""
    return settings.model_copy(
        update={
            "findings": findings_with_configured(settings.findings, session),
            "cost": cost_with_configured(settings.cost, session),
        }
    )
