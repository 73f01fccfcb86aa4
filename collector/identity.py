"""Who the collector speaks for: the resource attributes it stamps, and the engine's GPUs."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from collector import collector_version
from collector.config import CollectorConfig
from collector.otlp import key_values
from collector.samples import GpuSample

log = logging.getLogger(__name__)

COLLECTOR_SERVICE = "inferwatch-collector"


class Identity:
    """Resource attributes per docs/telemetry.md. The GPU list is updated by the sampler thread
    and read by relay threads: it is swapped as a whole, never mutated in place."""

    def __init__(self, config: CollectorConfig) -> None:
        attrs: dict[str, Any] = {
            "host.name": config.host_name,
            "inferwatch.cluster": config.cluster,
            "inferwatch.instance": config.instance,
            "inferwatch.collector.version": collector_version(),
        }
        if config.deployment:
            attrs["inferwatch.deployment"] = config.deployment
        if config.model:
            attrs["inferwatch.model"] = config.model
        self._base = attrs
        self._gpu_uuids: tuple[str, ...] = ()
        self._span_kvs: list[KeyValue] = key_values(attrs)

    @property
    def gpu_uuids(self) -> tuple[str, ...]:
        return self._gpu_uuids

    def set_gpu_uuids(self, uuids: Sequence[str]) -> None:
        uuids = tuple(uuids)
        if uuids != self._gpu_uuids:
            self._gpu_uuids = uuids
            attrs = dict(self._base)
            if uuids:
                attrs["inferwatch.gpu.uuids"] = list(uuids)
            self._span_kvs = key_values(attrs)

    def span_attributes(self) -> list[KeyValue]:
        """Attributes added to resources the engine sends (its own values win)."""
        return self._span_kvs

    def collector_resource(self) -> dict[str, Any]:
        """The resource of what the collector itself produces (GPU and engine metrics)."""
        attrs = dict(self._base)
        attrs["service.name"] = COLLECTOR_SERVICE
        if self._gpu_uuids:
            attrs["inferwatch.gpu.uuids"] = list(self._gpu_uuids)
        return attrs


class EngineGpus:
    """The GPUs the serving process uses: those where it, or a process it started, holds memory.

    Without an engine PID, or when NVML shows none of its processes (a container with its own
    PID namespace sees other PIDs than NVML reports), every GPU on the node is the answer.
    """

    def __init__(
        self, engine_pid: int | None, proc_root: Path = Path("/proc"), refresh_s: float = 10.0
    ) -> None:
        self._pid = engine_pid
        self._proc = proc_root
        self._refresh_s = refresh_s
        self._tree: frozenset[int] = frozenset()
        self._tree_at = -float("inf")
        self._lock = threading.Lock()
        self._warned = False

    def uuids(self, samples: Iterable[GpuSample]) -> list[str]:
        samples = list(samples)
        every = [s.uuid for s in samples]
        if self._pid is None:
            return every
        tree = self._process_tree()
        mine = [s.uuid for s in samples if any(p.pid in tree for p in s.processes)]
        if mine:
            self._warned = False
            return mine
        if samples and not self._warned:
            self._warned = True
            log.info(
                "engine PID %d holds no GPU that NVML shows (not started yet, or another PID "
                "namespace): stamping every GPU of the node on its spans",
                self._pid,
            )
        return every

    def _process_tree(self) -> frozenset[int]:
        with self._lock:
            if time.monotonic() - self._tree_at >= self._refresh_s:
                assert self._pid is not None
                self._tree = frozenset(descendants(self._pid, self._proc))
                self._tree_at = time.monotonic()
            return self._tree


def descendants(pid: int, proc_root: Path = Path("/proc")) -> set[int]:
    """``pid`` and every process below it, from the parent PIDs in ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir(proc_root)
    except OSError:
        return {pid}
    for name in names:
        if not name.isdigit():
            continue
        try:
            stat = (proc_root / name / "stat").read_text()
        except OSError:
            continue  # the process ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree
