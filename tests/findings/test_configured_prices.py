"""A GPU price set through the settings API is the price the findings API, the cost API,
the overview page and `inferwatch findings` charge (the catalogue's default until then)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.commands.findings import configured
from api.findings.engine import align, run_findings
from api.settings import Settings
from api.store import Store
from api.timewindow import window_ending
from tests.findings.feed import GB, H100_PRICE, feed_gpus

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
HOURS = 6
WEEKS = HOURS / 168
SET_PRICE = 1.5


def test_a_price_set_in_the_settings_changes_the_dollars_of_findings_cost_and_overview(
    client: TestClient, store: Store, settings: Settings
) -> None:
    # Two H100s for six hours, computing nothing: one holds memory (idle_held), one is empty.
    feed_gpus(
        client,
        host="node-p",
        deployment="",
        gpus=["GPU-held", "GPU-empty"],
        start=END - timedelta(hours=HOURS),
        minutes=60 * HOURS,
        util=lambda i, m: 0,
        mem_used=lambda i, m: 40 * GB if i == 0 else 300_000_000,
        procs=lambda i, m: i == 0,
    )
    window = {"window": f"{HOURS}h", "end": END.isoformat()}

    def dollars() -> dict[str, float]:
        cost = client.get("/api/v1/cost", params={**window, "by": "gpu_model"})
        findings = client.get("/api/v1/findings", params=window)
        overview = client.get("/index.json", params=window)
        assert cost.status_code == findings.status_code == overview.status_code == 200
        by_kind = {f["kind"]: f["weekly_usd"] for f in findings.json()["items"]}
        return {
            "cost": cost.json()["total_usd"],
            "held": by_kind["idle_held"],
            "empty": by_kind["idle_empty"],
            "overview_waste": overview.json()["waste_weekly_usd"],
        }

    # By hand: 2 GPUs × 6 h at $2.99 cost $35.88; each idle GPU wastes 6 h × $2.99 over a
    # window of 6/168 weeks, $502.32 a week; the overview's waste adds the two.
    before = dollars()
    assert before["cost"] == pytest.approx(2 * HOURS * H100_PRICE, abs=0.01)
    assert before["held"] == pytest.approx(HOURS * H100_PRICE / WEEKS, abs=0.01)
    assert before["empty"] == pytest.approx(HOURS * H100_PRICE / WEEKS, abs=0.01)
    assert before["overview_waste"] == pytest.approx(2 * HOURS * H100_PRICE / WEEKS, abs=0.02)

    put = client.put("/api/v1/settings/prices/h100-sxm", json={"usd_per_hour": SET_PRICE})
    assert put.status_code == 200, put.text
    assert put.json()["source"] == "configured"

    # At $1.50: $18.00 over the window; $252.00 a week per idle GPU, $504.00 both.
    after = dollars()
    assert after["cost"] == pytest.approx(18.0, abs=0.01)
    assert after["held"] == pytest.approx(252.0, abs=0.01)
    assert after["empty"] == pytest.approx(252.0, abs=0.01)
    assert after["overview_waste"] == pytest.approx(504.0, abs=0.02)

    # `inferwatch findings` lays the same saved price over its settings.
    cli_settings = configured(settings)
    assert cli_settings.cost.gpu_prices["h100-sxm"] == SET_PRICE
    found = run_findings(store, cli_settings, align(window_ending(f"{HOURS}h", END)))
    assert {f.kind: round(f.weekly_usd, 2) for f in found} == {"idle_held": 252.0, "idle_empty": 252.0}
