"""Shipping through outages, with the real server: spans and GPU samples spooled while it is
down arrive exactly once when it is back; a restarted collector delivers what its previous
run spooled; a full spool drops its oldest batches, counts them, and the collector goes on."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api.store import Query, Store
from collector.runtime import Collector
from tests.collector.conftest import engine_tracer, replay_nvml, running, test_config, wait_until
from tests.collector.test_end_to_end import requests_rows, vllm_span
from tests.conftest import LiveServer

NS = 1_000_000_000


def metric(collector: Collector, name: str, **labels: str) -> float:
    return collector.metrics.value(f"inferwatch_collector_{name}", labels)


def export_spans(collector: Collector, tag: str, count: int) -> list[Any]:
    with engine_tracer(collector, {"service.name": "vllm"}) as provider:
        tracer = provider.get_tracer("vllm")
        start = time.time_ns() - 120 * NS
        spans = [vllm_span(tracer, f"{tag}-{i}", start + i * NS // 10) for i in range(count)]
        provider.force_flush()
    return spans


def test_while_the_server_is_down_everything_is_spooled_then_delivered_exactly_once(
    app: FastAPI, store: Store, tmp_path: Path
) -> None:
    server = LiveServer(app)  # its port is chosen, it is not serving yet
    nvml, clock = replay_nvml("load")
    # a GPU tick every 500 ms: a dozen batches pile up in the spool, and the server keeps up after
    config = test_config(
        server.url, tmp_path / "spool", no_gpu=False, interval=0.5, energy_interval=0.5, flush_interval=0.25
    )
    try:
        with running(config, nvml=nvml, gpu_clock=clock) as collector:
            export_spans(collector, "outage", 30)
            wait_until(
                lambda: metric(collector, "received_items_total", kind="traces", source="relay") == 30,
                "the relay to take 30 spans",
            )
            wait_until(
                lambda: metric(collector, "export_failures_total", reason="connection") >= 1,
                "a failed delivery",
            )
            wait_until(lambda: metric(collector, "spool_batches") >= 2, "batches in the spool")
            assert metric(collector, "delivered_items_total", kind="traces") == 0
            server.start()
            wait_until(
                lambda: metric(collector, "delivered_items_total", kind="traces") == 30,
                "the spooled spans to be delivered",
            )
            wait_until(lambda: metric(collector, "spool_batches") == 0, "the spool to drain")
        # stopped: every GPU sample taken was delivered, none twice
        gpu_taken = metric(collector, "received_items_total", kind="metrics", source="gpu")
        assert gpu_taken >= 2
        assert metric(collector, "delivered_items_total", kind="metrics") == gpu_taken
        assert metric(collector, "spool_batches") == 0
        rows = requests_rows(server.url)
        assert sorted(r["request_id"] for r in rows) == sorted(f"outage-{i}" for i in range(30))
        assert len({r["span_id"] for r in rows}) == 30
        stored = store.rows(
            Query("test.gpu_rows", "SELECT count() AS n, uniqExact(time) AS ticks FROM gpu_samples FINAL")
        )
        assert stored == [{"n": gpu_taken, "ticks": gpu_taken}]  # one GPU: one row per tick
    finally:
        server.stop()


def test_a_restarted_collector_delivers_what_the_previous_run_spooled(app: FastAPI, tmp_path: Path) -> None:
    server = LiveServer(app)
    config = test_config(server.url, tmp_path / "spool")
    with running(config) as first:
        export_spans(first, "before-restart", 12)
        wait_until(lambda: metric(first, "spooled_batches_total", kind="traces") >= 1, "a spooled batch")
        wait_until(
            lambda: metric(first, "received_items_total", kind="traces", source="relay") == 12,
            "12 spans taken",
        )
    assert metric(first, "delivered_items_total", kind="traces") == 0
    assert list((tmp_path / "spool").glob("*.traces.*.otlp.gz"))
    server.start()
    try:
        with running(config) as second:
            wait_until(
                lambda: metric(second, "delivered_items_total", kind="traces") == 12,
                "the previous run's spans to be delivered",
            )
        assert sorted(r["request_id"] for r in requests_rows(server.url)) == sorted(
            f"before-restart-{i}" for i in range(12)
        )
        assert not list((tmp_path / "spool").glob("*.otlp.gz"))
    finally:
        server.stop()


def test_a_full_spool_drops_the_oldest_batches_counts_them_and_keeps_relaying(
    app: FastAPI, tmp_path: Path
) -> None:
    server = LiveServer(app)
    # Tiny bounds: each flush of the span queue becomes a batch of a few hundred bytes.
    config = test_config(
        server.url, tmp_path / "spool", spool_max_bytes=3000, batch_max_bytes=1500, queue_max_bytes=64_000
    )
    try:
        with running(config) as collector:

            def spooled_at_least(batches: int) -> bool:
                return metric(collector, "spooled_batches_total", kind="traces") >= batches

            for round_ in range(12):
                export_spans(collector, f"r{round_}", 3)
                wait_until(functools.partial(spooled_at_least, round_ + 1), "each round's batch in the spool")
            dropped_items = metric(collector, "spool_dropped_items_total", kind="traces", reason="full")
            assert dropped_items > 0
            assert metric(collector, "spool_bytes") <= 3000
            server.start()
            received = metric(collector, "received_items_total", kind="traces", source="relay")
            assert received == 36
            wait_until(
                lambda: metric(collector, "delivered_items_total", kind="traces") == received - dropped_items,
                "what was kept to be delivered",
            )
        delivered = {r["request_id"] for r in requests_rows(server.url)}
        assert len(delivered) == 36 - dropped_items
        kept = sorted({int(r.split("-")[0][1:]) for r in delivered})
        lost = sorted(set(range(12)) - set(kept))
        assert lost and kept[-1] == 11
        # The oldest batches went, except perhaps the one being sent when room was needed.
        assert all(gone < survivor for gone in lost for survivor in kept[1:])
    finally:
        server.stop()
