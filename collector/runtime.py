"""The collector assembled from its parts. Nothing runs until ``start()``.

Threads: the span receiver (one per engine connection), the GPU sampler, the scraper, the
batcher and the sender, and the self-metrics server. They share only the bounded queue, the
spool and the counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import httpx

from collector.config import CollectorConfig
from collector.dcgm import dcgm_samples
from collector.export import OtlpHttpExporter
from collector.gpu import GpuSampler
from collector.identity import EngineGpus, Identity
from collector.nvml import Nvml
from collector.otlp import gpu_metrics_request, metrics_request
from collector.promconv import count_points, families_to_metrics, parse_families
from collector.queue import Payload, PayloadQueue
from collector.relay import OtlpReceiver, RelayServer
from collector.samples import GpuSample
from collector.selfmetrics import CollectorMetrics
from collector.shipper import PAUSE_MAX_S, Shipper
from collector.spool import Spool, open_spool

log = logging.getLogger(__name__)


class Collector:
    """One collector: ``start()``, then ``stop()``. ``nvml`` and ``gpu_clock`` are for tests
    and the benchmark (a fake NVML fed from recordings); by default the real NVML is used."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        nvml: Nvml | None = None,
        gpu_clock: Callable[[], int] = time.time_ns,
        retry_pause_max_s: float = PAUSE_MAX_S,
    ) -> None:
        self.config = config
        self.metrics = CollectorMetrics()
        self.identity = Identity(config)
        self.queue = PayloadQueue(config.queue_max_bytes)
        self._nvml = None if config.no_gpu else (nvml or Nvml())
        self._gpu_clock = gpu_clock
        self._retry_pause_max_s = retry_pause_max_s
        self._engine_gpus = EngineGpus(config.engine_pid)
        self._nvml_uuids: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._relay: RelayServer | None = None
        self._metrics_server: WSGIServer | None = None
        self._shipper: Shipper | None = None
        self._exporter: OtlpHttpExporter | None = None
        self.spool: Spool | None = None
        self._started_ns = time.time_ns()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        self.spool = open_spool(cfg.spool_path, cfg.spool_max_bytes, self.metrics, cfg.batch_max_bytes)
        self._exporter = OtlpHttpExporter(cfg.server, cfg.token, cfg.export_timeout)
        self._shipper = Shipper(
            self.queue,
            self.spool,
            self._exporter,
            self.metrics,
            flush_interval_s=cfg.flush_interval,
            pause_max_s=self._retry_pause_max_s,
        )
        self._shipper.start()
        self._metrics_server, _ = self.metrics.serve(cfg.metrics_host, cfg.metrics_port)
        receiver = OtlpReceiver(self.identity, self.spool, self.metrics)
        self._relay = RelayServer(cfg.otlp_host, cfg.otlp_port, receiver)
        self._relay.start()
        log.info(
            "receiving OTLP on http://%s:%d/v1/traces; own metrics on http://%s:%d/metrics; shipping to %s",
            cfg.otlp_host,
            self.relay_port,
            cfg.metrics_host,
            self.metrics_port,
            cfg.server,
        )
        if self._nvml is not None and self._nvml.start():
            self._spawn("gpu-sampler", self._sample_loop)
        if cfg.engine_metrics or cfg.dcgm_metrics:
            self._spawn("scraper", self._scrape_loop)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking data, then deliver for up to ``grace_s``; what's left stays in the spool."""
        if self._relay is not None:
            self._relay.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._shipper is not None:
            self._shipper.stop(grace_s)
        if self._exporter is not None:
            self._exporter.close()
        if self._nvml is not None:
            self._nvml.shutdown()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()

    @property
    def relay_port(self) -> int:
        assert self._relay is not None, "start() first"
        return self._relay.port

    @property
    def metrics_port(self) -> int:
        assert self._metrics_server is not None, "start() first"
        return int(self._metrics_server.server_address[1])

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"inferwatch-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _enqueue(self, payload: Payload) -> None:
        self.metrics.received_items.labels(payload.kind, payload.source).inc(payload.items)
        if not self.queue.put(payload):
            self.metrics.queue_dropped_items.labels(payload.kind, payload.source).inc(payload.items)

    # --- GPU sampling ----------------------------------------------------------------------

    def _sample_loop(self) -> None:
        assert self._nvml is not None
        cfg = self.config
        sampler = GpuSampler.from_config(self._nvml, cfg, self._gpu_clock)
        next_at = time.monotonic()
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                started = time.perf_counter()
                samples = sampler.sample()
                self.metrics.gpu_sample_seconds.observe(time.perf_counter() - started)
                self.metrics.gpus.set(len(samples))
                if samples:
                    self._nvml_uuids = frozenset(s.uuid for s in samples)
                    self._ship_gpu_samples(samples, "gpu")
                next_at += cfg.interval
                if next_at < time.monotonic():  # fell behind (a stalled driver): skip, don't burst
                    next_at = time.monotonic() + cfg.interval
        finally:
            sampler.close()

    def _ship_gpu_samples(self, samples: list[GpuSample], source: str) -> None:
        if source == "gpu" or not self._nvml_uuids:
            self.identity.set_gpu_uuids(self._engine_gpus.uuids(samples))
        body = gpu_metrics_request(samples, self.identity.collector_resource())
        self._enqueue(Payload("metrics", body, len(samples), source))

    # --- scraping --------------------------------------------------------------------------

    def _scrape_loop(self) -> None:
        cfg = self.config
        failing: set[str] = set()
        with httpx.Client(timeout=min(5.0, cfg.scrape_interval)) as client:
            while True:
                for target, url in (("engine", cfg.engine_metrics), ("dcgm", cfg.dcgm_metrics)):
                    if url:
                        self._scrape(client, target, url, failing)
                if self._stop.wait(cfg.scrape_interval):
                    return

    def _scrape(self, client: httpx.Client, target: str, url: str, failing: set[str]) -> None:
        now_ns = time.time_ns()
        try:
            response = client.get(url)
            response.raise_for_status()
            families = parse_families(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            self.metrics.scrape_errors.labels(target).inc()
            if target not in failing:
                failing.add(target)
                log.warning(
                    "cannot scrape %s metrics at %s (%s); retrying every %gs",
                    target,
                    url,
                    exc,
                    self.config.scrape_interval,
                )
            return
        if target in failing:
            failing.discard(target)
            log.info("scraping %s metrics at %s again", target, url)
        if target == "engine":
            metrics = families_to_metrics(families, now_ns, self._started_ns)
            if metrics:
                body = metrics_request(self.identity.collector_resource(), metrics)
                self._enqueue(Payload("metrics", body, count_points(metrics), "engine"))
            return
        # DCGM fills in GPUs that NVML does not show (no driver access in this container).
        samples = [s for s in dcgm_samples(families, now_ns) if s.uuid not in self._nvml_uuids]
        if samples:
            self._ship_gpu_samples(samples, "dcgm")
