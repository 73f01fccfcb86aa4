"""What a server process runs beside its requests: the webhook deliverer and, when
INFERWATCH_NOTIFY__SCHEDULER_ENABLED, the scheduler. `create_app` builds one and the app's
lifespan starts and stops it; nothing starts at import or at construction."""

from __future__ import annotations

import logging

from api.alerts.delivery import Deliverer
from api.alerts.notify import make_deliverer
from api.jobs.scheduler import Scheduler
from api.jobs.tasks import Context, build_jobs
from api.meta import Meta
from api.settings import Settings
from api.store import Store

log = logging.getLogger(__name__)


class Background:
    def __init__(self, settings: Settings, meta: Meta, store: Store) -> None:
        self.settings = settings
        self.deliverer: Deliverer = make_deliverer(meta, settings.notify)
        self.scheduler: Scheduler | None = None
        self._context = Context(settings, meta, store, self.deliverer)

    def start(self) -> None:
        if not self.settings.notify.scheduler_enabled:
            log.info("scheduled jobs are off in this process (INFERWATCH_NOTIFY__SCHEDULER_ENABLED=false)")
            return
        self.scheduler = Scheduler(self._context.meta, build_jobs(self._context))
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        self.deliverer.close()
