"""The ingest write-ahead log (api.ingest.writer.LoggedWriter, api.ingest.wal), on the real
chDB store: requests gathered into few inserts, retries recognised across restarts, a log
left by a killed process replayed once, a torn tail survived, a store outage absorbed up
to the limit and then refused with 503, and through the app end to end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import ConfigError, StoreError
from api.ingest import wal
from api.ingest import writer as writer_module
from api.ingest.service import dedup_token
from api.ingest.traces import REQUEST_SCHEMA, normalise_traces
from api.ingest.writer import LoggedWriter
from api.settings import Settings
from api.store.gateway import Query, Store
from api.store.migrate import migrate
from api.telemetry import ServerMetrics
from tests.conftest import make_store
from tests.otlp import traces_request, vllm_span

NS = 1_000_000_000
RESOURCE = {"service.name": "chat", "host.name": "gpu-host-1", "inferwatch.gpu.uuids": "GPU-a"}
STORED = Query("test.wal.stored", "SELECT trace_id, e2e_s FROM requests ORDER BY trace_id, e2e_s")
MINUTE_REQUESTS = Query("test.wal.minute", "SELECT sum(requests) FROM deployment_minute")
INSERTS = Query(
    "test.wal.inserts",
    "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'requests'",
)


def request_rows(first: int, count: int) -> tuple[pa.Table, str]:
    """`count` vLLM requests with trace ids first … first+count-1 (one byte, repeated), each
    `trace id` seconds end to end; and the dedup token the ingest service would give them."""
    start = (int(time.time()) - 600) * NS
    spans = [
        vllm_span(
            start,
            queue=0.0,
            ttft=0.1,
            prefill=0.1,
            decode=n - 0.1,
            e2e=float(n),
            prompt=10,
            output=20,
            trace_id=bytes([n]) * 16,
            span_id=bytes([n]) * 8,
        )
        for n in range(first, first + count)
    ]
    batch = normalise_traces(
        traces_request([(RESOURCE, spans)]), max_attribute_bytes=1024, now_ns=time.time_ns()
    )
    assert batch.accepted == count
    return batch.to_arrow(), dedup_token("requests", batch.keys())


def writer(store: Store, directory: Path, **overrides: float) -> LoggedWriter:
    options = {"flush_s": 300.0, "flush_rows": 1_000_000, "max_bytes": 1 << 30, "dedup_window_s": 900.0}
    options.update(overrides)
    return LoggedWriter(
        store,
        directory,
        ServerMetrics(),
        flush_s=options["flush_s"],
        flush_rows=int(options["flush_rows"]),
        max_bytes=int(options["max_bytes"]),
        dedup_window_s=options["dedup_window_s"],
    )


def stored(store: Store) -> list[tuple[str, float]]:
    return [(r["trace_id"][:2], r["e2e_s"]) for r in store.rows(STORED)]


def metric(w: LoggedWriter, name: str, **labels: str) -> float:
    value = w._metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def test_three_requests_become_one_insert(store: Store, tmp_path: Path) -> None:
    w = writer(store, tmp_path / "wal")
    w.start()
    try:
        for first in (1, 3, 5):
            rows, token = request_rows(first, 2)
            assert w.write("requests", rows, token)
        assert stored(store) == []  # waiting in the log, not yet inserted
        assert w.flush()
        assert stored(store) == [(f"{n:02x}", float(n)) for n in range(1, 7)]
        assert store.scalar(INSERTS) == 1
        assert metric(w, "inferwatch_wal_flushes_total", table="requests", outcome="inserted") == 1
        assert metric(w, "inferwatch_store_rows_written_total", table="requests") == 6
        assert metric(w, "inferwatch_wal_waiting_bytes") == 0
        assert list((tmp_path / "wal" / "requests").glob("*.wal")) == []  # inserted segments are deleted
    finally:
        w.stop()


def test_the_row_limit_inserts_before_the_interval(store: Store, tmp_path: Path) -> None:
    w = writer(store, tmp_path / "wal", flush_rows=4)
    w.start()
    try:
        w.write("requests", *request_rows(1, 2))
        w.write("requests", *request_rows(3, 2))  # 4 rows: sealed, and the flusher woken
        deadline = time.monotonic() + 20
        while len(stored(store)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(stored(store)) == 4
    finally:
        w.stop()


def test_a_retry_is_answered_without_storing_again_even_after_a_restart(store: Store, tmp_path: Path) -> None:
    rows, token = request_rows(1, 3)
    first = writer(store, tmp_path / "wal")
    first.start()
    assert first.write("requests", rows, token) is True
    assert first.write("requests", rows, token) is False  # retried while still in the log
    assert first.flush()
    assert first.write("requests", rows, token) is False  # retried after it was inserted
    assert metric(first, "inferwatch_ingest_repeats_total", table="requests") == 2
    first.stop()

    second = writer(store, tmp_path / "wal")
    second.start()
    try:
        assert second.write("requests", rows, token) is False  # the tokens file outlived the process
        assert second.flush()
    finally:
        second.stop()
    assert stored(store) == [("01", 1.0), ("02", 2.0), ("03", 3.0)]
    assert store.scalar(MINUTE_REQUESTS) == 3


def test_a_retry_after_the_window_is_stored_again_by_design(store: Store, tmp_path: Path) -> None:
    rows, token = request_rows(1, 1)
    w = writer(store, tmp_path / "wal", dedup_window_s=0)
    w.start()
    try:
        assert w.write("requests", rows, token)
        time.sleep(0.01)
        assert w.write("requests", rows, token)  # outside a zero-second window: a new request
    finally:
        w.stop()


def test_a_log_left_by_a_killed_server_is_replayed_once_and_a_torn_tail_skipped(
    store: Store, tmp_path: Path
) -> None:
    # What a server SIGKILLed mid-write leaves: two whole records and half of a third.
    directory = tmp_path / "wal" / "requests"
    directory.mkdir(parents=True)
    segment = directory / wal.segment_name(7)
    fd = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for first in (1, 3):
        rows, token = request_rows(first, 2)
        wal.append(fd, wal.encode(token, rows))
    rows, token = request_rows(5, 2)
    torn = b"".join(bytes(piece) for piece in wal.encode(token, rows))
    os.write(fd, torn[: len(torn) // 2])
    os.close(fd)
    copy = segment.read_bytes()

    w = writer(store, tmp_path / "wal")
    w.start()
    assert metric(w, "inferwatch_wal_torn_bytes_total") == len(torn) // 2
    assert w.flush()
    # A retry of a replayed request is known; the torn one was never acknowledged.
    assert w.write("requests", *request_rows(1, 2)) is False
    w.stop()
    assert stored(store) == [(f"{n:02x}", float(n)) for n in range(1, 5)]

    # Killed again after that insert but before the segment was deleted: the same segment
    # replays, carries the same token, and ClickHouse drops it (rollups included).
    segment.write_bytes(copy)
    (tmp_path / "wal" / "tokens").write_text("")
    again = writer(store, tmp_path / "wal")
    again.start()
    assert again.flush()
    again.stop()
    assert stored(store) == [(f"{n:02x}", float(n)) for n in range(1, 5)]
    assert store.scalar(MINUTE_REQUESTS) == 4


def test_an_outage_is_absorbed_until_the_log_is_full_then_refused_and_nothing_lost(
    settings: Settings, chdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sealed segments wait on disk only, not in memory: their rows are read back to insert.
    monkeypatch.setattr(writer_module, "MEMORY_BYTES", 0)
    # A store that refuses every insert: its database has no tables yet.
    down = make_store(settings, chdb_dir)
    rows, token = request_rows(1, 2)
    record = sum(len(p) if isinstance(p, bytes) else p.size for p in wal.encode(token, rows))
    w = writer(down, tmp_path / "wal", flush_s=0.05, max_bytes=3 * record)
    w.start()
    try:
        accepted = []
        for first in range(1, 11, 2):
            try:
                w.write("requests", *request_rows(first, 2))
                accepted.append(first)
            except StoreError as exc:
                assert "write-ahead log" in exc.message and exc.status == 503
                break
        assert accepted == [1, 3, 5]  # three records fill the log; the fourth is refused
        assert metric(w, "inferwatch_wal_refusals_total") == 1
        time.sleep(0.3)
        assert metric(w, "inferwatch_wal_flushes_total", table="requests", outcome="failed") >= 1
        w.stop()  # stopped while the store is down: the log stays on disk
        assert len(list((tmp_path / "wal" / "requests").glob("*.wal"))) >= 1

        migrate(down, settings)  # the store comes back, and the server starts again
        back = writer(down, tmp_path / "wal", flush_s=0.05, max_bytes=3 * record)
        back.start()
        assert back.flush(timeout_s=60)
        assert stored(down) == [(f"{n:02x}", float(n)) for n in range(1, 7)]
        assert back.write("requests", *request_rows(7, 2))  # room again
        back.stop()
    finally:
        down.execute(Query("test.drop", f"DROP DATABASE IF EXISTS {settings.clickhouse_database} SYNC"))
        down.close()


def test_rows_that_can_never_be_inserted_are_set_aside_not_retried_forever(
    store: Store, tmp_path: Path
) -> None:
    w = writer(store, tmp_path / "wal")
    w.start()
    try:
        good, token = request_rows(1, 1)
        w.write("requests", good, token)
        # Rows of the same table with an incompatible type (a future version's schema).
        odd = pa.table({"trace_id": pa.array([1], pa.int64())})
        w.write("requests", odd, "f" * 64)
        assert w.flush()
        assert metric(w, "inferwatch_wal_flushes_total", table="requests", outcome="set_aside") == 1
        assert len(list((tmp_path / "wal" / "requests" / "set-aside").glob("*.wal"))) == 1
        w.write("requests", *request_rows(2, 1))
        assert w.flush()
        assert stored(store) == [("02", 2.0)]
    finally:
        w.stop()
    assert REQUEST_SCHEMA.field("trace_id").type == pa.string()


def test_a_second_server_on_the_same_log_is_refused(store: Store, tmp_path: Path) -> None:
    first = writer(store, tmp_path / "wal")
    first.start()
    try:
        with pytest.raises(ConfigError, match="another inferwatch server"):
            writer(store, tmp_path / "wal").start()
    finally:
        first.stop()


def test_the_app_answers_from_the_log_and_the_rows_arrive(settings: Settings, store: Store) -> None:
    logged = settings.model_copy(update={"ingest_flush_s": 0.2})
    spans = [
        vllm_span(
            (int(time.time()) - 60) * NS,
            queue=0.5,
            ttft=1.0,
            prefill=0.5,
            decode=1.0,
            e2e=2.0,
            prompt=7,
            output=9,
            trace_id=bytes([n]) * 16,
            span_id=bytes([n]) * 8,
        )
        for n in (1, 2)
    ]
    body = traces_request([(RESOURCE, spans)]).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    app = create_app(logged, store=store)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert client.post("/v1/traces", content=body, headers=headers).status_code == 200
        assert client.post("/v1/traces", content=body, headers=headers).status_code == 200  # a retry
        assert client.get("/api/v1/requests").json()["items"] == []  # answered from the log
        assert app.state.writer.flush()
        rows = client.get("/api/v1/requests").json()["items"]
        assert sorted((r["prompt_tokens"], r["e2e_s"]) for r in rows) == [(7, 2.0), (7, 2.0)]
        text = client.get("/metrics").text
        assert 'inferwatch_ingest_repeats_total{table="requests"} 1.0' in text
        assert 'inferwatch_store_rows_written_total{table="requests"} 2.0' in text
    assert list((logged.wal_path / "requests").glob("*.wal")) == []  # stopped with the log drained
