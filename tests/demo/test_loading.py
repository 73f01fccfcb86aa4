"""While the demo feeds older days, pages say how many are in; a day is reported in only
once every row of it is stored; the demo saves its SLOs, prices and alert rules as demo
values."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from api.demo import SIMULATED_CLUSTER, DemoInfo, Loading
from api.demo.feed import DayReporter, feed
from api.demo.fleet import build_fleet
from api.demo.seed import DEMO_NOTE, seed_metadata
from api.demo.simulate import Window
from api.demo.week import SimulatedWeek
from api.findings.catalogue import PriceBook
from api.meta import open_meta, upgrade_metadata
from api.meta.alert_rules import list_rules
from api.meta.deployments import all_deployments
from api.meta.overlay import with_configured
from api.settings import Settings
from api.store import Query, Store
from tests.demo.common import SEED

LOOPBACK = ("127.0.0.1", 50000)
"""Local mode: a loopback caller needs no token while none exists (api.security)."""
PAGES = ("/", "/fleet", "/deployments", "/findings", "/requests")
"""The pages that show figures; the settings pages say the data is simulated, without the note."""
REQUESTS_SINCE = Query(
    "test.demo.requests_since", "SELECT count() FROM requests WHERE toUnixTimestamp(time) >= {t:Int64}"
)
GPU_ROWS_SINCE = Query(
    "test.demo.gpu_rows_since", "SELECT count() FROM gpu_samples WHERE toUnixTimestamp(time) >= {t:Int64}"
)


def recent_window(hours: int) -> Window:
    end = int(time.time()) // 3600 * 3600
    return Window(end - 3600 * hours, 60 * hours)


def demo_info(window: Window, loading: Loading | None) -> DemoInfo:
    return DemoInfo(
        cluster=SIMULATED_CLUSTER,
        start=datetime.fromtimestamp(window.start_s, UTC),
        end=datetime.fromtimestamp(window.end_s, UTC),
        seed=SEED,
        gpu_interval_s=60,
        loading=loading,
    )


def test_every_page_says_how_many_days_are_in_until_all_are(settings: Settings, store: Store) -> None:
    from api.commands.demo import build_app

    loading = Loading(days=7, days_in=2)
    app = build_app(settings, demo_info(recent_window(168), loading), store=store)
    with TestClient(app, client=LOOPBACK) as client:
        for path in PAGES:
            html = client.get(path).text
            assert "Simulated data" in html, path
            assert "Still loading: 2 of 7 simulated days are in" in html, path
        assert client.get("/index.json").json()["page"]["loading"].startswith("Still loading: 2 of 7")
        assert "Simulated data" in client.get("/settings/prices").text
        loading.days_in = 7
        for path in PAGES:
            html = client.get(path).text
            assert "Simulated data" in html and "Still loading" not in html, path
        assert client.get("/index.json").json()["page"]["loading"] == ""


def test_a_day_is_reported_in_once_every_row_of_it_is_stored(client: TestClient, store: Store) -> None:
    week = SimulatedWeek(SEED, recent_window(27))  # the newest day, then 3 hours
    newest = week.window.end_s - 86_400
    told: list[tuple[str, int, int]] = []

    class Recording(DayReporter):
        def tell(self, line: str) -> None:
            told.append(
                (line, store.scalar(REQUESTS_SINCE, t=newest), store.scalar(GPU_ROWS_SINCE, t=newest))
            )

    reporter = Recording(week, time.monotonic(), None)
    stats = feed(client, week.batches(max_bytes=2 * 1024 * 1024), workers=3, on_batch=reporter)
    reporter.finish(stats)
    assert stats.rejected == 0
    # By hand: the newest day's requests are those arriving in its 1440 minutes; its GPU rows
    # one per GPU per minute.
    newest_requests = sum(int((r.minute >= 27 * 60 - 1440).sum()) for r in week.requests.values())
    assert [line for line, _, _ in told] == ["days 1", "days 2"]
    assert told[0][1:] == (newest_requests, len(week.fleet.gpus) * 1440)
    assert store.scalar(REQUESTS_SINCE, t=week.window.start_s) == week.span_count()


def test_the_demo_saves_its_slos_prices_and_alert_rules_as_demo_values(settings: Settings) -> None:
    upgrade_metadata(settings)
    meta = open_meta(settings)
    try:
        fleet = build_fleet(SEED)
        with meta.session() as session:
            seed_metadata(session, fleet)
        with meta.session() as session:
            configured = with_configured(settings, session)
            saved = all_deployments(session)
            rules = list_rules(session).items
    finally:
        meta.close()
    chat = configured.findings.profile("chat-llama-70b")
    assert (chat.ttft_p95_slo_s, chat.itl_p95_slo_s, chat.gpus_per_replica) == (2.0, 0.05, 4)
    assert configured.findings.profile("support-bot").ttft_p95_slo_s == 1.5
    assert {d.name for d in saved} == {d.name for d in fleet.deployments}
    assert all(d.notes.startswith(DEMO_NOTE) for d in saved)
    # Every simulated GPU model is charged the demo price, not the catalogue default.
    book = PriceBook(configured.cost)
    assert {g.host.gpu.name: book.per_hour(g.host.gpu.name) for g in fleet.gpus} == {
        "NVIDIA H100 80GB HBM3": 2.49,
        "NVIDIA A100-SXM4-80GB": 1.49,
        "NVIDIA L4": 0.59,
    }
    # TTFT rules for the four deployments with a TTFT SLO, ITL rules for the two with one.
    assert sorted((r.kind, r.deployment) for r in rules) == [
        ("slo_itl", "chat-llama-70b"),
        ("slo_itl", "code-assistant-8b"),
        ("slo_ttft", "chat-llama-70b"),
        ("slo_ttft", "internal-rag"),
        ("slo_ttft", "support-bot"),
    ]
    assert all("demo rule" in r.name for r in rules)
