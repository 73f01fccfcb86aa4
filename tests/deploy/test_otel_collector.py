"""deploy/otel-collector.yaml: every pipeline names defined components, memory_limiter runs
first and batch runs, and the exporter reaches inferwatch's OTLP/HTTP ingest with a bearer
token. Checked by structure only: no OpenTelemetry Collector binary is installable here."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.common import ROOT

CONFIG = ROOT / "deploy" / "otel-collector.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_every_pipeline_uses_defined_components(config: dict) -> None:
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    assert set(service["pipelines"]) == {"traces", "metrics"}
    for pipeline in service["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
        assert pipeline["processors"][0] == "memory_limiter"
        assert "batch" in pipeline["processors"]


def test_the_exporter_speaks_otlp_http_to_inferwatch_with_a_bearer_token(config: dict) -> None:
    (name,) = config["exporters"]
    exporter = config["exporters"][name]
    # otlphttp appends /v1/traces and /v1/metrics to a base endpoint: inferwatch's ingest paths.
    assert name.split("/")[0] == "otlphttp"
    assert exporter["endpoint"] == "${env:INFERWATCH_ENDPOINT}"
    assert re.fullmatch(r"Bearer \$\{env:INFERWATCH_INGEST_TOKEN\}", exporter["headers"]["Authorization"])
    assert exporter["compression"] == "gzip"
    # The queue survives restarts only with a storage extension the service runs.
    storage = exporter["sending_queue"]["storage"]
    assert storage in config["extensions"] and storage in config["service"]["extensions"]


def test_batches_stay_under_the_servers_request_limit(config: dict) -> None:
    from api.settings import Settings

    limit = Settings.model_fields["max_items_per_request"].default
    assert config["processors"]["batch"]["send_batch_max_size"] <= limit
