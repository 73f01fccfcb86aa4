"""Which GPUs the serving process uses: it and the processes it started, as /proc shows them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from collector.identity import EngineGpus, descendants
from collector.samples import GpuSample, ProcessUsage

TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def engine_tree() -> Iterator[tuple[int, int]]:
    """A real process that started a child: (parent pid, child pid)."""
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    yield parent.pid, child
    subprocess.run(["kill", str(child)], check=False)
    parent.kill()
    parent.wait()


def gpu(uuid: str, *pids: int) -> GpuSample:
    return GpuSample(
        time_ns=1, index=0, uuid=uuid, name="H100", processes=tuple(ProcessUsage(p, 1) for p in pids)
    )


def test_descendants_include_the_process_and_its_children(engine_tree: tuple[int, int]) -> None:
    parent, child = engine_tree
    tree = descendants(parent)
    assert {parent, child} <= tree
    assert 1 not in tree


def test_the_engines_gpus_are_those_where_its_tree_holds_memory(engine_tree: tuple[int, int]) -> None:
    parent, child = engine_tree
    samples = [gpu("GPU-a", child), gpu("GPU-b", 999_999), gpu("GPU-c")]
    assert EngineGpus(parent).uuids(samples) == ["GPU-a"]


def test_without_an_engine_pid_or_a_match_every_gpu_is_the_answer(engine_tree: tuple[int, int]) -> None:
    samples = [gpu("GPU-a", 999_999), gpu("GPU-b")]
    assert EngineGpus(None).uuids(samples) == ["GPU-a", "GPU-b"]
    assert EngineGpus(engine_tree[0]).uuids(samples) == ["GPU-a", "GPU-b"]
