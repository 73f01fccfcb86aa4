"""Collector test helpers: a config for tests, a running collector, a real OTel SDK exporter
pointed at it, and NVML replayed from tapes recorded on a real GPU."""

from __future__ import annotations

import ctypes.util
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from collector.config import CollectorConfig
from collector.nvml import Nvml
from collector.runtime import Collector
from tests.fixtures.nvml.nvml_tape import ReplayPynvml

NVML_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"
# The no-driver tests use the real pynvml, which only fails the way they expect without a driver.
needs_no_nvidia_driver = pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has an NVIDIA driver"
)
PROM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"


def load_tape(name: str) -> dict[str, Any]:
    return json.loads((NVML_FIXTURES / f"{name}.json").read_text())


def test_config(server: str, spool_dir: Path, **overrides: Any) -> CollectorConfig:
    """A config for tests: ephemeral ports, a short flush, no real NVML unless asked."""
    base = CollectorConfig(
        server=server,
        cluster="test-cluster",
        deployment="chat-test",
        model="test/model",
        host_name="node-a",
        instance="node-a-0",
        otlp_port=0,
        metrics_port=0,
        spool_dir=str(spool_dir),
        flush_interval=0.05,
        export_timeout=5.0,  # the server under test may take seconds on a busy 2-core machine
        no_gpu=True,
        interval=0.05,
        energy_interval=0.25,
    )
    return replace(base, **overrides)


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@contextmanager
def running(config: CollectorConfig, **kwargs: Any) -> Iterator[Collector]:
    collector = Collector(config, retry_pause_max_s=0.2, **kwargs)
    collector.start()
    try:
        yield collector
    finally:
        collector.stop(grace_s=5.0)


def replay_nvml(tape_name: str) -> tuple[Nvml, Callable[[], int]]:
    """An Nvml over a recorded tape, and a clock that moves the tape one tick per sample."""
    fake = ReplayPynvml(load_tape(tape_name), cycle=True)

    def clock() -> int:
        fake.advance()
        return time.time_ns()

    return Nvml(lib=fake), clock


@contextmanager
def engine_tracer(collector: Collector, resource: dict[str, Any]) -> Iterator[TracerProvider]:
    """The engine side: the real OpenTelemetry SDK exporting OTLP/HTTP protobuf to the relay."""
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.relay_port}/v1/traces")
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    try:
        yield provider
    finally:
        provider.shutdown()


def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll until ``predicate()`` is truthy; fail naming ``what`` after ``timeout_s``.

    A liveness bound, not a timing assertion: the tests check what arrives, never how fast.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)
