"""What the demo saves in its metadata database before feeding: the simulated deployments'
SLOs and replica shapes, GPU prices, and SLO alert rules — demo values, each saying so,
set through the same service functions as the settings pages, so the findings, cost and
alert pages show configured values (and people can change them there)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.demo.fleet import Fleet
from api.meta.alert_rules import AlertRuleIn, create_rule
from api.meta.deployments import DeploymentIn, create_deployment
from api.meta.prices import PriceIn, set_price

DEMO_NOTE = "Demo value (inferwatch demo, simulated fleet): change it freely."

DEMO_PRICES: dict[str, float] = {"h100-sxm": 2.49, "a100-80gb": 1.49, "l4": 0.59}
"""Dollars per GPU-hour, catalogue key → price: a plausible reserved-capacity rate, below
the catalogue's on-demand defaults."""


def seed_metadata(session: Session, fleet: Fleet) -> None:
    """Save the demo's deployments (the SLOs the simulated fleet was built around, GPUs per
    replica), GPU prices, and TTFT/ITL alert rules for the deployments with such SLOs."""
    for deployment in fleet.deployments:
        create_deployment(
            session,
            DeploymentIn(
                name=deployment.name,
                ttft_p95_ms=_ms(deployment.slo_ttft_s),
                itl_p95_ms=_ms(deployment.slo_itl_s),
                gpus_per_replica=deployment.tp,
                notes=f"{DEMO_NOTE} {deployment.story}".strip(),
            ),
        )
        for kind, slo in (("slo_ttft", deployment.slo_ttft_s), ("slo_itl", deployment.slo_itl_s)):
            if slo is not None:
                what = "TTFT" if kind == "slo_ttft" else "inter-token latency"
                create_rule(
                    session,
                    AlertRuleIn(
                        name=f"{deployment.name}: {what} p95 above its SLO (demo rule)",
                        kind=kind,
                        deployment=deployment.name,
                        for_minutes=10,
                    ),
                )
    for model, usd in DEMO_PRICES.items():
        set_price(session, PriceIn(gpu_model=model, usd_per_hour=usd))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
