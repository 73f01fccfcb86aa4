"""A small scheduler: one daemon thread that runs each job when its next slot comes, under
a lease in the metadata database so that, with several server replicas, each slot runs on
one of them only.

A job is a name, a function giving its next slot after a time, and a function run with the
slot. Slots are recomputed every time the thread wakes (at most every `max_sleep_s`), so a
schedule changed on the settings page takes effect without a restart. A run that raises is
logged, recorded on the lease, and the scheduler carries on; a late run skips the slots it
missed rather than running them all back to back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.meta import Meta
from api.meta.db import utcnow
from api.meta.leases import release, try_acquire

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Job:
    """`next_slot(after)`: the first slot strictly after `after`, or None for "not now"
    (e.g. the report is switched off). `run(slot)` does the work. `catch_up`: at start, a
    slot this recent that no replica ran yet still runs (late) — the weekly email after a
    restart at 09:05 — while interval jobs simply wait for their next slot."""

    name: str
    next_slot: Callable[[datetime], datetime | None]
    run: Callable[[datetime], object]
    lease: timedelta
    catch_up: timedelta = timedelta(0)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    def __init__(
        self,
        meta: Meta,
        jobs: Sequence[Job],
        *,
        clock: Clock = utcnow,
        max_sleep_s: float = 30.0,
        holder: str | None = None,
    ) -> None:
        self._meta = meta
        self._jobs = list(jobs)
        self._clock = clock
        self._max_sleep_s = max_sleep_s
        self.holder = holder or holder_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs: dict[str, int] = {job.name: 0 for job in self._jobs}

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the scheduler is already started")
        self._thread = threading.Thread(target=self._loop, name="inferwatch-scheduler", daemon=True)
        self._thread.start()
        log.info("scheduler started (%s) with jobs: %s", self.holder, ", ".join(j.name for j in self._jobs))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to end and wait for it (a run in progress finishes first, within the timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                log.warning("scheduler still busy %.0f s after stop; leaving it (daemon thread)", timeout_s)

    def _loop(self) -> None:
        started = self._clock()
        after = {job.name: started - job.catch_up for job in self._jobs}
        while not self._stop.is_set():
            now = self._clock()
            due: list[tuple[datetime, Job]] = []
            for job in self._jobs:
                slot = self._next(job, after[job.name])
                if slot is not None:
                    due.append((slot, job))
            ready = sorted(((slot, job) for slot, job in due if slot <= now), key=lambda item: item[0])
            if not ready:
                wait = min([(slot - now).total_seconds() for slot, _ in due] + [self._max_sleep_s])
                self._stop.wait(max(0.05, wait))
                continue
            slot, job = ready[0]
            self.run_slot(job, slot)
            after[job.name] = max(slot, self._clock() - timedelta(seconds=1))

    def _next(self, job: Job, after: datetime) -> datetime | None:
        try:
            return job.next_slot(after)
        except Exception:
            log.exception("cannot compute the next run of job %s; trying again later", job.name)
            return None

    def run_slot(self, job: Job, slot: datetime) -> bool:
        """Run `job` for `slot` if this replica wins its lease. True if it ran."""
        try:
            if not try_acquire(self._meta, job.name, self.holder, slot, ttl=job.lease):
                log.debug("job %s for %s: another replica has it", job.name, slot.isoformat())
                return False
        except Exception:
            log.exception("job %s: cannot take its lease; skipping %s", job.name, slot.isoformat())
            return False
        error = ""
        try:
            job.run(slot)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("job %s for %s failed", job.name, slot.isoformat())
        finally:
            self.runs[job.name] += 1
            try:
                release(self._meta, job.name, self.holder, error=error)
            except Exception:
                log.exception("job %s: cannot release its lease (it expires by itself)", job.name)
        return True
