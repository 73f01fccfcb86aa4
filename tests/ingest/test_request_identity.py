"""A request is its trace id and span id together.

Two spans of different traces may share a span id (a sender that numbers spans per trace,
or chance); both must be stored, and stay stored after ClickHouse merges the table. Before
migration 0006 the table's sorting key (and so its ReplacingMergeTree deduplication) left
out the trace id and such pairs collapsed into one row. The migration rebuilds the table;
the rows written before it, and the rollups, must come through unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.ingest.body import Encoding
from api.ingest.service import Ingestor
from api.ingest.writer import DirectWriter
from api.settings import Settings
from api.store.gateway import Query, Store
from api.store.migrate import (
    CREATE_MIGRATIONS_TABLE,
    RECORD_MIGRATION,
    load_migrations,
    migrate,
    statements,
    template_values,
)
from api.telemetry import ServerMetrics
from tests.conftest import make_store
from tests.otlp import traces_request, vllm_span

NS = 1_000_000_000
RESOURCE = {"service.name": "chat", "host.name": "gpu-host-1", "inferwatch.gpu.uuids": "GPU-a"}

STORED = Query(
    "test.identity.stored",
    "SELECT trace_id, span_id, e2e_s FROM requests ORDER BY trace_id",
)
MINUTE_TOTALS = Query(
    "test.identity.minute",
    "SELECT sum(requests) AS requests, sum(e2e_sum) AS e2e FROM deployment_minute",
)
INFLIGHT_TOTALS = Query(
    "test.identity.inflight",
    "SELECT sum(requests) AS requests, round(sum(busy_s), 6) AS busy FROM inflight_minute",
)
SORTING_KEY = Query(
    "test.identity.key",
    "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'requests'",
)


def _twins(start_ns: int, span_ids: tuple[bytes, bytes] = (bytes.fromhex("00000000000000aa"),) * 2) -> bytes:
    """Two requests of different traces starting together, 2 s and 3 s end to end; by default
    with the same span id."""
    spans = [
        vllm_span(
            start_ns,
            queue=0.1,
            ttft=0.3,
            prefill=0.2,
            decode=e2e - 0.4,
            e2e=e2e,
            prompt=100,
            output=50,
            trace_id=bytes([n]) * 16,
            span_id=span_id,
        )
        for (n, e2e), span_id in zip(((1, 2.0), (2, 3.0)), span_ids, strict=True)
    ]
    return traces_request([(RESOURCE, spans)]).SerializeToString()


def _ingestor(settings: Settings, store: Store) -> Ingestor:
    metrics = ServerMetrics()
    return Ingestor(settings, DirectWriter(store, metrics), metrics)


def _ingest(settings: Settings, store: Store, body: bytes) -> None:
    reply = _ingestor(settings, store).traces(body, Encoding.PROTOBUF, None)
    assert (reply.accepted, reply.rejected) == (2, 0)


def _merge(store: Store) -> None:
    store.execute(Query("test.identity.optimize", "OPTIMIZE TABLE requests FINAL"))


def test_two_traces_sharing_a_span_id_and_start_are_both_kept_after_a_merge(
    settings: Settings, store: Store
) -> None:
    start = (int(time.time()) - 3600) * NS
    _ingest(settings, store, _twins(start))
    _merge(store)
    rows = store.rows(STORED)
    assert [(r["trace_id"], r["span_id"], r["e2e_s"]) for r in rows] == [
        ("01" * 16, "00000000000000aa", 2.0),
        ("02" * 16, "00000000000000aa", 3.0),
    ]
    # A retry of the same batch still stores each span once.
    _ingest(settings, store, _twins(start))
    _merge(store)
    assert len(store.rows(STORED)) == 2


def test_migration_0006_keeps_earlier_rows_and_does_not_count_them_again(
    settings: Settings, chdb_dir: Path
) -> None:
    store = make_store(settings, chdb_dir)
    try:
        # A server of the previous release: migrations before 0006 applied and recorded as
        # migrate() records them, so the next migrate() resumes at 0006, as an upgrade does.
        migrate_until = 6
        store.execute(CREATE_MIGRATIONS_TABLE)
        for migration in load_migrations():
            if migration.version >= migrate_until:
                continue
            for index, sql in enumerate(statements(migration.text, template_values(settings))):
                store.execute(Query(f"test.identity.{migration.version}.{index}", sql))
            store.execute(
                RECORD_MIGRATION, version=migration.version, name=migration.name, checksum=migration.checksum
            )
        assert "trace_id" not in store.scalar(SORTING_KEY)

        start = (int(time.time()) - 3600) * NS
        _ingest(settings, store, _twins(start, (b"\x00" * 7 + b"\x01", b"\x00" * 7 + b"\x02")))
        assert len(store.rows(STORED)) == 2
        before_minute = store.rows(MINUTE_TOTALS)[0]
        before_inflight = store.rows(INFLIGHT_TOTALS)[0]
        assert (before_minute["requests"], before_minute["e2e"]) == (2, 5.0)
        # Two requests of 2 s and 3 s, both starting at a whole second: 5 busy seconds on GPU-a.
        assert (before_inflight["requests"], before_inflight["busy"]) == (2, 5.0)

        assert migrate(store, settings) == [
            v.version for v in load_migrations() if v.version >= migrate_until
        ]
        assert store.scalar(SORTING_KEY) == "cluster, deployment, time, span_id, trace_id"
        _merge(store)
        assert [(r["trace_id"], r["span_id"]) for r in store.rows(STORED)] == [
            ("01" * 16, "0000000000000001"),
            ("02" * 16, "0000000000000002"),
        ]
        assert store.rows(MINUTE_TOTALS)[0] == before_minute
        assert store.rows(INFLIGHT_TOTALS)[0] == before_inflight

        # The views read the new table: a new request reaches both rollups once.
        later = start + 600 * NS
        body = traces_request(
            [
                (
                    RESOURCE,
                    [
                        vllm_span(
                            later, queue=0, ttft=0.1, prefill=0.1, decode=0.9, e2e=1.0, prompt=1, output=9
                        )
                    ],
                )
            ]
        ).SerializeToString()
        reply = _ingestor(settings, store).traces(body, Encoding.PROTOBUF, None)
        assert reply.accepted == 1
        after = store.rows(MINUTE_TOTALS)[0]
        assert (after["requests"], after["e2e"]) == (3, 6.0)
        assert store.rows(INFLIGHT_TOTALS)[0]["requests"] == 3
    finally:
        store.execute(
            Query("test.identity.drop", f"DROP DATABASE IF EXISTS {settings.clickhouse_database} SYNC")
        )
        store.close()


def test_pages_of_requests_step_over_twins_one_at_a_time(client: TestClient) -> None:
    start = (int(time.time()) - 3600) * NS
    response = client.post(
        "/v1/traces", content=_twins(start), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text
    seen = []
    cursor = None
    for _ in range(3):
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/requests", params=params).json()
        seen += [item["trace_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Newest first, ties broken by span id then trace id, descending: trace 02 before 01.
    assert seen == ["02" * 16, "01" * 16]


def test_the_request_page_shows_the_request_of_the_trace_it_names(client: TestClient) -> None:
    start = (int(time.time()) - 3600) * NS
    protobuf = {"Content-Type": "application/x-protobuf"}
    assert client.post("/v1/traces", content=_twins(start), headers=protobuf).status_code == 200
    for trace, e2e in (("01" * 16, 2.0), ("02" * 16, 3.0)):
        page = client.get("/requests/00000000000000aa.json", params={"trace": trace})
        assert page.status_code == 200, page.text
        assert (page.json()["request"]["trace_id"], page.json()["request"]["e2e_s"]) == (trace, e2e)
    missing = client.get("/requests/00000000000000aa.json", params={"trace": "03" * 16})
    assert missing.status_code == 404
    # The explorer links each row to its own trace's page.
    listing = client.get("/requests").text
    assert f"trace={'01' * 16}" in listing and f"trace={'02' * 16}" in listing
