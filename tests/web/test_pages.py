"""Pages and the fleet/deployment API on the seeded fleet (tests/web/seed.py): numbers known
by hand, each page's HTML against its `.json` twin, errors, CSRF, and the explorer's paging."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

H100_PRICE = 2.99
L4_PRICE = 0.70


def gpus_by_uuid(client: TestClient) -> dict[str, dict[str, Any]]:
    body = client.get("/api/v1/gpus", params={"window": "24h"}).json()
    return {g["gpu_uuid"]: g for g in body["items"]}


def test_gpus_api_counts_hours_idle_hours_and_cost_by_hand(seeded: TestClient) -> None:
    gpus = gpus_by_uuid(seeded)
    assert set(gpus) == {"GPU-a0", "GPU-a1", "GPU-b0", "GPU-b1"}
    for uuid in gpus:
        assert gpus[uuid]["hours"] == pytest.approx(3.0)
    # a0/a1: the last hour at 0 % with nothing in flight (the last request arrives at minute
    # 119 + 10 s and ends 2.25 s later) → 60 idle minutes, memory held throughout.
    assert gpus["GPU-a0"]["idle_hours"] == pytest.approx(1.0)
    assert gpus["GPU-a0"]["idle_held_hours"] == pytest.approx(1.0)
    assert gpus["GPU-b0"]["idle_hours"] == pytest.approx(3.0)
    assert gpus["GPU-b0"]["idle_held_hours"] == 0
    assert gpus["GPU-b1"]["idle_hours"] == 0
    assert gpus["GPU-a0"]["cost_usd"] == pytest.approx(3 * H100_PRICE, abs=0.01)
    assert gpus["GPU-b0"]["idle_cost_usd"] == pytest.approx(3 * L4_PRICE, abs=0.01)
    assert gpus["GPU-a0"]["util_mean_pct"] == pytest.approx(40.0)  # 2 h at 60 %, 1 h at 0 %
    assert gpus["GPU-b1"]["deployment"] == "batch"


def test_gpus_api_sorts_and_pages(seeded: TestClient) -> None:
    first = seeded.get("/api/v1/gpus", params={"window": "24h", "sort": "idle", "limit": 1}).json()
    assert first["total"] == 4
    assert [g["gpu_uuid"] for g in first["items"]] == ["GPU-a0"] or first["items"][0]["gpu_uuid"] == "GPU-a1"
    rest = seeded.get(
        "/api/v1/gpus", params={"window": "24h", "sort": "idle", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 3 and rest["next_cursor"] is None
    assert seeded.get("/api/v1/gpus", params={"limit": 1001}).status_code == 422


def test_fleet_api_idle_pattern_and_series(seeded: TestClient) -> None:
    fleet = seeded.get("/api/v1/fleet", params={"window": "6h"}).json()
    assert fleet["totals"]["gpus"] == 4
    assert fleet["totals"]["idle_gpu_hours"] == pytest.approx(3 + 2 * 1.0, abs=0.01)
    cells = [v for row in fleet["idle_pattern"]["idle_gpus"] for v in row if v is not None]
    # Idle GPU-minutes over the slots add back to the idle hours (each slot's mean × its hours).
    assert sum(cells) > 0
    series = fleet["utilisation"]
    assert len(series["by_gpu"]) == 4 and len(series["by_gpu"][0]) == len(series["times"])
    assert max(v for v in series["mean_pct"] if v is not None) == pytest.approx(
        (60 + 60 + 0 + 90) / 4, abs=0.5
    )


def test_gpu_detail_and_unknown_gpu(seeded: TestClient) -> None:
    detail = seeded.get("/api/v1/gpus/GPU-b1", params={"window": "6h"}).json()
    assert detail["gpu"]["gpu_name"] == "NVIDIA L4"
    assert {p["util_mean_pct"] for p in detail["series"] if p["util_mean_pct"] is not None} == {90.0}
    missing = seeded.get("/api/v1/gpus/GPU-nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_deployments_api_percentiles_split_and_cost_per_token(seeded: TestClient) -> None:
    body = seeded.get("/api/v1/deployments", params={"window": "24h"}).json()
    deps = {d["deployment"]: d for d in body["items"]}
    chat = deps["chat"]
    assert chat["requests"] == 120 and chat["output_tokens"] == 120 * 201
    assert chat["ttft_s"]["p50"] == pytest.approx(0.25, abs=1e-6)
    assert chat["itl_s"]["p95"] == pytest.approx(2.0 / 200, abs=1e-6)
    assert chat["prefill_share"] == pytest.approx(0.2 / 2.2, abs=1e-4)
    assert chat["gpus"] == 2
    assert chat["usd_per_1m_output_tokens"] == pytest.approx(6 * H100_PRICE / (120 * 201) * 1e6, rel=1e-3)
    assert chat["concurrency_mean"] == pytest.approx(120 * 2.25 / 86400, abs=1e-3)
    detail = seeded.get("/api/v1/deployments/prod/batch", params={"window": "6h"}).json()
    assert detail["deployment"]["requests"] == 30
    assert sum(detail["series"]["requests"]) == 30
    assert seeded.get("/api/v1/deployments/prod/nope").status_code == 404


PAGES = ["/", "/fleet", "/gpus/GPU-a0", "/deployments", "/deployments/prod/chat", "/findings", "/requests"]


def embedded_context(html: str) -> Any:
    match = re.search(r'<script type="application/json" id="page-context">(.*?)</script>', html, re.S)
    assert match, "the page embeds no context"
    return json.loads(match.group(1))


def json_twin(path: str) -> str:
    base, _, query = path.partition("?")
    twin = "/index.json" if base == "/" else base + ".json"
    return twin + ("?" + query if query else "")


@pytest.mark.parametrize("path", PAGES)
def test_page_html_embeds_exactly_its_json_twin(seeded: TestClient, path: str) -> None:
    pinned = f"{path}?window=24h&end={_soon()}"
    page = seeded.get(pinned)
    assert page.status_code == 200, page.text[:500]
    assert page.headers["content-type"].startswith("text/html")
    twin = seeded.get(json_twin(pinned))
    assert twin.status_code == 200
    assert embedded_context(page.text) == twin.json()
    assert twin.json()["page"]["window"] == "24h"


def _soon() -> str:
    """An end time after every seeded sample, so both requests see the same window."""
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%MZ")


def test_finding_detail_html_matches_json_and_shows_recommendation(seeded: TestClient) -> None:
    findings = seeded.get("/findings.json", params={"window": "24h"}).json()["findings"]
    assert findings, "the seeded fleet has an idle L4 and idle H100 hours: expected findings"
    fid = findings[0]["finding"]["id"]
    page = seeded.get(f"/findings/{fid}", params={"window": "24h"})
    assert page.status_code == 200
    twin = seeded.get(f"/findings/{fid}.json", params={"window": "24h"}).json()
    assert embedded_context(page.text)["view"] == twin["view"]
    assert twin["view"]["finding"]["recommendation"] in page.text.replace("&#39;", "'").replace("&amp;", "&")


def test_every_number_on_the_fleet_page_carries_its_unit(seeded: TestClient) -> None:
    html = seeded.get("/fleet", params={"window": "24h"}).text
    assert "8.97" not in html or "$8.97" in html  # 3 h × $2.99, shown as dollars
    assert re.search(r"\$8\.97", html)
    assert re.search(r"3\.0 h", html)


def test_web_errors_are_html_and_api_errors_json(seeded: TestClient) -> None:
    page = seeded.get("/gpus/GPU-nope")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "GPU-nope" in page.text and 'id="error"' in page.text
    assert seeded.get("/no/such/page").headers["content-type"].startswith("text/html")
    bad = seeded.get("/fleet", params={"window": "forever"})
    assert bad.status_code == 400 and "not a duration" in bad.text
    api = seeded.get("/api/v1/gpus", params={"window": "forever"})
    assert api.status_code == 400 and api.json()["error"]["code"] == "bad_request"
    assert seeded.get("/fleet.json", params={"window": "forever"}).json()["error"]["code"] == "bad_request"


def test_page_escapes_labels_from_telemetry(seeded: TestClient) -> None:
    html = seeded.get("/requests", params={"window": "24h", "model": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_requests_explorer_pages_without_repeats_and_filters(seeded: TestClient) -> None:
    seen: list[str] = []
    params: dict[str, str] = {"window": "24h", "limit": "25", "sort": "e2e"}
    while True:
        body = seeded.get("/requests.json", params=params).json()
        seen += [r["span_id"] for r in body["rows"]]
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == len(set(seen)) == 150
    batch = seeded.get(
        "/requests.json", params={"window": "24h", "deployment": "batch", "limit": "100"}
    ).json()
    assert {r["deployment"] for r in batch["rows"]} == {"batch"} and len(batch["rows"]) == 30
    slow = seeded.get("/requests.json", params={"window": "24h", "min_e2e_s": "5", "limit": "100"}).json()
    assert len(slow["rows"]) == 30
    assert seeded.get("/requests", params={"cursor": "!!"}).status_code == 400


def test_request_detail_splits_phases(seeded: TestClient) -> None:
    span = seeded.get("/requests.json", params={"window": "24h", "deployment": "batch"}).json()["rows"][0][
        "span_id"
    ]
    body = seeded.get(f"/requests/{span}.json").json()
    assert {p["name"]: p["seconds"] for p in body["phases"]} == {"queue": 1.0, "prefill": 0.5, "decode": 8.0}


def test_acknowledge_needs_the_csrf_token_and_then_mutes_the_finding(seeded_fresh: TestClient) -> None:
    seeded = seeded_fresh
    fid = seeded.get("/findings.json", params={"window": "24h"}).json()["findings"][0]["finding"]["id"]
    refused = seeded.post(f"/findings/{fid}/ack", data={"action": "ack"}, follow_redirects=False)
    assert refused.status_code == 403
    page = seeded.get(f"/findings/{fid}", params={"window": "24h"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    forged = token.split(".")[0] + ".0000"
    assert (
        seeded.post(
            f"/findings/{fid}/ack", data={"action": "ack", "csrf_token": forged}, follow_redirects=False
        ).status_code
        == 403
    )
    done = seeded.post(
        f"/findings/{fid}/ack", data={"action": "ack", "csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    listed = seeded.get("/findings.json", params={"window": "24h"}).json()
    assert fid not in {v["finding"]["id"] for v in listed["findings"]}
    shown = seeded.get("/findings.json", params={"window": "24h", "muted": "1"}).json()
    assert {v["finding"]["id"]: v["muted"] for v in shown["findings"]}[fid] == "acknowledged"


def test_empty_store_pages_say_what_to_do(client: TestClient) -> None:
    assert "inferwatch collect" in client.get("/fleet").text
    assert "--otlp-traces-endpoint" in client.get("/deployments").text
    assert "No request matches" in client.get("/requests").text


def test_plotly_is_served_by_the_app_gzipped_and_cached(client: TestClient) -> None:
    html = client.get("/fleet").text
    src = re.search(r'<script src="(/static/vendor/plotly-[^"]+\.min\.js)"', html).group(1)  # type: ignore[union-attr]
    js = client.get(src, headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
    assert js.headers["content-encoding"] == "gzip" and len(js.content) > 1_000_000
    assert "cdn" not in html.lower()


def test_openapi_documents_the_fleet_and_deployment_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/gpus",
        "/api/v1/gpus/{uuid}",
        "/api/v1/fleet",
        "/api/v1/deployments",
        "/api/v1/deployments/{cluster}/{name}",
    ):
        assert path in paths
    assert not any(p.startswith("/fleet") for p in paths)


def _csrf(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


def test_settings_forms_validate_in_place_and_save(seeded_fresh: TestClient) -> None:
    token = _csrf(seeded_fresh, "/settings/deployments")
    bad = seeded_fresh.post(
        "/settings/deployments/deployment", data={"csrf_token": token, "name": "chat", "ttft_p95_ms": "-5"}
    )
    assert bad.status_code == 400
    assert re.search(r'data-error-for="ttft_p95_ms">[^<]*greater than 0', bad.text)
    good = seeded_fresh.post(
        "/settings/deployments/deployment", data={"csrf_token": token, "name": "chat", "ttft_p95_ms": "200"}
    )
    assert good.status_code == 200 and "Saved." in good.text
    # The SLO now reaches the deployment pages: TTFT p95 is 250 ms, over the 200 ms objective.
    chat = {
        d["deployment"]: d for d in seeded_fresh.get("/deployments.json?window=24h").json()["deployments"]
    }["chat"]
    assert chat["slo"]["ttft_p95_s"] == 0.2 and chat["slo"]["ttft_met"] is False
    assert seeded_fresh.post("/settings/tokens/token", data={"scope": "read"}).status_code == 403
    created = seeded_fresh.post(
        "/settings/tokens/token", data={"csrf_token": token, "scope": "read", "name": "ci"}
    )
    assert "Copy it now" in created.text  # from now on local mode is over: a token exists
