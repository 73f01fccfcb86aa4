"""The server errors schemathesis and the span properties found, each now a precise 4xx."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from api.errors import BadRequest
from api.ingest.body import Encoding, parse


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/requests?since=0639-05-03T11:24:06Z",  # the store cannot parse year 639: was a 503
        "/api/v1/requests?until=2999-01-01T00:00:00Z",
        "/api/v1/cost?end=0090-10-18T07:00:00Z",
        "/api/v1/gpus?end=0001-01-01T00:00:00Z",  # end minus the window overflowed datetime
        "/api/v1/fleet?end=9999-12-31T00:00:00Z",
    ],
)
def test_times_the_store_cannot_hold_are_a_400(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400, response.text
    assert "must be between 1971 and 2099" in response.json()["error"]["message"]


@pytest.mark.parametrize("micros", ["99999999999999999999", "-99999999999999", "-1"])
def test_a_cursor_outside_any_real_time_is_a_400(client: TestClient, micros: str) -> None:
    cursor = base64.urlsafe_b64encode(f"{micros}:abcd".encode()).decode().rstrip("=")
    response = client.get("/api/v1/requests", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "cursor is not one this API returned"


def test_an_id_past_64_bits_is_a_404_not_a_database_overflow(client: TestClient) -> None:
    response = client.delete(f"/api/v1/settings/report/recipients/{2**64}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_a_webhook_id_past_64_bits_in_a_rule_is_a_422(client: TestClient) -> None:
    rule = {"name": "r", "kind": "gpu_idle", "threshold": 5, "webhook_ids": [2**64]}
    response = client.post("/api/v1/settings/alert-rules", json=rule)
    assert response.status_code == 422, response.text
    assert "webhook_ids" in response.text


def test_json_nested_past_the_parser_limit_is_a_400() -> None:
    deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse(deep, Encoding.JSON, ExportTraceServiceRequest)


def test_deeply_nested_json_over_http_is_a_400(client: TestClient) -> None:
    deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/v1/traces", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
