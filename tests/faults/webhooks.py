"""The webhook fault: targets that hang or answer garbage must not stall the scheduler.

In this process: the real `Scheduler` (with its leases in a real SQLite metadata database)
runs two jobs every second — `tick`, which only notes when it ran, and `alerts`, which
queues a delivery to each webhook through the real `Deliverer`, as the alert jobs do. The
webhooks point at real sockets: one accepts and never answers, one answers bytes that are
not HTTP, one is a well-behaved receiver. `tick` must run at every slot, on time, while the
deliverer's workers sit on the hanging target; every delivery must end in the delivery log
(delivered or failed), none left pending.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from api.alerts.delivery import Job as Delivery
from api.alerts.notify import make_deliverer
from api.alerts.settings import NotifySettings
from api.jobs.schedule import next_interval_slot
from api.jobs.scheduler import Job, Scheduler
from api.meta import Meta
from api.meta.db import create_meta_engine
from api.meta.migrate import upgrade_engine
from api.meta.webhooks import WebhookIn, create_webhook, get_target, list_deliveries, record_delivery
from tests.faults.scenarios import Result

RUN_S = 6.0
ON_TIME_S = 0.5  # a slot counts as on time if its run starts within this


class RawServer:
    """A TCP server on loopback that handles each connection with `handle(conn)`."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"
        self._handle = handle
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._sock.close()
        for conn in self._conns:
            conn.close()


def hang(conn: socket.socket) -> None:
    """Read the request, then say nothing, ever."""
    try:
        conn.recv(65536)
    except OSError:
        pass


def garbage(conn: socket.socket) -> None:
    """Answer with bytes that are not an HTTP response, then close."""
    try:
        conn.recv(65536)
        conn.sendall(b"\x00\xffSSH-2.0-not-http\r\n\x13\x37" * 8)
    except OSError:
        pass
    finally:
        conn.close()


class GoodReceiver:
    def __init__(self) -> None:
        self.received = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.received += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def bad_webhook_targets(work: Path) -> Result:
    engine = create_meta_engine(f"sqlite:///{work / 'meta.db'}")
    upgrade_engine(engine)
    meta = Meta(engine)
    hanging, junk, good = RawServer(hang), RawServer(garbage), GoodReceiver()
    notify = NotifySettings(
        webhook_timeout_s=1.0, webhook_deadline_s=3.0, webhook_max_attempts=2, webhook_workers=2
    )
    deliverer = make_deliverer(meta, notify)
    with meta.session() as s:
        hooks = {
            name: create_webhook(s, WebhookIn(name=name, url=url)).id
            for name, url in (("hangs", hanging.url), ("garbage", junk.url), ("good", good.url))
        }
    lateness: list[float] = []
    queued: dict[str, int] = dict.fromkeys(hooks, 0)

    def tick(slot: datetime) -> None:
        lateness.append((datetime.now(slot.tzinfo) - slot).total_seconds())

    def alerts(slot: datetime) -> None:
        for name, webhook_id in hooks.items():
            with meta.session() as s:
                target = get_target(s, webhook_id)
                delivery_id = record_delivery(
                    s, webhook_id=webhook_id, event="alert", alert_status="firing", payload="{}"
                )
            deliverer.submit(Delivery(delivery_id, target.url, target.secret, b'{"fault": "test"}', "alert"))
            queued[name] += 1

    every_second = lambda after: next_interval_slot(after, 1)  # noqa: E731
    scheduler = Scheduler(
        meta,
        [
            Job("alerts", every_second, alerts, timedelta(seconds=30)),
            Job("tick", every_second, tick, timedelta(seconds=30)),
        ],
        max_sleep_s=0.2,
    )
    try:
        scheduler.start()
        time.sleep(RUN_S)
        scheduler.stop()
        deliverer.join(30)  # what is queued finishes: each bad delivery gives up within its deadline
        with meta.session() as s:
            log = {
                name: [d.status for d in list_deliveries(s, webhook_id=webhook_id, limit=1000).items]
                for name, webhook_id in hooks.items()
            }
    finally:
        deliverer.close(grace_s=1)
        hanging.close()
        junk.close()
        good.close()
        meta.close()
    late = [x for x in lateness if x > ON_TIME_S]
    sent = sum(queued.values())
    finished = sum(1 for statuses in log.values() for st in statuses if st in ("delivered", "failed"))
    happened = (
        f"{queued['hangs']} deliveries to a target that never answers and {queued['garbage']} to one that "
        f"answers non-HTTP bytes, 2 workers: all failed after their timeout "
        f"({log['hangs'].count('failed')} + {log['garbage'].count('failed')} logged failed); "
        f"the good target got {log['good'].count('delivered')} of {queued['good']}; "
        f"the 1 s job ran {len(lateness)} times in {RUN_S:.0f} s, "
        f"latest start {max(lateness, default=0):.2f} s after its slot"
    )
    result = Result(
        fault="webhook target hangs or answers garbage (counts are deliveries)",
        happened=happened,
        sent=sent,
        acknowledged=log["good"].count("delivered"),
        stored=finished,
        duplicates=0,
        lost=sent - finished,  # a delivery neither delivered nor failed in the log
    )
    if late or len(lateness) < RUN_S - 2 or good.received < queued["good"]:
        result.problems.append(
            f"scheduler stalled or good deliveries missing: late {late}, ticks {len(lateness)}"
        )
    return result
